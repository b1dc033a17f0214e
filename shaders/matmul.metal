// matmul.metal -- batched C[b] = A[b] @ B[b] (see mc_matmul_args for layouts and dispatch).
//
// Kernel: matmul_tiled_<dtype>, buffers (A, B, C, mc_matmul_args),
//   dispatchThreadgroups(ceil(N / 32), ceil(M / 32), batch) with (16, 16, 1) threads.
// Each threadgroup computes a 32x32 tile of C (the K loop is mc_mm_tile in mc_matmul_tile.h,
// shared with lora.metal): each thread a 2x2 block, float accumulation for every dtype.
// dtypes: f32 f16 bf16.
// simdgroup_matrix is not used: the simulator does not implement it yet.
#include "mc_matmul_tile.h"

template <typename T>
[[kernel]] void matmul_tiled(device const T* a [[buffer(0)]],
                             device const T* b [[buffer(1)]],
                             device T* c [[buffer(2)]],
                             constant mc_matmul_args& args [[buffer(3)]],
                             uint3 group [[threadgroup_position_in_grid]],
                             uint2 lid [[thread_position_in_threadgroup]]) {
  threadgroup float a_tile[MC_MATMUL_TILE * MC_MATMUL_TILE_K];
  threadgroup float b_tile[MC_MATMUL_TILE_K * MC_MATMUL_TILE];
  const int row0 = int(group.y) * MC_MATMUL_TILE;
  const int col0 = int(group.x) * MC_MATMUL_TILE;
  float acc[4];
  mc_mm_tile(a + int64_t(group.z) * args.a_batch_stride, b + int64_t(group.z) * args.b_batch_stride,
             args, row0, col0, lid, a_tile, b_tile, acc);
  device T* cb = c + int64_t(group.z) * args.c_batch_stride;
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      const int gi = row0 + int(lid.y) + i * MC_MM_THREADS;
      const int gj = col0 + int(lid.x) + j * MC_MM_THREADS;
      if (gi < args.M && gj < args.N) {
        cb[int64_t(gi) * args.N + gj] = static_cast<T>(acc[2 * i + j]);
      }
    }
  }
}

MC_INSTANTIATE(MC_KERNEL_NAME(matmul, tiled, f32), matmul_tiled<float>)
MC_INSTANTIATE(MC_KERNEL_NAME(matmul, tiled, f16), matmul_tiled<half>)
MC_INSTANTIATE(MC_KERNEL_NAME(matmul, tiled, bf16), matmul_tiled<bfloat>)

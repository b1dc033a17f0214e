// matmul.metal -- batched C[b] = A[b] @ B[b] (see mc_matmul_args for layouts and dispatch).
//
// Kernel: matmul_tiled_<dtype>, buffers (A, B, C, mc_matmul_args),
//   dispatchThreadgroups(ceil(N / 32), ceil(M / 32), batch) with (16, 16, 1) threads.
// Each threadgroup computes a 32x32 tile of C; each thread a 2x2 block of it (rows ty, ty + 16,
// columns tx, tx + 16 of the tile, so neighbouring threads touch neighbouring columns). K is
// walked in steps of 16 through two threadgroup tiles, stored as float: float accumulation for
// every dtype. dtypes: f32 f16 bf16.
// simdgroup_matrix is not used: the simulator does not implement it yet.
#include "mc_utils.h"

#define MC_MM_THREADS 16  // threads per side of the threadgroup

template <typename T>
[[kernel]] void matmul_tiled(device const T* a [[buffer(0)]],
                             device const T* b [[buffer(1)]],
                             device T* c [[buffer(2)]],
                             constant mc_matmul_args& args [[buffer(3)]],
                             uint3 group [[threadgroup_position_in_grid]],
                             uint2 lid [[thread_position_in_threadgroup]]) {
  threadgroup float a_tile[MC_MATMUL_TILE][MC_MATMUL_TILE_K];
  threadgroup float b_tile[MC_MATMUL_TILE_K][MC_MATMUL_TILE];

  const int M = args.M;
  const int N = args.N;
  const int K = args.K;
  const int row0 = int(group.y) * MC_MATMUL_TILE;
  const int col0 = int(group.x) * MC_MATMUL_TILE;
  device const T* ab = a + int64_t(group.z) * args.a_batch_stride;
  device const T* bb = b + int64_t(group.z) * args.b_batch_stride;
  device T* cb = c + int64_t(group.z) * args.c_batch_stride;
  const int t = int(lid.y) * MC_MM_THREADS + int(lid.x);
  const int n_threads = MC_MM_THREADS * MC_MM_THREADS;
  const int tile_elems = MC_MATMUL_TILE * MC_MATMUL_TILE_K;

  float acc[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
  for (int k0 = 0; k0 < K; k0 += MC_MATMUL_TILE_K) {
    // Each thread loads tile_elems / n_threads elements of each tile; zeros pad the edges.
    for (int e = t; e < tile_elems; e += n_threads) {
      const int i = e / MC_MATMUL_TILE_K;
      const int kk = e % MC_MATMUL_TILE_K;
      const int gi = row0 + i;
      const int gk = k0 + kk;
      a_tile[i][kk] = gi < M && gk < K ? float(ab[gi * args.a_row_stride + gk * args.a_col_stride]) : 0.0f;
    }
    for (int e = t; e < tile_elems; e += n_threads) {
      const int kk = e / MC_MATMUL_TILE;
      const int j = e % MC_MATMUL_TILE;
      const int gk = k0 + kk;
      const int gj = col0 + j;
      b_tile[kk][j] = gk < K && gj < N ? float(bb[gk * args.b_row_stride + gj * args.b_col_stride]) : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (int kk = 0; kk < MC_MATMUL_TILE_K; ++kk) {
      const float a0 = a_tile[lid.y][kk];
      const float a1 = a_tile[lid.y + MC_MM_THREADS][kk];
      const float b0 = b_tile[kk][lid.x];
      const float b1 = b_tile[kk][lid.x + MC_MM_THREADS];
      acc[0][0] = fma(a0, b0, acc[0][0]);
      acc[0][1] = fma(a0, b1, acc[0][1]);
      acc[1][0] = fma(a1, b0, acc[1][0]);
      acc[1][1] = fma(a1, b1, acc[1][1]);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // before the next step overwrites the tiles
  }

  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      const int gi = row0 + int(lid.y) + i * MC_MM_THREADS;
      const int gj = col0 + int(lid.x) + j * MC_MM_THREADS;
      if (gi < M && gj < N) {
        cb[int64_t(gi) * N + gj] = static_cast<T>(acc[i][j]);
      }
    }
  }
}

MC_INSTANTIATE(MC_KERNEL_NAME(matmul, tiled, f32), matmul_tiled<float>)
MC_INSTANTIATE(MC_KERNEL_NAME(matmul, tiled, f16), matmul_tiled<half>)
MC_INSTANTIATE(MC_KERNEL_NAME(matmul, tiled, bf16), matmul_tiled<bfloat>)

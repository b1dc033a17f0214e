// mc_matmul_tile.h -- the K loop of one 32x32 output tile, shared by matmul_tiled (matmul.metal)
// and the fused lora_linear kernel (lora.metal), which adds its LoRA epilogue to the same
// accumulators.
//
// A threadgroup of 16x16 threads computes the tile at (row0, col0) of A[M, K] @ B[K, N] (strides
// from mc_matmul_args); each thread a 2x2 block of it: rows ly, ly + 16 and columns lx, lx + 16 of
// the tile, so neighbouring threads touch neighbouring columns. K is walked in steps of 16
// through two threadgroup tiles held as float (float accumulation for every dtype); zeros pad the
// edges. acc[2 * i + j] is the element (row0 + ly + 16 i, col0 + lx + 16 j).
#ifndef MC_MATMUL_TILE_H
#define MC_MATMUL_TILE_H

#include "mc_utils.h"

#define MC_MM_THREADS 16  // threads per side of the threadgroup

// a_tile: MC_MATMUL_TILE * MC_MATMUL_TILE_K floats, b_tile: MC_MATMUL_TILE_K * MC_MATMUL_TILE,
// both threadgroup memory declared by the calling kernel.
template <typename T>
inline void mc_mm_tile(device const T* ab, device const T* bb, constant mc_matmul_args& args,
                       int row0, int col0, uint2 lid, threadgroup float* a_tile,
                       threadgroup float* b_tile, thread float* acc) {
  const int M = args.M;
  const int N = args.N;
  const int K = args.K;
  const int t = int(lid.y) * MC_MM_THREADS + int(lid.x);
  const int n_threads = MC_MM_THREADS * MC_MM_THREADS;
  const int tile_elems = MC_MATMUL_TILE * MC_MATMUL_TILE_K;
  for (int q = 0; q < 4; ++q) {
    acc[q] = 0.0f;
  }
  for (int k0 = 0; k0 < K; k0 += MC_MATMUL_TILE_K) {
    // Each thread loads tile_elems / n_threads elements of each tile.
    for (int e = t; e < tile_elems; e += n_threads) {
      const int i = e / MC_MATMUL_TILE_K;
      const int kk = e % MC_MATMUL_TILE_K;
      const int gi = row0 + i;
      const int gk = k0 + kk;
      a_tile[e] = gi < M && gk < K ? float(ab[gi * args.a_row_stride + gk * args.a_col_stride]) : 0.0f;
    }
    for (int e = t; e < tile_elems; e += n_threads) {
      const int kk = e / MC_MATMUL_TILE;
      const int j = e % MC_MATMUL_TILE;
      const int gk = k0 + kk;
      const int gj = col0 + j;
      b_tile[e] = gk < K && gj < N ? float(bb[gk * args.b_row_stride + gj * args.b_col_stride]) : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (int kk = 0; kk < MC_MATMUL_TILE_K; ++kk) {
      const float a0 = a_tile[int(lid.y) * MC_MATMUL_TILE_K + kk];
      const float a1 = a_tile[(int(lid.y) + MC_MM_THREADS) * MC_MATMUL_TILE_K + kk];
      const float b0 = b_tile[kk * MC_MATMUL_TILE + int(lid.x)];
      const float b1 = b_tile[kk * MC_MATMUL_TILE + int(lid.x) + MC_MM_THREADS];
      acc[0] = fma(a0, b0, acc[0]);
      acc[1] = fma(a0, b1, acc[1]);
      acc[2] = fma(a1, b0, acc[2]);
      acc[3] = fma(a1, b1, acc[3]);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // before the next step overwrites the tiles
  }
}

#endif  // MC_MATMUL_TILE_H

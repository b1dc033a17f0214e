// lora.metal -- LoRA adapters in two dispatches: y = (scale * (x @ a)) @ b, and lora_linear
// y = x @ w [+ bias] + (scale * (x @ a)) @ b.
//
// x (rows, n_in), a (n_in, rank), b (rank, n_out), w (n_in, n_out), y (rows, n_out): contiguous,
// x's dtype. The (rows, rank) intermediate t = scale * (x @ a) is computed ONCE, by the first
// dispatch, into a small float buffer; the second reads only t and b (and, for lora_linear, x
// and w). Total LoRA work rows * rank * (n_in + n_out) multiply-adds (never rows * n_out * n_in *
// rank, as a kernel that recomputes x @ a per output column would).
//
// Kernels (argument struct mc_lora_args below, packed by the host as "<qqqqff"):
//   lora_down_<dtype>  buffers (x, a, t, args); dispatchThreadgroups(rows) with 32 * S threads
//                      (S simdgroups, 1..32): simdgroup g computes t[row, j] for j = g, g + S, ...
//                      (lanes stride n_in, then simd_sum). t is float.
//   lora_up_<dtype>    buffers (t, b, bias, y, args); dispatchThreads(n_out, rows): one thread
//                      per output element, y = t[row, :] @ b[:, col] (+ bias[col] if
//                      mc_has_bias), float accumulation, one rounding.
//   lora_linear_<dtype> buffers (x, w, t, b, bias, y, mc_matmul_args of x @ w, args);
//                      dispatchThreadgroups(ceil(n_out / 32), ceil(rows / 32)) with (16, 16)
//                      threads: the tiled matmul's K loop (mc_matmul_tile.h), then an epilogue
//                      adding t[row, :] @ b[:, col] (+ bias[col]) to the same float
//                      accumulators: x @ w is never rounded to the dtype before the sum.
// Function constant 0 `mc_has_bias` (lora_up, lora_linear): bias, n_out values of the dtype;
// else the bias buffer may be unbound.
// dtypes: f32 f16 bf16.
#include "mc_matmul_tile.h"

struct mc_lora_args {
  int64_t rows;
  int64_t n_in;
  int64_t rank;
  int64_t n_out;
  float scale;
  float reserved;
};

constant bool mc_has_bias [[function_constant(0)]];

template <typename T>
[[kernel]] void lora_down(device const T* x [[buffer(0)]],
                          device const T* a [[buffer(1)]],
                          device float* t [[buffer(2)]],
                          constant mc_lora_args& args [[buffer(3)]],
                          uint row [[threadgroup_position_in_grid]],
                          uint simd_lane [[thread_index_in_simdgroup]],
                          uint simd_group [[simdgroup_index_in_threadgroup]],
                          uint n_simd [[simdgroups_per_threadgroup]]) {
  const int64_t n_in = args.n_in;
  const int64_t rank = args.rank;
  device const T* xr = x + int64_t(row) * n_in;
  for (int64_t j = simd_group; j < rank; j += n_simd) {
    float acc = 0.0f;
    for (int64_t k = simd_lane; k < n_in; k += MC_SIMD_WIDTH) {
      acc = fma(float(xr[k]), float(a[k * rank + j]), acc);
    }
    acc = simd_sum(acc);
    if (simd_lane == 0) {
      t[int64_t(row) * rank + j] = acc * args.scale;
    }
  }
}

template <typename T>
[[kernel]] void lora_up(device const float* t [[buffer(0)]],
                        device const T* b [[buffer(1)]],
                        device const T* bias [[buffer(2), function_constant(mc_has_bias)]],
                        device T* y [[buffer(3)]],
                        constant mc_lora_args& args [[buffer(4)]],
                        uint2 gid [[thread_position_in_grid]]) {
  const int64_t col = gid.x;
  const int64_t row = gid.y;
  const int64_t rank = args.rank;
  const int64_t n_out = args.n_out;
  if (col >= n_out || row >= args.rows) {
    return;
  }
  device const float* tr = t + row * rank;
  float acc = 0.0f;
  for (int64_t j = 0; j < rank; ++j) {
    acc = fma(tr[j], float(b[j * n_out + col]), acc);
  }
  if (mc_has_bias) {
    acc += float(bias[col]);
  }
  y[row * n_out + col] = static_cast<T>(acc);
}

template <typename T>
[[kernel]] void lora_linear(device const T* x [[buffer(0)]],
                            device const T* w [[buffer(1)]],
                            device const float* t [[buffer(2)]],
                            device const T* b [[buffer(3)]],
                            device const T* bias [[buffer(4), function_constant(mc_has_bias)]],
                            device T* y [[buffer(5)]],
                            constant mc_matmul_args& margs [[buffer(6)]],
                            constant mc_lora_args& args [[buffer(7)]],
                            uint3 group [[threadgroup_position_in_grid]],
                            uint2 lid [[thread_position_in_threadgroup]]) {
  threadgroup float a_tile[MC_MATMUL_TILE * MC_MATMUL_TILE_K];
  threadgroup float b_tile[MC_MATMUL_TILE_K * MC_MATMUL_TILE];
  const int row0 = int(group.y) * MC_MATMUL_TILE;
  const int col0 = int(group.x) * MC_MATMUL_TILE;
  float acc[4];
  mc_mm_tile(x, w, margs, row0, col0, lid, a_tile, b_tile, acc);
  const int64_t rank = args.rank;
  const int64_t n_out = args.n_out;
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      const int64_t row = row0 + int(lid.y) + i * MC_MM_THREADS;
      const int64_t col = col0 + int(lid.x) + j * MC_MM_THREADS;
      if (row < args.rows && col < n_out) {
        float v = acc[2 * i + j];
        device const float* tr = t + row * rank;
        for (int64_t r = 0; r < rank; ++r) {
          v = fma(tr[r], float(b[r * n_out + col]), v);
        }
        if (mc_has_bias) {
          v += float(bias[col]);
        }
        y[row * n_out + col] = static_cast<T>(v);
      }
    }
  }
}

#define MC_LORA(T, dt)                                                  \
  MC_INSTANTIATE(MC_KERNEL_NAME(lora, down, dt), lora_down<T>)         \
  MC_INSTANTIATE(MC_KERNEL_NAME(lora, up, dt), lora_up<T>)             \
  MC_INSTANTIATE(MC_KERNEL_NAME(lora, linear, dt), lora_linear<T>)

MC_LORA(float, f32)
MC_LORA(half, f16)
MC_LORA(bfloat, bf16)

// rmsnorm.metal -- y = x * rsqrt(mean(x^2) + eps) [* w] over the last axis of a contiguous
// (rows, n) view.
//
// Function constant 0, `mc_has_weight` (bool): multiply by the weight w (n values, x's dtype).
// Without it buffer 1 may be left unbound.
// Kernels (buffers (x, w, out, mc_row_args), dispatchThreadgroups(rows), float accumulation):
//   rmsnorm_block_<dtype>   n <= MC_ROW_BLOCK_MAX (4096): 4 consecutive values per thread in
//                           registers; threads per group = n / 4 rounded up to a multiple of 32.
//   rmsnorm_looped_<dtype>  any n: a sum-of-squares pass and a writing pass; 1024 threads is a
//                           good choice.
// dtypes: f32 f16 bf16.
#include "mc_utils.h"

constant bool mc_has_weight [[function_constant(0)]];

template <typename T>
[[kernel]] void rmsnorm_block(device const T* x [[buffer(0)]],
                              device const T* w [[buffer(1), function_constant(mc_has_weight)]],
                              device T* out [[buffer(2)]],
                              constant mc_row_args& args [[buffer(3)]],
                              uint row [[threadgroup_position_in_grid]],
                              uint tid [[thread_position_in_threadgroup]],
                              uint simd_lane [[thread_index_in_simdgroup]],
                              uint simd_group [[simdgroup_index_in_threadgroup]],
                              uint n_simd [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[MC_SIMD_WIDTH];

  const int64_t n = args.n;
  device const T* xr = x + int64_t(row) * n;
  device T* yr = out + int64_t(row) * n;
  const int64_t base = int64_t(tid) * MC_ROW_VALUES_PER_THREAD;

  float v[MC_ROW_VALUES_PER_THREAD];
  float ss = 0.0f;
  for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
    v[j] = base + j < n ? float(xr[base + j]) : 0.0f;
    ss += v[j] * v[j];
  }
  ss = mc_threadgroup_sum(ss, partial, simd_lane, simd_group, n_simd);
  const float scale = rsqrt(ss / float(n) + args.eps);

  for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
    const int64_t i = base + j;
    if (i < n) {
      const float g = mc_has_weight ? float(w[i]) : 1.0f;
      yr[i] = static_cast<T>(v[j] * scale * g);
    }
  }
}

template <typename T>
[[kernel]] void rmsnorm_looped(device const T* x [[buffer(0)]],
                               device const T* w [[buffer(1), function_constant(mc_has_weight)]],
                               device T* out [[buffer(2)]],
                               constant mc_row_args& args [[buffer(3)]],
                               uint row [[threadgroup_position_in_grid]],
                               uint tid [[thread_position_in_threadgroup]],
                               uint tg_size [[threads_per_threadgroup]],
                               uint simd_lane [[thread_index_in_simdgroup]],
                               uint simd_group [[simdgroup_index_in_threadgroup]],
                               uint n_simd [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[MC_SIMD_WIDTH];

  const int64_t n = args.n;
  const int64_t step = int64_t(tg_size) * MC_ROW_VALUES_PER_THREAD;
  device const T* xr = x + int64_t(row) * n;
  device T* yr = out + int64_t(row) * n;

  float ss = 0.0f;
  for (int64_t base = int64_t(tid) * MC_ROW_VALUES_PER_THREAD; base < n; base += step) {
    for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
      const float v = base + j < n ? float(xr[base + j]) : 0.0f;
      ss += v * v;
    }
  }
  ss = mc_threadgroup_sum(ss, partial, simd_lane, simd_group, n_simd);
  const float scale = rsqrt(ss / float(n) + args.eps);

  for (int64_t base = int64_t(tid) * MC_ROW_VALUES_PER_THREAD; base < n; base += step) {
    for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
      const int64_t i = base + j;
      if (i < n) {
        const float g = mc_has_weight ? float(w[i]) : 1.0f;
        yr[i] = static_cast<T>(float(xr[i]) * scale * g);
      }
    }
  }
}

#define MC_RMSNORM(T, dt)                                                         \
  MC_INSTANTIATE(MC_KERNEL_NAME(rmsnorm, block, dt), rmsnorm_block<T>)           \
  MC_INSTANTIATE(MC_KERNEL_NAME(rmsnorm, looped, dt), rmsnorm_looped<T>)

MC_RMSNORM(float, f32)
MC_RMSNORM(half, f16)
MC_RMSNORM(bfloat, bf16)

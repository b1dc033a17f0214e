// layernorm.metal -- y = (x - mean) * rsqrt(var + eps) [* w] [+ b] over the last axis of a
// contiguous (rows, n) view.
//
// The variance is the corrected two-pass form of np_fused.layer_norm: with d = x - mean,
//   dmean = mean(d), var = mean(d * d) - dmean^2, y = (d - dmean) * rsqrt(var + eps),
// so the float rounding of the first mean is undone and var never cancels catastrophically.
//
// Function constants: 0 `mc_has_weight`, 1 `mc_has_bias` (bool): multiply by w / add b (n values
// each, x's dtype). Without them buffers 1 / 2 may be left unbound.
// Kernels (buffers (x, w, b, out, mc_row_args), dispatchThreadgroups(rows), float accumulation):
//   layernorm_block_<dtype>   n <= MC_ROW_BLOCK_MAX (4096): 4 consecutive values per thread in
//                             registers; threads per group = n / 4 rounded up to a multiple of 32.
//   layernorm_looped_<dtype>  any n: a sum pass, a deviations pass and a writing pass over the
//                             row; 1024 threads is a good choice.
// dtypes: f32 f16 bf16.
#include "mc_utils.h"

constant bool mc_has_weight [[function_constant(0)]];
constant bool mc_has_bias [[function_constant(1)]];

template <typename T>
[[kernel]] void layernorm_block(device const T* x [[buffer(0)]],
                                device const T* w [[buffer(1), function_constant(mc_has_weight)]],
                                device const T* b [[buffer(2), function_constant(mc_has_bias)]],
                                device T* out [[buffer(3)]],
                                constant mc_row_args& args [[buffer(4)]],
                                uint row [[threadgroup_position_in_grid]],
                                uint tid [[thread_position_in_threadgroup]],
                                uint simd_lane [[thread_index_in_simdgroup]],
                                uint simd_group [[simdgroup_index_in_threadgroup]],
                                uint n_simd [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[MC_SIMD_WIDTH];

  const int64_t n = args.n;
  const float inv_n = 1.0f / float(n);
  device const T* xr = x + int64_t(row) * n;
  device T* yr = out + int64_t(row) * n;
  const int64_t base = int64_t(tid) * MC_ROW_VALUES_PER_THREAD;

  float v[MC_ROW_VALUES_PER_THREAD];
  float s = 0.0f;
  for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
    v[j] = base + j < n ? float(xr[base + j]) : 0.0f;
    s += v[j];
  }
  const float mean = mc_threadgroup_sum(s, partial, simd_lane, simd_group, n_simd) * inv_n;

  float ds = 0.0f;
  float ss = 0.0f;
  for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
    v[j] = base + j < n ? v[j] - mean : 0.0f;  // padding stays out of both sums
    ds += v[j];
    ss += v[j] * v[j];
  }
  const float dmean = mc_threadgroup_sum(ds, partial, simd_lane, simd_group, n_simd) * inv_n;
  const float var = mc_threadgroup_sum(ss, partial, simd_lane, simd_group, n_simd) * inv_n - dmean * dmean;
  const float scale = rsqrt(var + args.eps);

  for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
    const int64_t i = base + j;
    if (i < n) {
      float y = (v[j] - dmean) * scale;
      if (mc_has_weight) {
        y *= float(w[i]);
      }
      if (mc_has_bias) {
        y += float(b[i]);
      }
      yr[i] = static_cast<T>(y);
    }
  }
}

template <typename T>
[[kernel]] void layernorm_looped(device const T* x [[buffer(0)]],
                                 device const T* w [[buffer(1), function_constant(mc_has_weight)]],
                                 device const T* b [[buffer(2), function_constant(mc_has_bias)]],
                                 device T* out [[buffer(3)]],
                                 constant mc_row_args& args [[buffer(4)]],
                                 uint row [[threadgroup_position_in_grid]],
                                 uint tid [[thread_position_in_threadgroup]],
                                 uint tg_size [[threads_per_threadgroup]],
                                 uint simd_lane [[thread_index_in_simdgroup]],
                                 uint simd_group [[simdgroup_index_in_threadgroup]],
                                 uint n_simd [[simdgroups_per_threadgroup]]) {
  threadgroup float partial[MC_SIMD_WIDTH];

  const int64_t n = args.n;
  const float inv_n = 1.0f / float(n);
  device const T* xr = x + int64_t(row) * n;
  device T* yr = out + int64_t(row) * n;

  float s = 0.0f;
  for (int64_t i = tid; i < n; i += tg_size) {
    s += float(xr[i]);
  }
  const float mean = mc_threadgroup_sum(s, partial, simd_lane, simd_group, n_simd) * inv_n;

  float ds = 0.0f;
  float ss = 0.0f;
  for (int64_t i = tid; i < n; i += tg_size) {
    const float d = float(xr[i]) - mean;
    ds += d;
    ss += d * d;
  }
  const float dmean = mc_threadgroup_sum(ds, partial, simd_lane, simd_group, n_simd) * inv_n;
  const float var = mc_threadgroup_sum(ss, partial, simd_lane, simd_group, n_simd) * inv_n - dmean * dmean;
  const float scale = rsqrt(var + args.eps);

  for (int64_t i = tid; i < n; i += tg_size) {
    float y = (float(xr[i]) - mean - dmean) * scale;
    if (mc_has_weight) {
      y *= float(w[i]);
    }
    if (mc_has_bias) {
      y += float(b[i]);
    }
    yr[i] = static_cast<T>(y);
  }
}

#define MC_LAYERNORM(T, dt)                                                       \
  MC_INSTANTIATE(MC_KERNEL_NAME(layernorm, block, dt), layernorm_block<T>)       \
  MC_INSTANTIATE(MC_KERNEL_NAME(layernorm, looped, dt), layernorm_looped<T>)

MC_LAYERNORM(float, f32)
MC_LAYERNORM(half, f16)
MC_LAYERNORM(bfloat, bf16)

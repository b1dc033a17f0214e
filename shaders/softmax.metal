// softmax.metal -- softmax (and log_softmax) over the last axis of a contiguous (rows, n) view.
//
// Kernels (buffers (x, out, mc_row_args), dispatchThreadgroups(rows), float accumulation):
//   softmax_block_<dtype>   n <= MC_ROW_BLOCK_MAX (4096): each thread keeps 4 consecutive values
//                           in registers; threads per group = n / 4 rounded up to a multiple of
//                           32 (so n <= 4 * threads is required; at most 1024).
//   softmax_looped_<dtype>  any n: one online pass (running max, rescaled running sum) and one
//                           writing pass; 1024 threads per group is a good choice.
//   softmax_log_block_<dtype>, softmax_log_looped_<dtype>: log_softmax with the same launches,
//                           y = x - max - log(sum(exp(x - max))).
// dtypes: f32 f16 bf16.
#include "mc_utils.h"

template <typename T, bool LOG>
[[kernel]] void softmax_block(device const T* x [[buffer(0)]],
                              device T* out [[buffer(1)]],
                              constant mc_row_args& args [[buffer(2)]],
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
  float m = -INFINITY;
  for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
    v[j] = base + j < n ? float(xr[base + j]) : -INFINITY;
    m = max(m, v[j]);
  }
  m = mc_threadgroup_max(m, partial, simd_lane, simd_group, n_simd);

  float s = 0.0f;
  for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
    v[j] = exp(v[j] - m);  // padding: exp(-inf) = 0
    s += v[j];
  }
  s = mc_threadgroup_sum(s, partial, simd_lane, simd_group, n_simd);

  const float inv = 1.0f / s;
  const float log_s = log(s);
  for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
    if (base + j < n) {
      yr[base + j] = static_cast<T>(LOG ? float(xr[base + j]) - m - log_s : v[j] * inv);
    }
  }
}

template <typename T, bool LOG>
[[kernel]] void softmax_looped(device const T* x [[buffer(0)]],
                               device T* out [[buffer(1)]],
                               constant mc_row_args& args [[buffer(2)]],
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

  // Online pass: (m, s) is this thread's running max and sum of exp(x - m).
  float m = -INFINITY;
  float s = 0.0f;
  for (int64_t base = int64_t(tid) * MC_ROW_VALUES_PER_THREAD; base < n; base += step) {
    float v[MC_ROW_VALUES_PER_THREAD];
    float chunk_max = -INFINITY;
    for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
      v[j] = base + j < n ? float(xr[base + j]) : -INFINITY;
      chunk_max = max(chunk_max, v[j]);
    }
    const float m_new = max(m, chunk_max);
    s *= exp(m - m_new);  // m = -inf on the first chunk: s is 0 anyway
    for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
      s += exp(v[j] - m_new);
    }
    m = m_new;
  }
  const float row_max = mc_threadgroup_max(m, partial, simd_lane, simd_group, n_simd);
  const float scaled = s > 0.0f ? s * exp(m - row_max) : 0.0f;  // threads without elements add 0
  const float total = mc_threadgroup_sum(scaled, partial, simd_lane, simd_group, n_simd);
  const float inv = 1.0f / total;
  const float log_s = log(total);

  for (int64_t base = int64_t(tid) * MC_ROW_VALUES_PER_THREAD; base < n; base += step) {
    for (int j = 0; j < MC_ROW_VALUES_PER_THREAD; ++j) {
      if (base + j < n) {
        const float d = float(xr[base + j]) - row_max;
        yr[base + j] = static_cast<T>(LOG ? d - log_s : exp(d) * inv);
      }
    }
  }
}

#define MC_SOFTMAX(T, dt)                                                           \
  MC_INSTANTIATE(MC_KERNEL_NAME(softmax, block, dt), softmax_block<T, false>)      \
  MC_INSTANTIATE(MC_KERNEL_NAME(softmax, looped, dt), softmax_looped<T, false>)    \
  MC_INSTANTIATE(MC_KERNEL_NAME(softmax, log_block, dt), softmax_block<T, true>)   \
  MC_INSTANTIATE(MC_KERNEL_NAME(softmax, log_looped, dt), softmax_looped<T, true>)

MC_SOFTMAX(float, f32)
MC_SOFTMAX(half, f16)
MC_SOFTMAX(bfloat, bf16)

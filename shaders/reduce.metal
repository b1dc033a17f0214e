// reduce.metal -- reductions over the last axis of a contiguous (rows, n) view.
//
// Kernels: reduce_<op>_<dtype>, buffers (x, out, mc_row_args), dispatchThreadgroups(rows) with
// any multiple of 32 threads up to 1024 (256 is a good default; n may be any size >= 1).
//   sum max min mean  f32 f16 bf16: accumulate in float, out has x's dtype
//   sum max min       i32: accumulate in int (sum wraps), out is i32
//   argmax argmin     f32 f16 bf16 i32: out is u32, the first index of the extreme value
// One threadgroup per row; each thread folds a strided slice of the row, then two-level simd
// reductions combine the threads through a 32-entry threadgroup array.
// NaN inputs follow NumPy: max/min of a row holding a NaN are NaN, argmax/argmin give the index
// of the row's first NaN (a separate flag/index reduction: simd_max/simd_min ignore NaNs).
#include "mc_utils.h"

// Accumulator type and its extremes (the identities of max and min).
template <typename T> struct Acc {
  typedef float type;
  static float lowest() { return -INFINITY; }
  static float highest() { return INFINITY; }
};
template <> struct Acc<int> {
  typedef int type;
  static int lowest() { return numeric_limits<int>::lowest(); }
  static int highest() { return numeric_limits<int>::max(); }
};

// v != v only for NaN (fast math is off): false for every integer.
template <typename A> inline bool mc_is_nan(A v) { return v != v; }

struct SumOp {
  static constexpr bool nan_flag = false;  // sums propagate NaN by themselves
  template <typename A> static A init() { return A(0); }
  template <typename A> static A fold(A acc, A v) { return acc + v; }
  template <typename A> static A simd(A v) { return simd_sum(v); }
};
struct MaxOp {
  static constexpr bool nan_flag = true;
  template <typename A> static A init() { return Acc<A>::lowest(); }
  template <typename A> static A fold(A acc, A v) { return max(acc, v); }
  template <typename A> static A simd(A v) { return simd_max(v); }
};
struct MinOp {
  static constexpr bool nan_flag = true;
  template <typename A> static A init() { return Acc<A>::highest(); }
  template <typename A> static A fold(A acc, A v) { return min(acc, v); }
  template <typename A> static A simd(A v) { return simd_min(v); }
};

// MEAN divides the sum by n. Op::simd is one SIMD-group's part of the two-level reduction.
template <typename T, typename Op, bool MEAN>
[[kernel]] void reduce_row(device const T* x [[buffer(0)]],
                           device T* out [[buffer(1)]],
                           constant mc_row_args& args [[buffer(2)]],
                           uint row [[threadgroup_position_in_grid]],
                           uint tid [[thread_position_in_threadgroup]],
                           uint tg_size [[threads_per_threadgroup]],
                           uint simd_lane [[thread_index_in_simdgroup]],
                           uint simd_group [[simdgroup_index_in_threadgroup]],
                           uint n_simd [[simdgroups_per_threadgroup]]) {
  typedef typename Acc<T>::type A;
  threadgroup A partial[MC_SIMD_WIDTH];
  threadgroup A partial_nan[MC_SIMD_WIDTH];

  device const T* xr = x + int64_t(row) * args.n;
  A acc = Op::template init<A>();
  bool saw_nan = false;
  for (int64_t i = tid; i < args.n; i += tg_size) {
    const A v = static_cast<A>(xr[i]);
    if (Op::nan_flag) {
      saw_nan = saw_nan || mc_is_nan(v);
    }
    acc = Op::template fold<A>(acc, v);
  }
  acc = Op::template simd<A>(acc);
  A nan_seen = A(0);
  if (Op::nan_flag) {
    nan_seen = simd_max(saw_nan ? A(1) : A(0));
  }
  if (simd_lane == 0) {
    partial[simd_group] = acc;
    partial_nan[simd_group] = nan_seen;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (simd_group == 0) {
    A total = simd_lane < n_simd ? partial[simd_lane] : Op::template init<A>();
    total = Op::template simd<A>(total);
    if (Op::nan_flag) {
      nan_seen = simd_max(simd_lane < n_simd ? partial_nan[simd_lane] : A(0));
    }
    if (simd_lane == 0) {
      const A r = MEAN ? total / A(args.n) : total;
      out[row] = static_cast<T>(nan_seen > A(0) ? A(NAN) : r);
    }
  }
}

// Index of the extreme value: the per-thread candidates are reduced by value (simd_max or
// simd_min), then ties resolved to the smallest index with simd_min, twice (SIMD-group, then
// threadgroup through two 32-entry arrays).
template <typename T, bool IS_MAX>
[[kernel]] void reduce_arg(device const T* x [[buffer(0)]],
                           device uint* out [[buffer(1)]],
                           constant mc_row_args& args [[buffer(2)]],
                           uint row [[threadgroup_position_in_grid]],
                           uint tid [[thread_position_in_threadgroup]],
                           uint tg_size [[threads_per_threadgroup]],
                           uint simd_lane [[thread_index_in_simdgroup]],
                           uint simd_group [[simdgroup_index_in_threadgroup]],
                           uint n_simd [[simdgroups_per_threadgroup]]) {
  typedef typename Acc<T>::type A;
  threadgroup A partial_value[MC_SIMD_WIDTH];
  threadgroup uint partial_index[MC_SIMD_WIDTH];
  threadgroup uint partial_nan[MC_SIMD_WIDTH];

  const A worst = IS_MAX ? Acc<T>::lowest() : Acc<T>::highest();
  device const T* xr = x + int64_t(row) * args.n;
  A best = worst;
  uint best_i = 0xFFFFFFFFu;
  uint nan_i = 0xFFFFFFFFu;  // the thread's first NaN (indices only grow along the loop)
  for (int64_t i = tid; i < args.n; i += tg_size) {
    const A v = static_cast<A>(xr[i]);
    if (nan_i == 0xFFFFFFFFu && mc_is_nan(v)) {
      nan_i = uint(i);
    }
    if (IS_MAX ? v > best : v < best) {  // strict: the first index wins within a thread
      best = v;
      best_i = uint(i);
    }
  }
  if (best_i == 0xFFFFFFFFu && tid < args.n) {
    best_i = tid;  // every value equals `worst`: the thread's first index still counts
  }
  A simd_best = IS_MAX ? simd_max(best) : simd_min(best);
  uint simd_i = simd_min(best == simd_best ? best_i : 0xFFFFFFFFu);
  const uint simd_nan = simd_min(nan_i);
  if (simd_lane == 0) {
    partial_value[simd_group] = simd_best;
    partial_index[simd_group] = simd_i;
    partial_nan[simd_group] = simd_nan;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (simd_group == 0) {
    const A v = simd_lane < n_simd ? partial_value[simd_lane] : worst;
    const uint vi = simd_lane < n_simd ? partial_index[simd_lane] : 0xFFFFFFFFu;
    const A total = IS_MAX ? simd_max(v) : simd_min(v);
    const uint total_i = simd_min(v == total ? vi : 0xFFFFFFFFu);
    const uint first_nan = simd_min(simd_lane < n_simd ? partial_nan[simd_lane] : 0xFFFFFFFFu);
    if (simd_lane == 0) {
      out[row] = first_nan != 0xFFFFFFFFu ? first_nan : total_i;
    }
  }
}

#define MC_REDUCE(op, Op, mean, T, dt) \
  MC_INSTANTIATE(MC_KERNEL_NAME(reduce, op, dt), reduce_row<T, Op, mean>)

#define MC_REDUCE_FLOAT(T, dt)                                                 \
  MC_REDUCE(sum, SumOp, false, T, dt)                                          \
  MC_REDUCE(max, MaxOp, false, T, dt)                                          \
  MC_REDUCE(min, MinOp, false, T, dt)                                          \
  MC_REDUCE(mean, SumOp, true, T, dt)                                          \
  MC_INSTANTIATE(MC_KERNEL_NAME(reduce, argmax, dt), reduce_arg<T, true>)     \
  MC_INSTANTIATE(MC_KERNEL_NAME(reduce, argmin, dt), reduce_arg<T, false>)

MC_REDUCE_FLOAT(float, f32)
MC_REDUCE_FLOAT(half, f16)
MC_REDUCE_FLOAT(bfloat, bf16)

MC_REDUCE(sum, SumOp, false, int, i32)
MC_REDUCE(max, MaxOp, false, int, i32)
MC_REDUCE(min, MinOp, false, int, i32)
MC_INSTANTIATE(MC_KERNEL_NAME(reduce, argmax, i32), reduce_arg<int, true>)
MC_INSTANTIATE(MC_KERNEL_NAME(reduce, argmin, i32), reduce_arg<int, false>)

// mslsim_sync.h -- barriers, SIMD-group collectives and atomics.
//
// Every collective records its call site (file and line, through default arguments evaluated at
// the caller) so that the scheduler matches the lanes that really execute it together.
#pragma once
#include "mslsim_math.h"
#include "mslsim_runtime.h"

namespace metal {

enum class mem_flags : unsigned {
  mem_none = 0,
  mem_device = 1,
  mem_threadgroup = 2,
  mem_texture = 4,
  mem_threadgroup_imageblock = 8
};
inline mem_flags operator|(mem_flags a, mem_flags b) { return mem_flags(unsigned(a) | unsigned(b)); }

inline void threadgroup_barrier(mem_flags, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  mslsim::barrier({file, line});
}

enum SimdKind {
  K_SUM, K_PRODUCT, K_MIN, K_MAX, K_AND, K_OR, K_XOR,  // reductions (keep these first)
  K_SHUFFLE, K_SHUFFLE_DOWN, K_SHUFFLE_UP, K_SHUFFLE_XOR, K_BROADCAST_FIRST,
  K_PREFIX_EXCLUSIVE_SUM, K_PREFIX_INCLUSIVE_SUM, K_PREFIX_EXCLUSIVE_PRODUCT, K_PREFIX_INCLUSIVE_PRODUCT,
};

template <class T>
struct SimdResolver {
  static constexpr int W = mslsim::kSimdWidth;
  static T in(const mslsim::Lane* l) { return *static_cast<const T*>(l->simd_in); }

  static T reduce(T a, T b, int kind) {
    switch (kind) {
      case K_SUM: return T(a + b);
      case K_PRODUCT: return T(a * b);
      case K_MIN: return min(a, b);
      case K_MAX: return max(a, b);
      default: break;
    }
    if constexpr (std::is_integral_v<T>) {
      return kind == K_AND ? T(a & b) : kind == K_OR ? T(a | b) : T(a ^ b);
    }
    return a;
  }

  static T poison(T own) {
    if constexpr (is_floating_point_v<typename vec_traits<T>::elem>) {
      return T(numeric_limits<typename vec_traits<T>::elem>::quiet_NaN());
    } else {
      return own;
    }
  }

  static void resolve(mslsim::Lane* const* lanes, int kind) {
    T res[W];
    if (kind <= K_XOR) {  // reductions over the active lanes, in lane order
      bool have = false;
      T acc{};
      for (int i = 0; i < W; ++i) {
        if (!lanes[i]) continue;
        acc = have ? reduce(acc, in(lanes[i]), kind) : in(lanes[i]);
        have = true;
      }
      for (int i = 0; i < W; ++i) res[i] = acc;
    } else {
      int first = -1;
      for (int i = 0; i < W && first < 0; ++i)
        if (lanes[i]) first = i;
      T run = kind == K_PREFIX_EXCLUSIVE_PRODUCT || kind == K_PREFIX_INCLUSIVE_PRODUCT ? T(1) : T(0);
      for (int i = 0; i < W; ++i) {
        if (!lanes[i]) continue;
        const int a = int(lanes[i]->simd_arg);
        int src = i;
        switch (kind) {
          case K_SHUFFLE: src = a; break;
          case K_SHUFFLE_DOWN: src = i + a < W ? i + a : i; break;  // upper lanes keep their value
          case K_SHUFFLE_UP: src = i >= a ? i - a : i; break;       // lower lanes keep their value
          case K_SHUFFLE_XOR: src = (i ^ a) & (W - 1); break;
          case K_BROADCAST_FIRST: src = first; break;
          case K_PREFIX_EXCLUSIVE_SUM: res[i] = run; run = T(run + in(lanes[i])); continue;
          case K_PREFIX_INCLUSIVE_SUM: run = T(run + in(lanes[i])); res[i] = run; continue;
          case K_PREFIX_EXCLUSIVE_PRODUCT: res[i] = run; run = T(run * in(lanes[i])); continue;
          case K_PREFIX_INCLUSIVE_PRODUCT: run = T(run * in(lanes[i])); res[i] = run; continue;
          default: break;
        }
        // Reading an inactive (or out-of-range) lane is undefined on the GPU: make it show.
        res[i] = src >= 0 && src < W && lanes[src] ? in(lanes[src]) : poison(in(lanes[i]));
      }
    }
    for (int i = 0; i < W; ++i)
      if (lanes[i]) *static_cast<T*>(lanes[i]->simd_out) = res[i];
  }
};

template <class T>
T simd_op(T v, int kind, uint32_t arg, const char* file, int line) {
  T out;
  mslsim::simd_collective(kind, {file, line}, &v, &out, arg, &SimdResolver<T>::resolve);
  return out;
}

#define MSLSIM_SIMD(name, kind)                                                              \
  template <class T>                                                                         \
  T name(T v, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {            \
    return simd_op(v, kind, 0, file, line);                                                  \
  }
#define MSLSIM_SIMD_ARG(name, kind)                                                          \
  template <class T>                                                                         \
  T name(T v, ushort arg, const char* file = __builtin_FILE(), int line = __builtin_LINE()) { \
    return simd_op(v, kind, arg, file, line);                                                \
  }
MSLSIM_SIMD(simd_sum, K_SUM)
MSLSIM_SIMD(simd_product, K_PRODUCT)
MSLSIM_SIMD(simd_min, K_MIN)
MSLSIM_SIMD(simd_max, K_MAX)
MSLSIM_SIMD(simd_and, K_AND)
MSLSIM_SIMD(simd_or, K_OR)
MSLSIM_SIMD(simd_xor, K_XOR)
MSLSIM_SIMD(simd_broadcast_first, K_BROADCAST_FIRST)
MSLSIM_SIMD(simd_prefix_exclusive_sum, K_PREFIX_EXCLUSIVE_SUM)
MSLSIM_SIMD(simd_prefix_inclusive_sum, K_PREFIX_INCLUSIVE_SUM)
MSLSIM_SIMD(simd_prefix_exclusive_product, K_PREFIX_EXCLUSIVE_PRODUCT)
MSLSIM_SIMD(simd_prefix_inclusive_product, K_PREFIX_INCLUSIVE_PRODUCT)
MSLSIM_SIMD_ARG(simd_shuffle, K_SHUFFLE)
MSLSIM_SIMD_ARG(simd_broadcast, K_SHUFFLE)
MSLSIM_SIMD_ARG(simd_shuffle_down, K_SHUFFLE_DOWN)
MSLSIM_SIMD_ARG(simd_shuffle_up, K_SHUFFLE_UP)
MSLSIM_SIMD_ARG(simd_shuffle_xor, K_SHUFFLE_XOR)
#undef MSLSIM_SIMD
#undef MSLSIM_SIMD_ARG

inline bool simd_all(bool b, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return simd_op<int>(b ? 1 : 0, K_MIN, 0, file, line) != 0;
}
inline bool simd_any(bool b, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return simd_op<int>(b ? 1 : 0, K_MAX, 0, file, line) != 0;
}
inline bool simd_is_first(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  const uint lane = mslsim::current_lane()->ti.thread_index_in_simdgroup;
  return simd_op<uint>(lane, K_BROADCAST_FIRST, 0, file, line) == lane;
}
inline void simdgroup_barrier(mem_flags, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  (void)simd_op<int>(0, K_SUM, 0, file, line);
}

// ------------------------------------------------------------------------------ atomics
// Threadgroups run on several OS threads at once, so device atomics are real atomics.
enum memory_order { memory_order_relaxed };

template <class T>
struct _atomic {
  T v;
};
typedef _atomic<int> atomic_int;
typedef _atomic<uint> atomic_uint;
typedef _atomic<float> atomic_float;
typedef _atomic<bool> atomic_bool;
template <class T>
using atomic = _atomic<T>;

template <class T, class F>
T atomic_update(volatile _atomic<T>* a, F f) {
  // The generic (non-_n) builtins: they also take float.
  T* p = const_cast<T*>(&a->v);
  T old;
  __atomic_load(p, &old, __ATOMIC_RELAXED);
  for (;;) {
    T desired = f(old);
    if (__atomic_compare_exchange(p, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
  }
}
template <class T, class U>
T atomic_fetch_add_explicit(volatile _atomic<T>* a, U x, memory_order) {
  return atomic_update(a, [&](T o) { return T(o + T(x)); });
}
template <class T, class U>
T atomic_fetch_sub_explicit(volatile _atomic<T>* a, U x, memory_order) {
  return atomic_update(a, [&](T o) { return T(o - T(x)); });
}
template <class T, class U>
T atomic_fetch_max_explicit(volatile _atomic<T>* a, U x, memory_order) {
  return atomic_update(a, [&](T o) { return o < T(x) ? T(x) : o; });
}
template <class T, class U>
T atomic_fetch_min_explicit(volatile _atomic<T>* a, U x, memory_order) {
  return atomic_update(a, [&](T o) { return T(x) < o ? T(x) : o; });
}
template <class T, class U>
T atomic_fetch_and_explicit(volatile _atomic<T>* a, U x, memory_order) {
  return atomic_update(a, [&](T o) { return T(o & T(x)); });
}
template <class T, class U>
T atomic_fetch_or_explicit(volatile _atomic<T>* a, U x, memory_order) {
  return atomic_update(a, [&](T o) { return T(o | T(x)); });
}
template <class T, class U>
T atomic_fetch_xor_explicit(volatile _atomic<T>* a, U x, memory_order) {
  return atomic_update(a, [&](T o) { return T(o ^ T(x)); });
}
template <class T, class U>
T atomic_exchange_explicit(volatile _atomic<T>* a, U x, memory_order) {
  return atomic_update(a, [&](T) { return T(x); });
}
template <class T, class U>
bool atomic_compare_exchange_weak_explicit(volatile _atomic<T>* a, T* expected, U desired, memory_order,
                                           memory_order) {
  T d = T(desired);
  return __atomic_compare_exchange(const_cast<T*>(&a->v), expected, &d, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}
template <class T>
T atomic_load_explicit(volatile _atomic<T>* a, memory_order) {
  T r;
  __atomic_load(const_cast<T*>(&a->v), &r, __ATOMIC_RELAXED);
  return r;
}
template <class T, class U>
void atomic_store_explicit(volatile _atomic<T>* a, U x, memory_order) {
  T v = T(x);
  __atomic_store(const_cast<T*>(&a->v), &v, __ATOMIC_RELAXED);
}

}  // namespace metal

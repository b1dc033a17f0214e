// mslsim_launch.h -- binding kernel parameters and launching a kernel from its C launcher.
//
// The front end (mslsim/_frontend.py) generates, per kernel,
//   extern "C" int mslsim_kernel_<name>(mslsim_dispatch* d) {
//     static const mslsim::Binding b[] = {...};   // one per parameter, from its [[...]] attribute
//     return mslsim::launch(&fn, b, n, "<name>", d);
//   }
// and rewrites `constant T x [[function_constant(i)]];` into a FunctionConstant<T, i>.
#pragma once
#include <utility>

#include "mslsim_sync.h"

namespace mslsim {

enum BindKind : int {
  B_BUFFER = 0,
  B_THREADGROUP,  // [[threadgroup(i)]]
  B_THREAD_POSITION_IN_GRID,
  B_THREAD_POSITION_IN_THREADGROUP,
  B_THREADGROUP_POSITION_IN_GRID,
  B_THREADS_PER_THREADGROUP,
  B_THREADGROUPS_PER_GRID,
  B_THREADS_PER_GRID,
  B_THREAD_INDEX_IN_THREADGROUP,
  B_SIMDGROUP_INDEX_IN_THREADGROUP,
  B_THREAD_INDEX_IN_SIMDGROUP,
  B_THREADS_PER_SIMDGROUP,
  B_SIMDGROUPS_PER_THREADGROUP,
  B_DISPATCH_THREADS_PER_THREADGROUP,
};

struct Binding {
  int kind;
  int index;         // buffer / threadgroup slot for B_BUFFER / B_THREADGROUP
  const char* name;  // parameter name, for error messages
  int condition;     // [[function_constant(c)]] on the parameter: bound only if constant c is true; -1: always
};

// ------------------------------------------------------------------ function constants
template <class T, int ID>
struct FunctionConstant {
  const char* name;
  const void* value() const {
    const mslsim_dispatch* d = t_lane->group->dispatch;
    if (uint32_t(ID) >= d->n_function_constants || !d->function_constants) return nullptr;
    return d->function_constants[ID];
  }
  operator T() const {
    const void* p = value();
    if (!p)
      fault(MSLSIM_STATUS_INVALID_DISPATCH, "function constant '%s' [[function_constant(%d)]] is read but has no value",
            name, ID);
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
};

}  // namespace mslsim

namespace metal {
template <class T, int ID>
bool is_function_constant_defined(const mslsim::FunctionConstant<T, ID>& c) { return c.value() != nullptr; }
}  // namespace metal

namespace mslsim {

// ------------------------------------------------------------------ parameter binding
template <class P>
P from_u3(const u3& v) {
  if constexpr (metal::is_vec<P>::value) {
    using E = typename metal::vec_traits<P>::elem;
    if constexpr (metal::vec_traits<P>::n == 2) return P(E(v.x), E(v.y));
    else return P(E(v.x), E(v.y), E(v.z));
  } else {
    return P(v.x);
  }
}

template <class P>
P bind_arg(const Binding& b, const mslsim_dispatch* d, const ThreadInfo& ti) {
  if constexpr (std::is_pointer_v<P> || std::is_reference_v<P>) {
    // A parameter switched off by its function constant may have nothing bound: null.
    void* p = b.kind == B_THREADGROUP ? threadgroup_argument(b.index)
              : uint32_t(b.index) < d->n_buffers && d->buffers ? d->buffers[b.index] : nullptr;
    if constexpr (std::is_pointer_v<P>) return reinterpret_cast<P>(p);
    else return *reinterpret_cast<std::remove_reference_t<P>*>(p);
  } else {
    switch (b.kind) {
      case B_THREAD_POSITION_IN_GRID: return from_u3<P>(ti.thread_position_in_grid);
      case B_THREAD_POSITION_IN_THREADGROUP: return from_u3<P>(ti.thread_position_in_threadgroup);
      case B_THREADGROUP_POSITION_IN_GRID: return from_u3<P>(ti.threadgroup_position_in_grid);
      case B_THREADS_PER_THREADGROUP: return from_u3<P>(ti.threads_per_threadgroup);
      case B_THREADGROUPS_PER_GRID: return from_u3<P>(ti.threadgroups_per_grid);
      case B_THREADS_PER_GRID: return from_u3<P>(ti.threads_per_grid);
      case B_DISPATCH_THREADS_PER_THREADGROUP: return from_u3<P>(ti.dispatch_threads_per_threadgroup);
      case B_THREAD_INDEX_IN_THREADGROUP: return P(ti.thread_index_in_threadgroup);
      case B_SIMDGROUP_INDEX_IN_THREADGROUP: return P(ti.simdgroup_index_in_threadgroup);
      case B_THREAD_INDEX_IN_SIMDGROUP: return P(ti.thread_index_in_simdgroup);
      case B_THREADS_PER_SIMDGROUP: return P(kSimdWidth);
      case B_SIMDGROUPS_PER_THREADGROUP: return P(ti.simdgroups_per_threadgroup);
      default: return P();  // rejected by check_bindings before any thread runs
    }
  }
}

// Bytes a bound buffer must hold: a `constant T&` parameter reads a whole T.
template <class P>
constexpr uint64_t required_bytes() {
  if constexpr (std::is_reference_v<P>) return sizeof(std::remove_reference_t<P>);
  else return 0;
}
template <class P>
constexpr bool is_memory_param() { return std::is_pointer_v<P> || std::is_reference_v<P>; }

template <class... Args>
struct Launch {
  void (*fn)(Args...);
  const Binding* bindings;
  const mslsim_dispatch* d;

  template <size_t... I>
  void call(const ThreadInfo& ti, std::index_sequence<I...>) const {
    fn(bind_arg<Args>(bindings[I], d, ti)...);
  }
  static void body(void* ctx, const ThreadInfo& ti) {
    static_cast<const Launch*>(ctx)->call(ti, std::index_sequence_for<Args...>{});
  }
};

inline bool function_constant_true(const mslsim_dispatch* d, int index) {
  if (uint32_t(index) >= d->n_function_constants || !d->function_constants || !d->function_constants[index])
    return false;
  return *static_cast<const unsigned char*>(d->function_constants[index]) != 0;
}

inline int check_binding(const Binding& b, bool memory, uint64_t need, const char* kernel, mslsim_dispatch* d) {
  if (b.condition >= 0 && !function_constant_true(d, b.condition)) return MSLSIM_STATUS_OK;
  if (memory && b.kind == B_BUFFER) {
    if (uint32_t(b.index) >= d->n_buffers || !d->buffers || !d->buffers[b.index])
      return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH, "%s: no buffer bound at index %d (parameter '%s')",
                            kernel, b.index, b.name);
    const uint64_t have = d->buffer_lengths ? d->buffer_lengths[b.index] : 0;
    if (have < need)
      return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH,
                            "%s: buffer %d (parameter '%s') holds %llu bytes, the parameter type needs %llu",
                            kernel, b.index, b.name, (unsigned long long)have, (unsigned long long)need);
  } else if (memory && b.kind == B_THREADGROUP) {
    if (uint32_t(b.index) >= d->n_threadgroup_memory || !d->threadgroup_memory_lengths ||
        d->threadgroup_memory_lengths[b.index] == 0)
      return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH,
                            "%s: no threadgroup memory length set at index %d (parameter '%s')", kernel, b.index,
                            b.name);
  } else if (memory || b.kind < B_THREAD_POSITION_IN_GRID) {
    return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH, "%s: parameter '%s' does not match its attribute",
                          kernel, b.name);
  }
  return MSLSIM_STATUS_OK;
}

template <class... Args>
int launch(void (*fn)(Args...), const Binding* bindings, int n_bindings, const char* kernel, mslsim_dispatch* d) {
  if (d->abi_version != MSLSIM_ABI_VERSION)
    return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH, "%s: dispatch struct has ABI version %u, library has %u",
                          kernel, d->abi_version, MSLSIM_ABI_VERSION);
  if (n_bindings != int(sizeof...(Args)))
    return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH, "%s: internal error: %d bindings for %d parameters",
                          kernel, n_bindings, int(sizeof...(Args)));
  if (d->n_buffers > MSLSIM_MAX_BUFFERS)
    return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH, "%s: %u buffers, at most %u", kernel, d->n_buffers,
                          MSLSIM_MAX_BUFFERS);
  static constexpr bool memory[] = {is_memory_param<Args>()..., false};
  static constexpr uint64_t need[] = {required_bytes<Args>()..., 0};
  for (int i = 0; i < n_bindings; ++i) {
    const int status = check_binding(bindings[i], memory[i], need[i], kernel, d);
    if (status != MSLSIM_STATUS_OK) return status;
  }
  Launch<Args...> ctx{fn, bindings, d};
  return run_dispatch(d, kernel, &Launch<Args...>::body, &ctx);
}

}  // namespace mslsim

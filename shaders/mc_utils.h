// mc_utils.h -- helpers shared by the shaders (MSL only).
//
// The shaders keep to the subset that the simulator (tests/support/mslsim) runs: no textures,
// no __metal_* internals, SIMD width 32, threadgroup arrays declared at kernel scope,
// booleans as function constants, vector components through [i] or .x/.y/.z/.w only.
#ifndef MC_UTILS_H
#define MC_UTILS_H
#include <metal_stdlib>
#include "mc_kernel_args.h"
using namespace metal;

// Index of element `i` of a row-major shape in a strided array (element units).
inline int64_t mc_strided_offset(int64_t i, constant const int64_t* shape, constant const int64_t* strides,
                                 int ndim) {
  int64_t off = 0;
  for (int d = ndim - 1; d >= 0; --d) {
    const int64_t dim = shape[d];
    off += (i % dim) * strides[d];
    i /= dim;
  }
  return off;
}

// Threadgroup-wide reductions in two levels: simd_* within each SIMD-group, the per-group
// results through a 32-entry threadgroup array, then simd_* again. Every thread returns the
// result. Callers pass the kernel-scope `partial` array; the trailing barrier lets them reuse
// it at once.
inline float mc_threadgroup_sum(float v, threadgroup float* partial, uint simd_lane, uint simd_group,
                                uint n_simd) {
  v = simd_sum(v);
  if (simd_lane == 0) {
    partial[simd_group] = v;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float total = simd_lane < n_simd ? partial[simd_lane] : 0.0f;
  total = simd_sum(total);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return total;
}

inline float mc_threadgroup_max(float v, threadgroup float* partial, uint simd_lane, uint simd_group,
                                uint n_simd) {
  v = simd_max(v);
  if (simd_lane == 0) {
    partial[simd_group] = v;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float total = simd_lane < n_simd ? partial[simd_lane] : -INFINITY;
  total = simd_max(total);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return total;
}

#endif  // MC_UTILS_H

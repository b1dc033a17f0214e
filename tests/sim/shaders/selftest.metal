// Probes of the simulated MSL subset: SIMD-group collectives, atomics, threadgroup memory
// arguments, function constants, grid built-ins, vector types. Tests only.
#include <metal_stdlib>
using namespace metal;

constant bool fc_negate [[function_constant(0)]];
constant float fc_scale [[function_constant(1)]];
constant int fc_optional [[function_constant(2)]];

kernel void simd_probe(device const int* x [[buffer(0)]],
                       device int* out [[buffer(1)]],
                       uint gid [[thread_position_in_grid]],
                       uint lane [[thread_index_in_simdgroup]]) {
  const int v = x[gid];
  device int* o = out + gid * 8;
  o[0] = simd_sum(v);
  o[1] = simd_max(v);
  o[2] = simd_min(v);
  o[3] = simd_prefix_exclusive_sum(v);
  o[4] = simd_prefix_inclusive_sum(v);
  o[5] = simd_shuffle_xor(v, ushort(5));
  o[6] = simd_shuffle_down(v, ushort(3));
  o[7] = simd_broadcast(v, ushort(7)) + (simd_is_first() ? 1000 : 0) + int(lane) * 0;
}

kernel void histogram(device const uint* x [[buffer(0)]],
                      device atomic_uint* bins [[buffer(1)]],
                      constant uint& n [[buffer(2)]],
                      uint gid [[thread_position_in_grid]],
                      uint tid [[thread_position_in_threadgroup]]) {
  threadgroup atomic_uint local[16];
  if (tid < 16) {
    atomic_store_explicit(&local[tid], 0u, memory_order_relaxed);
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (gid < n) {
    atomic_fetch_add_explicit(&local[x[gid] % 16], 1u, memory_order_relaxed);
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (tid < 16) {
    atomic_fetch_add_explicit(&bins[tid], atomic_load_explicit(&local[tid], memory_order_relaxed),
                              memory_order_relaxed);
  }
}

// Reverses each threadgroup's slice through threadgroup memory given as an argument.
kernel void reverse_through_tg_arg(device const float* x [[buffer(0)]],
                                   device float* y [[buffer(1)]],
                                   threadgroup float* scratch [[threadgroup(0)]],
                                   uint gid [[thread_position_in_grid]],
                                   uint tid [[thread_position_in_threadgroup]],
                                   uint tg_size [[threads_per_threadgroup]]) {
  scratch[tid] = x[gid];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  y[gid] = scratch[tg_size - 1 - tid];
}

kernel void constants_probe(device float* y [[buffer(0)]],
                            uint gid [[thread_position_in_grid]]) {
  float v = float(gid) * fc_scale;
  if (fc_negate) {
    v = -v;
  }
  if (is_function_constant_defined(fc_optional)) {
    v += float(fc_optional);
  }
  y[gid] = v;
}

// Writes the built-ins of a 2-D dispatchThreads grid, whose edge threadgroups are smaller.
kernel void grid_probe(device uint* out [[buffer(0)]],
                       constant uint2& size [[buffer(1)]],
                       uint2 pos [[thread_position_in_grid]],
                       uint2 tg_size [[threads_per_threadgroup]],
                       uint2 group [[threadgroup_position_in_grid]],
                       uint n_simd [[simdgroups_per_threadgroup]]) {
  device uint* o = out + (pos.y * size.x + pos.x) * 4;
  o[0] = tg_size.x;
  o[1] = tg_size.y;
  o[2] = group.x + 100 * group.y;
  o[3] = n_simd;
}

kernel void vector_probe(device half4* v [[buffer(0)]],
                         device float3* p [[buffer(1)]],
                         device bfloat* b [[buffer(2)]],
                         constant float& s [[buffer(3)]],
                         uint gid [[thread_position_in_grid]]) {
  v[gid] = half4(float4(v[gid]) * s) + half4(0.5h);
  float3 q = p[gid];
  p[gid] = float3(dot(q, q), q.y, max(q.x, q.z));
  b[gid] = bfloat(float(b[gid]) * 2.0f);
}

// Compiles (and spot-checks) the less common parts of the subset.
kernel void coverage_probe(device float* out [[buffer(0)]],
                           device atomic_int* counter [[buffer(1)]],
                           uint gid [[thread_position_in_grid]]) {
  const float x = 0.25f + float(gid);
  float4 v = float4(x, -x, 2.0f * x, 0.5f);
  out[gid * 8 + 0] = mix(1.0f, 3.0f, 0.25f) + step(0.5f, x) + saturate(x) + sign(-x);
  out[gid * 8 + 1] = clamp(v, -1.0f, 1.0f)[1] + abs(v)[1] + select(1.0f, 2.0f, x > 1.0f);
  out[gid * 8 + 2] = float(rint(half(2.5h))) + fract(x) + trunc(-x) + round(x);
  out[gid * 8 + 3] = precise::divide(1.0f, x) + fast::exp(0.0f) + powr(2.0f, 3.0f) + fmod(7.0f, 4.0f);
  out[gid * 8 + 4] = float(all(v > float4(-100.0f)) && any(v < float4(0.0f))) + float(isfinite(x));
  out[gid * 8 + 5] = as_type<float>(as_type<uint>(x)) + float(popcount(uint(gid) | 8u));
  int expected = 0;
  atomic_compare_exchange_weak_explicit(counter, &expected, 0, memory_order_relaxed, memory_order_relaxed);
  atomic_fetch_max_explicit(counter, int(gid), memory_order_relaxed);
  out[gid * 8 + 6] = float(simd_product(gid == 0 ? 2 : 1)) + float(simd_and(uint(gid) | 1u) & 1u);
  out[gid * 8 + 7] = float(simd_prefix_inclusive_product(2)) + numeric_limits<half>::max() / 65504.0f;
}

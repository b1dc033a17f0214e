// A type error at a known line: the diagnostic must name this file and line.
#include <metal_stdlib>
using namespace metal;

kernel void broken(device float* out [[buffer(0)]],
                   uint gid [[thread_position_in_grid]]) {
  float3 v = float3(1.0f, 2.0f, 3.0f);
  out[gid] = v.no_such_member;  // COMPILE_ERROR
}

// A texture parameter: outside the simulator's subset, reported at its line.
#include <metal_stdlib>
using namespace metal;

kernel void sample(device float* out [[buffer(0)]],
                   texture2d<float> tex [[texture(0)]],  // UNSUPPORTED
                   uint gid [[thread_position_in_grid]]) {
  out[gid] = 0.0f;
}

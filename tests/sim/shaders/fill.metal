// Fills a buffer with the preprocessor macro VALUE: for the cache-key tests.
#include <metal_stdlib>
using namespace metal;

kernel void fill(device float* y [[buffer(0)]], uint i [[thread_position_in_grid]]) {
  y[i] = VALUE;
}

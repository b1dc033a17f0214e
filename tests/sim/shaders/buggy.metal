// Deliberately broken kernels: the simulator must catch each one. Not shipped (tests only).
#include <metal_stdlib>
using namespace metal;

// Missing barrier between writing and reading threadgroup memory: thread 0 reads slots the
// other threads have not written yet, which hold the NaN poison.
kernel void sum_missing_barrier(device const float* x [[buffer(0)]],
                                device float* out [[buffer(1)]],
                                uint tid [[thread_position_in_threadgroup]],
                                uint tg_size [[threads_per_threadgroup]]) {
  threadgroup float buf[256];
  buf[tid] = x[tid];
  if (tid == 0) {
    float s = 0.0f;
    for (uint i = 0; i < tg_size; ++i) {
      s += buf[i];
    }
    out[0] = s;
  }
}

// The same kernel, correct: the control for the test above.
kernel void sum_with_barrier(device const float* x [[buffer(0)]],
                             device float* out [[buffer(1)]],
                             uint tid [[thread_position_in_threadgroup]],
                             uint tg_size [[threads_per_threadgroup]]) {
  threadgroup float buf[256];
  buf[tid] = x[tid];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (tid == 0) {
    float s = 0.0f;
    for (uint i = 0; i < tg_size; ++i) {
      s += buf[i];
    }
    out[0] = s;
  }
}

// Barrier inside divergent control flow.
kernel void divergent_barrier(device float* out [[buffer(0)]],
                              uint tid [[thread_position_in_threadgroup]]) {
  if (tid < 16) {
    threadgroup_barrier(mem_flags::mem_threadgroup);  // DIVERGENT_A
    out[tid] = 1.0f;
  } else {
    threadgroup_barrier(mem_flags::mem_threadgroup);  // DIVERGENT_B
    out[tid] = 2.0f;
  }
}

// Early return before a barrier.
kernel void early_return(device float* out [[buffer(0)]],
                         constant uint& n [[buffer(1)]],
                         uint tid [[thread_position_in_threadgroup]]) {
  if (tid >= n) {
    return;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);  // EARLY_RETURN
  out[tid] = 3.0f;
}

// Reads a lane that is not active in the shuffle: undefined on the GPU, NaN here.
kernel void shuffle_inactive_lane(device float* out [[buffer(0)]],
                                  uint lane [[thread_index_in_simdgroup]]) {
  float v = float(lane);
  if (lane < 16) {
    v = simd_shuffle(v, ushort(lane + 16));
  }
  out[lane] = v;
}

// 9000 floats = 36000 bytes of threadgroup memory, over Apple's 32 KiB.
kernel void too_much_threadgroup_memory(device float* out [[buffer(0)]],
                                        uint tid [[thread_position_in_threadgroup]]) {
  threadgroup float big[9000];
  big[tid] = 1.0f;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  out[tid] = big[tid];
}

// Missing barrier between two phases that reuse one threadgroup array: the second read sees
// the first phase's (stale) value or the second's depending on the order threads run, so the
// result changes when the simulator resumes threads in reverse order.
kernel void stale_reuse(device const float* x [[buffer(0)]],
                        device float* out [[buffer(1)]],
                        uint tid [[thread_position_in_threadgroup]],
                        uint tg_size [[threads_per_threadgroup]]) {
  threadgroup float buf[64];
  buf[tid] = x[tid];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  const float first = buf[(tid + 1) % tg_size];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  buf[tid] = 2.0f * x[tid];
  // threadgroup_barrier(mem_flags::mem_threadgroup);   <- forgotten
  out[tid] = first + buf[(tid + 1) % tg_size];
}

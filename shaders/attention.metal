// attention.metal -- scaled dot-product attention, softmax(scale * q @ k^T + mask) @ v, with
// grouped-query heads (query head h reads key/value head h / (Hq / Hkv)), as
// np_fused.scaled_dot_product_attention.
//
// q (B, Hq, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv) in any layout (element strides in the
// args; a transposed (B, L, H, D) view needs no copy), out (B, Hq, Lq, Dv) contiguous.
// Masks (function constants; at most one of them is set by the host):
//   0 `mc_causal`    query i sees keys j <= i + Lk - Lq;
//   1 `mc_bool_mask` keep (buffer 3, bool): False hides a key;
//   2 `mc_add_mask`  add (buffer 4, the dtype) is added to the scaled scores.
// keep / add are read through four element strides (0 on broadcast axes) of their
// (B, Hq, Lq, Lk) broadcast. A hidden key scores -FLT_MAX, not -inf (as the NumPy reference
// does with the dtype minimum), so a row whose keys are all hidden gives the mean of v.
//
// Kernel attention_sdpa_<dtype>: buffers (q, k, v, keep, add, out, mc_sdpa_args);
//   dispatchThreadgroups(Lq, Hq, B) with 32 * S threads, S = 1..MC_SDPA_MAX_SIMD simdgroups.
//   One threadgroup per (query row, head, batch). Simdgroup g takes keys g, g + S, ...: the lanes
//   split the head dim for q . k (simd_sum), and each simdgroup keeps an online softmax (running
//   max m, rescaled sum l) and its rescaled output accumulator, D / 32 values per lane, in
//   registers. The S partial states are merged through threadgroup memory at the end.
//   D and Dv <= MC_SDPA_MAX_D (256); float math for every dtype.
// Argument struct mc_sdpa_args below (host: "<7if16q").
// dtypes: f32 f16 bf16.
#include "mc_utils.h"

#define MC_SDPA_MAX_D 256
#define MC_SDPA_PER_LANE (MC_SDPA_MAX_D / MC_SIMD_WIDTH)
#define MC_SDPA_MAX_SIMD 8

struct mc_sdpa_args {
  int32_t B, Hq, Hkv, Lq, Lk, D, Dv;
  float scale;
  int64_t q_strides[4];  // element strides of q over (B, Hq, Lq, D)
  int64_t k_strides[4];  // ... of k over (B, Hkv, Lk, D)
  int64_t v_strides[4];  // ... of v over (B, Hkv, Lk, Dv)
  int64_t m_strides[4];  // ... of the mask over (B, Hq, Lq, Lk), 0 where broadcast
};

constant bool mc_causal [[function_constant(0)]];
constant bool mc_bool_mask [[function_constant(1)]];
constant bool mc_add_mask [[function_constant(2)]];

template <typename T>
[[kernel]] void attention_sdpa(device const T* q [[buffer(0)]],
                               device const T* k [[buffer(1)]],
                               device const T* v [[buffer(2)]],
                               device const bool* keep [[buffer(3), function_constant(mc_bool_mask)]],
                               device const T* add [[buffer(4), function_constant(mc_add_mask)]],
                               device T* out [[buffer(5)]],
                               constant mc_sdpa_args& args [[buffer(6)]],
                               uint3 tg [[threadgroup_position_in_grid]],
                               uint tid [[thread_position_in_threadgroup]],
                               uint tg_size [[threads_per_threadgroup]],
                               uint simd_lane [[thread_index_in_simdgroup]],
                               uint simd_group [[simdgroup_index_in_threadgroup]],
                               uint n_simd [[simdgroups_per_threadgroup]]) {
  threadgroup float sg_m[MC_SDPA_MAX_SIMD];
  threadgroup float sg_l[MC_SDPA_MAX_SIMD];
  threadgroup float sg_o[MC_SDPA_MAX_SIMD * MC_SDPA_MAX_D];

  const int64_t i = tg.x;   // query row
  const int64_t h = tg.y;   // query head
  const int64_t bb = tg.z;  // batch
  const int64_t hk = h / (args.Hq / args.Hkv);
  const int D = args.D;
  const int Dv = args.Dv;
  const int64_t Lk = args.Lk;

  device const T* qr = q + bb * args.q_strides[0] + h * args.q_strides[1] + i * args.q_strides[2];
  device const T* kb = k + bb * args.k_strides[0] + hk * args.k_strides[1];
  device const T* vb = v + bb * args.v_strides[0] + hk * args.v_strides[1];
  const int64_t m_row = bb * args.m_strides[0] + h * args.m_strides[1] + i * args.m_strides[2];

  // q * scale, rounded to float first (as NumPy's q * scale in the working dtype).
  float qv[MC_SDPA_PER_LANE];
  for (int e = 0; e < MC_SDPA_PER_LANE; ++e) {
    const int d = int(simd_lane) + e * MC_SIMD_WIDTH;
    qv[e] = d < D ? float(qr[d * args.q_strides[3]]) * args.scale : 0.0f;
  }

  // Causal: keys past the diagonal score -FLT_MAX, so they can be skipped unless the row sees
  // no key at all (then every key counts, equally).
  const int64_t last = i + Lk - int64_t(args.Lq);
  const int64_t n_keys = mc_causal && last >= 0 && last + 1 < Lk ? last + 1 : Lk;

  float m = -INFINITY;
  float l = 0.0f;
  float o[MC_SDPA_PER_LANE];
  for (int e = 0; e < MC_SDPA_PER_LANE; ++e) {
    o[e] = 0.0f;
  }
  for (int64_t j = simd_group; j < n_keys; j += n_simd) {
    device const T* kr = kb + j * args.k_strides[2];
    float s = 0.0f;
    for (int e = 0; e < MC_SDPA_PER_LANE; ++e) {
      const int d = int(simd_lane) + e * MC_SIMD_WIDTH;
      if (d < D) {
        s = fma(qv[e], float(kr[d * args.k_strides[3]]), s);
      }
    }
    s = simd_sum(s);
    if (mc_causal && j > last) {
      s = -FLT_MAX;
    }
    if (mc_bool_mask && !keep[m_row + j * args.m_strides[3]]) {
      s = -FLT_MAX;
    }
    if (mc_add_mask) {
      s += float(add[m_row + j * args.m_strides[3]]);
    }
    const float m_new = max(m, s);
    // -inf scores (an additive -inf) weigh 0; exp(-inf - -inf) would be NaN.
    const float corr = m == -INFINITY ? 0.0f : exp(m - m_new);
    const float p = s == -INFINITY ? 0.0f : exp(s - m_new);
    l = l * corr + p;
    device const T* vr = vb + j * args.v_strides[2];
    for (int e = 0; e < MC_SDPA_PER_LANE; ++e) {
      const int d = int(simd_lane) + e * MC_SIMD_WIDTH;
      if (d < Dv) {
        o[e] = o[e] * corr + p * float(vr[d * args.v_strides[3]]);
      }
    }
    m = m_new;
  }

  // Merge the simdgroups' states: out = sum_g o_g e^(m_g - M) / sum_g l_g e^(m_g - M).
  if (simd_lane == 0) {
    sg_m[simd_group] = m;
    sg_l[simd_group] = l;
  }
  for (int e = 0; e < MC_SDPA_PER_LANE; ++e) {
    const int d = int(simd_lane) + e * MC_SIMD_WIDTH;
    if (d < Dv) {
      sg_o[simd_group * uint(Dv) + uint(d)] = o[e];
    }
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);

  float M = -INFINITY;
  for (uint g = 0; g < n_simd; ++g) {
    M = max(M, sg_m[g]);
  }
  float total = 0.0f;
  for (uint g = 0; g < n_simd; ++g) {
    total += sg_m[g] == -INFINITY ? 0.0f : sg_l[g] * exp(sg_m[g] - M);
  }
  const float inv = 1.0f / total;  // 0 only when every score is -inf: NaN, as NumPy gives
  device T* orow = out + ((bb * args.Hq + h) * args.Lq + i) * int64_t(Dv);
  for (int d = int(tid); d < Dv; d += int(tg_size)) {
    float acc = 0.0f;
    for (uint g = 0; g < n_simd; ++g) {
      acc += sg_m[g] == -INFINITY ? 0.0f : sg_o[g * uint(Dv) + uint(d)] * exp(sg_m[g] - M);
    }
    orow[d] = static_cast<T>(acc * inv);
  }
}

MC_INSTANTIATE(MC_KERNEL_NAME(attention, sdpa, f32), attention_sdpa<float>)
MC_INSTANTIATE(MC_KERNEL_NAME(attention, sdpa, f16), attention_sdpa<half>)
MC_INSTANTIATE(MC_KERNEL_NAME(attention, sdpa, bf16), attention_sdpa<bfloat>)

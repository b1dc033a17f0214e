// rope.metal -- rotary position embedding (MLX semantics, as np_fused.rope) on the first `dims`
// features of the last axis of a contiguous x (..., L, D); features dims..D are copied.
//
// Row r of the (rows, D) view is position l = r % L, at angle theta_j = (offset + l) * f_j for
// the pair j < dims / 2, with f_j = scale * base^(-2j / dims). The host computes f_j in double
// and passes it as two floats (hi, lo = f_j - hi): theta = p * hi + p * lo is formed with an
// exact fma residual, and sin/cos(theta) = sin/cos(hi part) corrected to first order by the lo
// part. So positions * frequencies of 1e4 rad keep ~1e-7 absolute angle error, as NumPy's
// float64 tables do, instead of float32's ~1e-3.
//   out[i1] = x[i1] * cos - x[i2] * sin,  out[i2] = x[i1] * sin + x[i2] * cos,
// traditional: (i1, i2) = (2j, 2j + 1); else (j, j + dims / 2).
//
// Kernels (buffers (x, freq, out, mc_rope_args), dispatchThreads(D - dims / 2, rows)):
//   rope_traditional_<dtype>, rope_split_<dtype>: thread (c, r): c < dims / 2 rotates pair c of
//   row r, else copies feature dims + c - dims / 2. freq: float[dims] = (hi, lo) per pair.
// Argument struct mc_rope_args below (host: "<qqqqq"). float math for every dtype.
// dtypes: f32 f16 bf16.
#include "mc_utils.h"

struct mc_rope_args {
  int64_t rows;    // product of x's shape but the last dim
  int64_t L;       // positions (x.shape[-2])
  int64_t D;       // features (x.shape[-1])
  int64_t dims;    // rotated features, even, <= D
  int64_t offset;  // position of row 0
};

template <typename T, bool TRADITIONAL>
[[kernel]] void rope(device const T* x [[buffer(0)]],
                     device const float* freq [[buffer(1)]],
                     device T* out [[buffer(2)]],
                     constant mc_rope_args& args [[buffer(3)]],
                     uint2 gid [[thread_position_in_grid]]) {
  const int64_t half_dims = args.dims / 2;
  const int64_t c = gid.x;
  const int64_t row = gid.y;
  if (row >= args.rows || c >= args.D - half_dims) {
    return;
  }
  device const T* xr = x + row * args.D;
  device T* yr = out + row * args.D;
  if (c >= half_dims) {
    const int64_t i = args.dims + (c - half_dims);
    yr[i] = xr[i];
    return;
  }
  const float p = float(args.offset + row % args.L);
  const float f_hi = freq[2 * c];
  const float f_lo = freq[2 * c + 1];
  const float th = p * f_hi;
  const float th_lo = fma(p, f_hi, -th) + p * f_lo;  // exact residual of the product, plus p * lo
  const float s0 = sin(th);
  const float c0 = cos(th);
  const float sn = s0 + c0 * th_lo;
  const float cs = c0 - s0 * th_lo;

  const int64_t i1 = TRADITIONAL ? 2 * c : c;
  const int64_t i2 = TRADITIONAL ? 2 * c + 1 : c + half_dims;
  const float x1 = float(xr[i1]);
  const float x2 = float(xr[i2]);
  yr[i1] = static_cast<T>(x1 * cs - x2 * sn);
  yr[i2] = static_cast<T>(x1 * sn + x2 * cs);
}

#define MC_ROPE(T, dt)                                                        \
  MC_INSTANTIATE(MC_KERNEL_NAME(rope, traditional, dt), rope<T, true>)       \
  MC_INSTANTIATE(MC_KERNEL_NAME(rope, split, dt), rope<T, false>)

MC_ROPE(float, f32)
MC_ROPE(half, f16)
MC_ROPE(bfloat, bf16)

// unary.metal -- elementwise y = op(x).
//
// Kernels (see mc_kernel_args.h for the naming rule):
//   unary_<op>_<dtype>          contiguous x, y: buffers (x, y, mc_contig_args), dispatchThreads(n)
//   unary_<op>_strided_<dtype>  strided/broadcast x (in_strides[0], in_offset[0]), contiguous y:
//                               buffers (x, y, mc_strided_args), dispatchThreads(n)
// Float ops (f32 f16 bf16): neg abs sign square sqrt rsqrt reciprocal exp log sin cos tanh
//   sigmoid relu silu gelu gelu_tanh floor ceil. They compute in float and round once.
// Integer ops (i32 i64): neg abs sign square.  logical_not: bool.
#include "mc_utils.h"

// erfc(x) with a fractional error below 1.2e-7 everywhere (Chebyshev fit of
// t * exp(-z^2 + P(t)), t = 1 / (1 + z / 2)), so gelu keeps full float precision in the far
// negative tail, where 1 + erf(x) cancels.
inline float mc_erfc(float x) {
  const float z = fabs(x);
  const float t = 1.0f / (1.0f + 0.5f * z);
  const float p = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
                  t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +
                  t * (-0.82215223f + t * 0.17087277f))))))));
  const float r = t * exp(-z * z + p);
  return x >= 0.0f ? r : 2.0f - r;
}

// Ops on float; half and bfloat inputs are widened at the call.
struct Sqrt { float operator()(float x) const { return sqrt(x); } };
struct Rsqrt { float operator()(float x) const { return rsqrt(x); } };
struct Reciprocal { float operator()(float x) const { return 1.0f / x; } };
struct Exp { float operator()(float x) const { return exp(x); } };
struct Log { float operator()(float x) const { return log(x); } };
struct Sin { float operator()(float x) const { return sin(x); } };
struct Cos { float operator()(float x) const { return cos(x); } };
struct Tanh { float operator()(float x) const { return precise::tanh(x); } };
struct Sigmoid { float operator()(float x) const { return 1.0f / (1.0f + exp(-x)); } };
struct Relu { float operator()(float x) const { return x < 0.0f ? 0.0f : x; } };  // NaN stays NaN
struct Silu { float operator()(float x) const { return x / (1.0f + exp(-x)); } };
struct Floor { float operator()(float x) const { return floor(x); } };
struct Ceil { float operator()(float x) const { return ceil(x); } };
struct Gelu {
  float operator()(float x) const { return 0.5f * x * mc_erfc(-x * M_SQRT1_2_F); }
};
struct GeluTanh {
  float operator()(float x) const {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    return 0.5f * x * (1.0f + precise::tanh(k * (x + 0.044715f * x * x * x)));
  }
};

// Ops valid for every numeric type.
struct Neg { template <typename T> T operator()(T x) const { return T(-x); } };
struct Abs { template <typename T> T operator()(T x) const { return x < T(0) ? T(-x) : x; } };
struct Square { template <typename T> T operator()(T x) const { return T(x * x); } };
struct Sign {
  // zero and NaN map to themselves, as in NumPy
  template <typename T> T operator()(T x) const { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x); }
};
struct LogicalNot { bool operator()(bool x) const { return !x; } };

template <typename T, typename Op>
[[kernel]] void unary_contig(device const T* x [[buffer(0)]],
                             device T* y [[buffer(1)]],
                             constant mc_contig_args& args [[buffer(2)]],
                             uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  y[gid] = static_cast<T>(Op()(x[gid]));
}

template <typename T, typename Op>
[[kernel]] void unary_strided(device const T* x [[buffer(0)]],
                              device T* y [[buffer(1)]],
                              constant mc_strided_args& args [[buffer(2)]],
                              uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  const int64_t src = args.in_offset[0] + mc_strided_offset(gid, args.shape, args.in_strides[0], args.ndim);
  y[gid] = static_cast<T>(Op()(x[src]));
}

#define MC_UNARY(op, Op, T, dt)                                                 \
  MC_INSTANTIATE(MC_KERNEL_NAME(unary, op, dt), unary_contig<T, Op>)           \
  MC_INSTANTIATE(MC_KERNEL_NAME(unary, op##_strided, dt), unary_strided<T, Op>)

#define MC_UNARY_FLOATS(op, Op) \
  MC_UNARY(op, Op, float, f32)  \
  MC_UNARY(op, Op, half, f16)   \
  MC_UNARY(op, Op, bfloat, bf16)

#define MC_UNARY_INTS(op, Op) \
  MC_UNARY(op, Op, int, i32)  \
  MC_UNARY(op, Op, long, i64)

MC_UNARY_FLOATS(neg, Neg)
MC_UNARY_FLOATS(abs, Abs)
MC_UNARY_FLOATS(sign, Sign)
MC_UNARY_FLOATS(square, Square)
MC_UNARY_FLOATS(sqrt, Sqrt)
MC_UNARY_FLOATS(rsqrt, Rsqrt)
MC_UNARY_FLOATS(reciprocal, Reciprocal)
MC_UNARY_FLOATS(exp, Exp)
MC_UNARY_FLOATS(log, Log)
MC_UNARY_FLOATS(sin, Sin)
MC_UNARY_FLOATS(cos, Cos)
MC_UNARY_FLOATS(tanh, Tanh)
MC_UNARY_FLOATS(sigmoid, Sigmoid)
MC_UNARY_FLOATS(relu, Relu)
MC_UNARY_FLOATS(silu, Silu)
MC_UNARY_FLOATS(gelu, Gelu)
MC_UNARY_FLOATS(gelu_tanh, GeluTanh)
MC_UNARY_FLOATS(floor, Floor)
MC_UNARY_FLOATS(ceil, Ceil)

MC_UNARY_INTS(neg, Neg)
MC_UNARY_INTS(abs, Abs)
MC_UNARY_INTS(sign, Sign)
MC_UNARY_INTS(square, Square)

MC_UNARY(logical_not, LogicalNot, bool, bool)

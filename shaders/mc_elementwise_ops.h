// mc_elementwise_ops.h -- the elementwise functors, shared by unary.metal, binary.metal and
// program.metal (the fused elementwise-region kernel), so every path computes the same values.
#ifndef MC_ELEMENTWISE_OPS_H
#define MC_ELEMENTWISE_OPS_H
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
// -0.0 maps to +0.0 (IEEE abs, NumPy sign); NaN stays NaN; ints as usual
struct Abs {
  template <typename T> T operator()(T x) const { return x < T(0) ? T(-x) : (x == T(0) ? T(0) : x); }
};
struct Square { template <typename T> T operator()(T x) const { return T(x * x); } };
struct Sign {
  // zeros map to +0 and NaN to NaN, as in NumPy
  template <typename T> T operator()(T x) const {
    return x > T(0) ? T(1) : (x < T(0) ? T(-1) : (x == T(0) ? T(0) : x));
  }
};
struct LogicalNot { bool operator()(bool x) const { return !x; } };

struct Add { template <typename T> T operator()(T a, T b) const { return T(a + b); } };
struct Sub { template <typename T> T operator()(T a, T b) const { return T(a - b); } };
struct Mul { template <typename T> T operator()(T a, T b) const { return T(a * b); } };
struct Max { template <typename T> T operator()(T a, T b) const { return a > b ? a : b; } };
struct Min { template <typename T> T operator()(T a, T b) const { return a < b ? a : b; } };
// Float-only ops; half and bfloat operands are widened at the call.
struct Div { float operator()(float a, float b) const { return a / b; } };
struct Pow { float operator()(float a, float b) const { return precise::pow(a, b); } };
struct FAdd { float operator()(float a, float b) const { return a + b; } };
struct FSub { float operator()(float a, float b) const { return a - b; } };
struct FMul { float operator()(float a, float b) const { return a * b; } };
struct FMax { float operator()(float a, float b) const { return isnan(a) || a > b ? a : b; } };
struct FMin { float operator()(float a, float b) const { return isnan(a) || a < b ? a : b; } };

#endif  // MC_ELEMENTWISE_OPS_H

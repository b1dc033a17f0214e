// mslsim_math.h -- the MSL math, common and relational functions our shaders may use.
//
// Only names that exist in Apple's Metal standard library are defined, so a shader that passes
// the simulator does not lean on a function Apple's compiler lacks. half arguments are computed
// in float and rounded back; vectors apply the scalar function per component.
#pragma once
#include "mslsim_types.h"

namespace metal {

#define MSLSIM_UNARY(name, expr)                                                   \
  inline float name(float x) { return expr; }                                      \
  inline half name(half h) { const float x = float(h); return half(expr); }       \
  template <class T, int N>                                                        \
  vec<T, N> name(const vec<T, N>& v) {                                             \
    vec<T, N> r;                                                                   \
    for (int i = 0; i < N; ++i) r.e[i] = name(v.e[i]);                             \
    return r;                                                                      \
  }
MSLSIM_UNARY(exp, std::exp(x))
MSLSIM_UNARY(exp2, std::exp2(x))
MSLSIM_UNARY(exp10, std::pow(10.0f, x))
MSLSIM_UNARY(log, std::log(x))
MSLSIM_UNARY(log2, std::log2(x))
MSLSIM_UNARY(log10, std::log10(x))
MSLSIM_UNARY(sqrt, std::sqrt(x))
MSLSIM_UNARY(rsqrt, 1.0f / std::sqrt(x))
MSLSIM_UNARY(sin, std::sin(x))
MSLSIM_UNARY(cos, std::cos(x))
MSLSIM_UNARY(tan, std::tan(x))
MSLSIM_UNARY(asin, std::asin(x))
MSLSIM_UNARY(acos, std::acos(x))
MSLSIM_UNARY(atan, std::atan(x))
MSLSIM_UNARY(sinh, std::sinh(x))
MSLSIM_UNARY(cosh, std::cosh(x))
MSLSIM_UNARY(tanh, std::tanh(x))
MSLSIM_UNARY(asinh, std::asinh(x))
MSLSIM_UNARY(acosh, std::acosh(x))
MSLSIM_UNARY(atanh, std::atanh(x))
MSLSIM_UNARY(fabs, std::fabs(x))
MSLSIM_UNARY(floor, std::floor(x))
MSLSIM_UNARY(ceil, std::ceil(x))
MSLSIM_UNARY(round, std::round(x))
MSLSIM_UNARY(rint, std::nearbyint(x))
MSLSIM_UNARY(trunc, std::trunc(x))
MSLSIM_UNARY(fract, std::fmin(x - std::floor(x), 0x1.fffffep-1f))
MSLSIM_UNARY(saturate, std::fmin(std::fmax(x, 0.0f), 1.0f))
MSLSIM_UNARY(sign, x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : std::isnan(x) ? 0.0f : x)
#undef MSLSIM_UNARY

#define MSLSIM_BINARY(name, expr)                                                         \
  inline float name(float x, float y) { return expr; }                                    \
  inline half name(half a, half b) { const float x = float(a), y = float(b); return half(expr); } \
  template <class T, int N>                                                               \
  vec<T, N> name(const vec<T, N>& a, const vec<T, N>& b) {                                \
    vec<T, N> r;                                                                          \
    for (int i = 0; i < N; ++i) r.e[i] = name(a.e[i], b.e[i]);                            \
    return r;                                                                             \
  }
MSLSIM_BINARY(pow, std::pow(x, y))
MSLSIM_BINARY(powr, std::pow(x, y))
MSLSIM_BINARY(atan2, std::atan2(x, y))
MSLSIM_BINARY(fmod, std::fmod(x, y))
MSLSIM_BINARY(copysign, std::copysign(x, y))
MSLSIM_BINARY(fmax, std::fmax(x, y))
MSLSIM_BINARY(fmin, std::fmin(x, y))
MSLSIM_BINARY(step, y < x ? 0.0f : 1.0f)
#undef MSLSIM_BINARY

inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
inline half fma(half a, half b, half c) { return half(std::fma(float(a), float(b), float(c))); }

// abs / max / min / clamp take any scalar type, both operands of one type (as in MSL, where
// max(half, float) does not compile).
template <class T, std::enable_if_t<is_scalar_v<T>, int> = 0>
T abs(T x) {
  if constexpr (std::is_unsigned_v<T>) return x;
  else return x < T(0) ? T(-x) : x;
}
template <class T, std::enable_if_t<is_scalar_v<T>, int> = 0>
T max(T a, T b) {
  if constexpr (is_floating_point_v<T>) return T(std::fmax(float(a), float(b)));  // NaN-ignoring
  else return a > b ? a : b;
}
template <class T, std::enable_if_t<is_scalar_v<T>, int> = 0>
T min(T a, T b) {
  if constexpr (is_floating_point_v<T>) return T(std::fmin(float(a), float(b)));
  else return a < b ? a : b;
}
inline double max(double a, double b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
template <class T, std::enable_if_t<is_scalar_v<T>, int> = 0>
T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }

template <class T, int N>
vec<T, N> abs(const vec<T, N>& a) { vec<T, N> r; for (int i = 0; i < N; ++i) r.e[i] = abs(a.e[i]); return r; }
template <class T, int N>
vec<T, N> max(const vec<T, N>& a, const vec<T, N>& b) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r.e[i] = max(a.e[i], b.e[i]);
  return r;
}
template <class T, int N>
vec<T, N> min(const vec<T, N>& a, const vec<T, N>& b) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r.e[i] = min(a.e[i], b.e[i]);
  return r;
}
template <class T, int N>
vec<T, N> clamp(const vec<T, N>& x, const vec<T, N>& lo, const vec<T, N>& hi) { return min(max(x, lo), hi); }
template <class T, int N, class S, std::enable_if_t<is_scalar_v<S>, int> = 0>
vec<T, N> clamp(const vec<T, N>& x, S lo, S hi) { return clamp(x, vec<T, N>(lo), vec<T, N>(hi)); }

template <class T>
T mix(T a, T b, T t) { return a + (b - a) * t; }
template <class T, std::enable_if_t<is_scalar_v<T>, int> = 0>
T select(T a, T b, bool c) { return c ? b : a; }
template <class T, int N>
vec<T, N> select(const vec<T, N>& a, const vec<T, N>& b, const vec<bool, N>& c) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r.e[i] = c.e[i] ? b.e[i] : a.e[i];
  return r;
}
template <class T, int N>
T dot(const vec<T, N>& a, const vec<T, N>& b) {
  T s = T(0);
  for (int i = 0; i < N; ++i) s += a.e[i] * b.e[i];
  return s;
}

inline bool isnan(float x) { return std::isnan(x); }
inline bool isinf(float x) { return std::isinf(x); }
inline bool isfinite(float x) { return std::isfinite(x); }
inline bool signbit(float x) { return std::signbit(x); }
inline bool isnan(half x) { return std::isnan(float(x)); }
inline bool isinf(half x) { return std::isinf(float(x)); }
inline bool isfinite(half x) { return std::isfinite(float(x)); }
inline bool signbit(half x) { return std::signbit(float(x)); }

inline float divide(float a, float b) { return a / b; }

// Integer functions.
template <class T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
T popcount(T x) { return T(__builtin_popcountll((unsigned long long)(std::make_unsigned_t<T>(x)))); }
template <class T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
T mulhi(T a, T b) {
  using W = std::conditional_t<std::is_signed_v<T>, __int128, unsigned __int128>;
  return T((W(a) * W(b)) >> (8 * sizeof(T)));
}

// precise:: and fast:: differ on the GPU only in accuracy; the CPU computes both precisely.
namespace precise {
using metal::cos; using metal::divide; using metal::exp; using metal::exp2; using metal::fmax;
using metal::fmin; using metal::log; using metal::log2; using metal::pow; using metal::powr;
using metal::rsqrt; using metal::sin; using metal::sqrt; using metal::tanh; using metal::tan;
}  // namespace precise
namespace fast {
using metal::cos; using metal::divide; using metal::exp; using metal::exp2; using metal::fmax;
using metal::fmin; using metal::log; using metal::log2; using metal::pow; using metal::powr;
using metal::rsqrt; using metal::sin; using metal::sqrt; using metal::tanh; using metal::tan;
}  // namespace fast

}  // namespace metal

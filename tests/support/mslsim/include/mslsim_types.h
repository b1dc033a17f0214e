// mslsim_types.h -- MSL scalar and vector types as host C++17.
//
// half is _Float16 (GCC >= 12, Clang >= 15); bfloat is emulated (a 16-bit storage type whose
// arithmetic runs in float, rounded to nearest-even on store). Vectors follow Metal's layout:
// sizeof(float3) == 16, alignment == size for 2- and 4-vectors. Swizzles other than the single
// components (.x .y .z .w / .r .g .b .a) are not supported: index with [i] instead.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long ulong;

#if defined(__clang__) && __clang_major__ < 15
#error "mslsim needs _Float16 for MSL half: use GCC >= 12 or Clang >= 15"
#endif
typedef _Float16 half;

struct bfloat {
  uint16_t bits;
  bfloat() = default;
  bfloat(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
      bits = uint16_t((u >> 16) | 0x40u);  // keep NaN a (quiet) NaN: rounding could make it inf
    } else {
      u += 0x7FFFu + ((u >> 16) & 1u);
      bits = uint16_t(u >> 16);
    }
  }
  bfloat(half h) : bfloat(float(h)) {}
  template <class S, std::enable_if_t<std::is_arithmetic_v<S> && !std::is_same_v<S, float>, int> = 0>
  bfloat(S s) : bfloat(float(s)) {}
  operator float() const {
    const uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
// bfloat op bfloat stays bfloat, as in MSL; mixed with float it is float (implicit conversion).
#define MSLSIM_BF_BINOP(op)                                                                   \
  inline bfloat operator op(bfloat a, bfloat b) { return bfloat(float(a) op float(b)); }        \
  template <class S, std::enable_if_t<std::is_arithmetic_v<S>, int> = 0>                       \
  inline auto operator op(bfloat a, S b) { return float(a) op b; }                               \
  template <class S, std::enable_if_t<std::is_arithmetic_v<S>, int> = 0>                       \
  inline auto operator op(S a, bfloat b) { return a op float(b); }                               \
  inline bfloat& operator op##=(bfloat& a, bfloat b) { a = a op b; return a; }
MSLSIM_BF_BINOP(+) MSLSIM_BF_BINOP(-) MSLSIM_BF_BINOP(*) MSLSIM_BF_BINOP(/)
#undef MSLSIM_BF_BINOP
inline bfloat operator-(bfloat a) { bfloat r; r.bits = uint16_t(a.bits ^ 0x8000u); return r; }

// MSL half literals: 1.0h. A suffix without '_' is reserved in C++, yet both compilers take it.
#pragma GCC diagnostic push
#ifdef __clang__
#pragma clang diagnostic ignored "-Wuser-defined-literals"
#else
#pragma GCC diagnostic ignored "-Wliteral-suffix"
#endif
constexpr half operator""h(long double v) { return half(v); }
constexpr half operator""H(long double v) { return half(v); }
#pragma GCC diagnostic pop

namespace metal {

using std::conditional_t;
using std::enable_if;
using std::enable_if_t;
using std::is_convertible_v;
using std::is_same;
using std::is_same_v;
using std::is_signed_v;
using std::is_unsigned_v;
using std::is_integral_v;
template <class T>
constexpr bool is_floating_point_v =
    std::is_floating_point_v<T> || std::is_same_v<T, half> || std::is_same_v<T, bfloat>;
template <class T>
constexpr bool is_scalar_v = std::is_arithmetic_v<T> || std::is_same_v<T, half> || std::is_same_v<T, bfloat>;

// ------------------------------------------------------------------------------ vectors
template <class T, int N>
struct vec;

template <class T, int N>
struct vec_storage;
template <class T>
struct alignas(2 * sizeof(T)) vec_storage<T, 2> {
  union { struct { T x, y; }; struct { T r, g; }; T e[2]; };
};
template <class T>
struct alignas(4 * sizeof(T)) vec_storage<T, 3> {
  union { struct { T x, y, z; }; struct { T r, g, b; }; T e[3]; };
};
template <class T>
struct alignas(4 * sizeof(T)) vec_storage<T, 4> {
  union { struct { T x, y, z, w; }; struct { T r, g, b, a; }; T e[4]; };
};

template <class T> struct is_vec : std::false_type {};
template <class T, int N> struct is_vec<vec<T, N>> : std::true_type {};
template <class T> struct vec_traits { using elem = T; static constexpr int n = 1; };
template <class T, int N> struct vec_traits<vec<T, N>> { using elem = T; static constexpr int n = N; };

template <class T, int N>
struct vec : vec_storage<T, N> {
  using vec_storage<T, N>::e;
  vec() { for (int i = 0; i < N; ++i) e[i] = T(0); }
  template <class S, std::enable_if_t<is_scalar_v<S>, int> = 0>
  vec(S s) { for (int i = 0; i < N; ++i) e[i] = T(s); }
  // float4(a, b, c, d), float4(v2, z, w), float4(v3, w), ...
  template <class... S, std::enable_if_t<(sizeof...(S) >= 2), int> = 0>
  vec(const S&... parts) {
    static_assert((vec_traits<S>::n + ...) == N, "vector constructor: wrong number of components");
    int k = 0;
    (put(k, parts), ...);
  }
  // Conversions between vector types are explicit in MSL.
  template <class U, std::enable_if_t<!std::is_same_v<U, T>, int> = 0>
  explicit vec(const vec<U, N>& o) { for (int i = 0; i < N; ++i) e[i] = T(o.e[i]); }
  T& operator[](int i) { return e[i]; }
  const T& operator[](int i) const { return e[i]; }

 private:
  template <class S>
  void put(int& k, const S& s) {
    if constexpr (is_vec<S>::value) {
      for (int i = 0; i < vec_traits<S>::n; ++i) e[k++] = T(s.e[i]);
    } else {
      e[k++] = T(s);
    }
  }
};

#define MSLSIM_VEC_TYPES(T, name)                                                   \
  typedef vec<T, 2> name##2;                                                        \
  typedef vec<T, 3> name##3;                                                        \
  typedef vec<T, 4> name##4;                                                        \
  typedef vec<T, 2> packed_##name##2;                                               \
  typedef vec<T, 4> packed_##name##4;
MSLSIM_VEC_TYPES(float, float)
MSLSIM_VEC_TYPES(half, half)
MSLSIM_VEC_TYPES(bfloat, bfloat)
MSLSIM_VEC_TYPES(int, int)
MSLSIM_VEC_TYPES(uint, uint)
MSLSIM_VEC_TYPES(short, short)
MSLSIM_VEC_TYPES(ushort, ushort)
MSLSIM_VEC_TYPES(char, char)
MSLSIM_VEC_TYPES(uchar, uchar)
MSLSIM_VEC_TYPES(long, long)
MSLSIM_VEC_TYPES(ulong, ulong)
MSLSIM_VEC_TYPES(bool, bool)
#undef MSLSIM_VEC_TYPES

#define MSLSIM_VEC_BINOP(op)                                                                  \
  template <class T, int N>                                                                   \
  vec<T, N> operator op(const vec<T, N>& a, const vec<T, N>& b) {                             \
    vec<T, N> r;                                                                              \
    for (int i = 0; i < N; ++i) r.e[i] = T(a.e[i] op b.e[i]);                                 \
    return r;                                                                                 \
  }                                                                                           \
  template <class T, int N, class S, std::enable_if_t<is_scalar_v<S>, int> = 0>               \
  vec<T, N> operator op(const vec<T, N>& a, S b) { return a op vec<T, N>(b); }                \
  template <class T, int N, class S, std::enable_if_t<is_scalar_v<S>, int> = 0>               \
  vec<T, N> operator op(S a, const vec<T, N>& b) { return vec<T, N>(a) op b; }                \
  template <class T, int N, class S>                                                          \
  vec<T, N>& operator op##=(vec<T, N>& a, const S& b) { a = a op b; return a; }
MSLSIM_VEC_BINOP(+) MSLSIM_VEC_BINOP(-) MSLSIM_VEC_BINOP(*) MSLSIM_VEC_BINOP(/)
MSLSIM_VEC_BINOP(%) MSLSIM_VEC_BINOP(&) MSLSIM_VEC_BINOP(|) MSLSIM_VEC_BINOP(^)
MSLSIM_VEC_BINOP(<<) MSLSIM_VEC_BINOP(>>)
#undef MSLSIM_VEC_BINOP

#define MSLSIM_VEC_CMP(op)                                                                    \
  template <class T, int N>                                                                   \
  vec<bool, N> operator op(const vec<T, N>& a, const vec<T, N>& b) {                          \
    vec<bool, N> r;                                                                           \
    for (int i = 0; i < N; ++i) r.e[i] = a.e[i] op b.e[i];                                    \
    return r;                                                                                 \
  }
MSLSIM_VEC_CMP(==) MSLSIM_VEC_CMP(!=) MSLSIM_VEC_CMP(<) MSLSIM_VEC_CMP(>) MSLSIM_VEC_CMP(<=)
MSLSIM_VEC_CMP(>=) MSLSIM_VEC_CMP(&&) MSLSIM_VEC_CMP(||)
#undef MSLSIM_VEC_CMP

template <class T, int N>
vec<T, N> operator-(const vec<T, N>& a) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r.e[i] = T(-a.e[i]);
  return r;
}
template <int N>
vec<bool, N> operator!(const vec<bool, N>& a) {
  vec<bool, N> r;
  for (int i = 0; i < N; ++i) r.e[i] = !a.e[i];
  return r;
}
template <int N>
bool all(const vec<bool, N>& v) { for (int i = 0; i < N; ++i) if (!v.e[i]) return false; return true; }
template <int N>
bool any(const vec<bool, N>& v) { for (int i = 0; i < N; ++i) if (v.e[i]) return true; return false; }
inline bool all(bool b) { return b; }
inline bool any(bool b) { return b; }

// metal::array<T, N>
template <class T, size_t N>
struct array {
  T e[N];
  T& operator[](size_t i) { return e[i]; }
  const T& operator[](size_t i) const { return e[i]; }
  static constexpr size_t size() { return N; }
};

// ------------------------------------------------------------------------------ limits
template <class T>
struct numeric_limits : std::numeric_limits<T> {};
template <>
struct numeric_limits<half> {
  static constexpr bool is_specialized = true;
  static constexpr half max() { return half(65504.0f); }
  static constexpr half lowest() { return half(-65504.0f); }
  static constexpr half min() { return half(6.103515625e-05f); }
  static constexpr half epsilon() { return half(0.0009765625f); }
  static constexpr half infinity() { return half(__builtin_huge_valf()); }
  static constexpr half quiet_NaN() { return half(__builtin_nanf("")); }
};
template <>
struct numeric_limits<bfloat> {
  static constexpr bool is_specialized = true;
  static bfloat max() { return from_bits(0x7F7F); }
  static bfloat lowest() { return from_bits(0xFF7F); }
  static bfloat min() { return from_bits(0x0080); }
  static bfloat epsilon() { return from_bits(0x3C00); }
  static bfloat infinity() { return from_bits(0x7F80); }
  static bfloat quiet_NaN() { return from_bits(0x7FC0); }

 private:
  static bfloat from_bits(uint16_t b) { bfloat r; r.bits = b; return r; }
};

template <class To, class From>
To as_type(const From& f) {
  static_assert(sizeof(To) == sizeof(From), "as_type: the two types must have the same size");
  To t;
  std::memcpy(&t, &f, sizeof t);
  return t;
}

}  // namespace metal

// Constants from Apple's <metal_math>; INFINITY, NAN, FLT_MAX (and glibc's MAXFLOAT) come from
// <cmath> / <cfloat>.
#ifndef MAXFLOAT
#define MAXFLOAT FLT_MAX
#endif
#define HALF_MAX 65504.0h
#define HALF_MIN 6.103515625e-05h
#define M_PI_F 3.14159265358979323846f
#define M_PI_2_F 1.57079632679489661923f
#define M_E_F 2.71828182845904523536f
#define M_LN2_F 0.693147180559945309417f
#define M_LOG2E_F 1.44269504088896340736f
#define M_SQRT2_F 1.41421356237309504880f
#define M_SQRT1_2_F 0.707106781186547524401f
#define M_2_SQRTPI_F 1.12837916709551257390f

/* Private: float16 <-> float32 row conversion for mc_cpu_fused.c (no include guard; included
 * once, after `baseline_only` is defined). Defines MC_HAVE_F16 and mc_half when the compiler has
 * _Float16, h2f/f2h, and cpu_has_f16c() for the F16C loops picked at run time on x86. */
/* GCC and Clang define __FLT16_MANT_DIG__ exactly when _Float16 exists. */
#if defined(__FLT16_MANT_DIG__)
#define MC_HAVE_F16 1
typedef _Float16 mc_half;

/* x86 builds for the baseline ISA convert _Float16 in software (a libgcc call per
 * element, ~40x slower); when the CPU has F16C, use loops compiled for it. */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(__F16C__) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12))
#define MC_F16C_DISPATCH 1
#include <immintrin.h>

__attribute__((target("avx,f16c"))) static void h2f_f16c(const mc_half *h, float *f, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) f[i] = (float)h[i];
}

__attribute__((target("avx,f16c"))) static void f2h_f16c(const float *f, mc_half *h, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(f + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) h[i] = (mc_half)f[i];
}
#endif

static void h2f(const mc_half *h, float *f, int64_t n, int fast)
{
#ifdef MC_F16C_DISPATCH
    if (fast) {
        h2f_f16c(h, f, n);
        return;
    }
#endif
    (void)fast;
    for (int64_t i = 0; i < n; i++) f[i] = (float)h[i];
}

static void f2h(const float *f, mc_half *h, int64_t n, int fast)
{
#ifdef MC_F16C_DISPATCH
    if (fast) {
        f2h_f16c(f, h, n);
        return;
    }
#endif
    (void)fast;
    for (int64_t i = 0; i < n; i++) h[i] = (mc_half)f[i];
}

static int cpu_has_f16c(void)
{
#ifdef MC_F16C_DISPATCH
    return !baseline_only && __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}
#endif

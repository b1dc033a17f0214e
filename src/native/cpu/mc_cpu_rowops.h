/* Private: the row kernels, instantiated once per vector ISA (no include guard).
 *
 * Before including, define:
 *   ROW(name)  suffixes every symbol, e.g. name##_sse
 *   RW         vector width in floats (4 = SSE2/NEON, 8 = AVX2), or 0 for plain C
 *   MC_FN      function attributes, e.g. __attribute__((target("avx2")))
 *
 * The hot loops use the compilers' generic vector extension: auto-vectorisation
 * cannot do reductions without -ffast-math, nor loops whose in/out may alias.
 * Every vector loop loads a whole chunk before storing it, so x == y is safe.
 * Sums run in float32 lanes within MC_SUM_BLOCK elements, in double across them.
 */
#include "mc_cpu_expf.h"

#define VU 4 /* vectors per loop step: independent accumulators hide add latency */

#if RW > 0
typedef float ROW(vf) __attribute__((vector_size(RW * 4)));
typedef int32_t ROW(vi) __attribute__((vector_size(RW * 4)));
typedef uint32_t ROW(vu) __attribute__((vector_size(RW * 4)));
#define VF ROW(vf)
#define VI ROW(vi)
#define VUI ROW(vu)
#define STEP (RW * VU)

MC_FN static inline VF ROW(vld)(const float *p) { VF v; memcpy(&v, p, sizeof v); return v; }
MC_FN static inline void ROW(vst)(float *p, VF v) { memcpy(p, &v, sizeof v); }
MC_FN static inline VF ROW(vset)(float s)
{
    VF v;
    for (int j = 0; j < RW; j++) v[j] = s;
    return v;
}
MC_FN static inline VF ROW(vsel)(VI m, VF a, VF b) { return (VF)(((VI)a & m) | ((VI)b & ~m)); }
MC_FN static inline double ROW(vsum)(const VF *acc)
{
    VF t = acc[0];
    for (int u = 1; u < VU; u++) t += acc[u];
    float s = 0.0f;
    for (int j = 0; j < RW; j++) s += t[j];
    return (double)s;
}

/* exp(x <= 0). No clamp and no float->int conversion: k comes from the bits of the
 * rounding sum (bits(t) - bits(1.5*2^23) == k), defined for any x; lanes below
 * -87.3 (garbage exponent there) are zeroed; NaN flows through p. */
MC_FN static inline VF ROW(vexp)(VF x)
{
    const VF rnd = ROW(vset)(MC_RND);
    VI small = x < ROW(vset)(MC_EXP_LO);
    VF t = x * MC_LOG2E + rnd;
    VF k = t - rnd;
    VF r = (x - k * MC_LN2_HI) + k * MC_LN2_LO;
    VF p;
    MC_EXP_POLY(p, r);
    VUI ki = (VUI)t - (VUI)rnd;
    VF e = p * (VF)((ki + 127u) << 23);
    return (VF)((VI)e & ~small);
}
#endif

MC_FN static float ROW(row_max)(const float *x, int64_t n)
{
    float m = -INFINITY;
    int64_t i = 0;
#if RW > 0
    VF a[VU];
    for (int u = 0; u < VU; u++) a[u] = ROW(vset)(-INFINITY);
    for (; i + STEP <= n; i += STEP)
        for (int u = 0; u < VU; u++) {
            VF v = ROW(vld)(x + i + u * RW);
            a[u] = ROW(vsel)(v > a[u], v, a[u]);
        }
    for (int u = 0; u < VU; u++)
        for (int j = 0; j < RW; j++) m = a[u][j] > m ? a[u][j] : m;
#endif
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* s1 = sum(x - c), s2 = sum((x - c)^2). */
MC_FN static void ROW(row_moments)(const float *x, int64_t n, float c, double *s1, double *s2)
{
    double t1 = 0.0, t2 = 0.0;
    int64_t i = 0;
#if RW > 0
    const VF vc = ROW(vset)(c);
    while (i + STEP <= n) {
        VF a1[VU], a2[VU];
        for (int u = 0; u < VU; u++) a1[u] = a2[u] = ROW(vset)(0.0f);
        int64_t end = i + MC_SUM_BLOCK < n ? i + MC_SUM_BLOCK : n;
        for (; i + STEP <= end; i += STEP)
            for (int u = 0; u < VU; u++) {
                VF d = ROW(vld)(x + i + u * RW) - vc;
                a1[u] += d;
                a2[u] += d * d;
            }
        t1 += ROW(vsum)(a1);
        t2 += ROW(vsum)(a2);
    }
#endif
    for (; i < n; i++) {
        float d = x[i] - c;
        t1 += d;
        t2 += (double)d * d;
    }
    *s1 = t1;
    *s2 = t2;
}

/* sum(exp(x - m)); with y != NULL also stores y = exp(x - m). */
MC_FN static double ROW(row_exp)(const float *x, float *y, int64_t n, float m)
{
    double total = 0.0;
    int64_t i = 0;
#if RW > 0
    const VF vm = ROW(vset)(m);
    while (i + STEP <= n) {
        VF a[VU];
        for (int u = 0; u < VU; u++) a[u] = ROW(vset)(0.0f);
        int64_t end = i + MC_SUM_BLOCK < n ? i + MC_SUM_BLOCK : n;
        for (; i + STEP <= end; i += STEP) {
            VF e[VU];
            for (int u = 0; u < VU; u++) e[u] = ROW(vexp)(ROW(vld)(x + i + u * RW) - vm);
            if (y)
                for (int u = 0; u < VU; u++) ROW(vst)(y + i + u * RW, e[u]);
            for (int u = 0; u < VU; u++) a[u] += e[u];
        }
        total += ROW(vsum)(a);
    }
#endif
    for (; i < n; i++) {
        float e = mc_exp_nonpos(x[i] - m);
        if (y) y[i] = e;
        total += e;
    }
    return total;
}

/* y = ((x - c) * r) * w + b + d, with w, b optional (NULL). */
MC_FN static void ROW(row_affine)(const float *x, float *y, int64_t n, float c, float r,
                                  const float *w, const float *b, float d)
{
    int64_t i = 0;
#if RW > 0
    const VF vc = ROW(vset)(c), vr = ROW(vset)(r), vd = ROW(vset)(d);
    for (; i + RW <= n; i += RW) {
        VF t = (ROW(vld)(x + i) - vc) * vr;
        if (w) t = t * ROW(vld)(w + i);
        if (b) t = t + ROW(vld)(b + i);
        ROW(vst)(y + i, t + vd);
    }
#endif
    for (; i < n; i++) {
        float t = (x[i] - c) * r;
        if (w) t = t * w[i];
        if (b) t = t + b[i];
        y[i] = t + d;
    }
}

MC_FN static void ROW(softmax_row)(const float *x, float *y, int64_t n, int want_log)
{
    float m = ROW(row_max)(x, n);
    /* All -inf, or +inf present: NumPy's formula gives NaN for the whole row. */
    if (!(m > -INFINITY && m < INFINITY)) {
        for (int64_t i = 0; i < n; i++) y[i] = NAN;
        return;
    }
    if (want_log) {
        float ls = (float)log(ROW(row_exp)(x, NULL, n, m));
        ROW(row_affine)(x, y, n, m, 1.0f, NULL, NULL, -ls);
    } else {
        float inv = (float)(1.0 / ROW(row_exp)(x, y, n, m));
        for (int64_t i = 0; i < n; i++) y[i] *= inv;
    }
}

MC_FN static void ROW(rms_row)(const float *x, const float *w, float *y, int64_t n, float eps)
{
    double s1, s2;
    ROW(row_moments)(x, n, 0.0f, &s1, &s2);
    float r = (float)(1.0 / sqrt(s2 / (double)n + (double)eps));
    ROW(row_affine)(x, y, n, 0.0f, r, w, NULL, 0.0f);
}

MC_FN static void ROW(layer_norm_row)(const float *x, const float *w, const float *b,
                                      float *y, int64_t n, float eps)
{
    double s1, s2;
    ROW(row_moments)(x, n, 0.0f, &s1, &s2);
    float c = (float)(s1 / (double)n);
    /* Corrected two-pass: deviations from the float32 mean, minus their own mean. */
    ROW(row_moments)(x, n, c, &s1, &s2);
    double dm = s1 / (double)n;
    double var = s2 / (double)n - dm * dm;
    float mean = (float)((double)c + dm);
    float r = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + (double)eps));
    ROW(row_affine)(x, y, n, mean, r, w, b, 0.0f);
}

#undef VU
#if RW > 0
#undef VF
#undef VI
#undef VUI
#undef STEP
#endif

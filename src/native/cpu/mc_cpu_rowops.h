/* Private: vectorised primitives over one contiguous float32 row.
 *
 * With GCC >= 9 or Clang the hot loops use the compilers' generic vector
 * extension (4 x float32: SSE2/NEON): auto-vectorisation cannot do
 * reductions without -ffast-math, nor loops whose in/out pointers may alias.
 * Other compilers get the plain C loops. Every vector loop loads a whole chunk
 * before storing it, so x == y (in place) is safe.
 */
#ifndef MC_CPU_ROWOPS_H
#define MC_CPU_ROWOPS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Elements summed in float32 before folding into a double total. */
#define MC_SUM_BLOCK 256

/* exp(x) for x <= 0, within 2 ulp; NaN in, NaN out; below -87.3 flushes to 0.
 * Cody-Waite reduction (ln2 = 0.693359375 - 2.12194440e-4, k * hi exact) and a
 * degree-6 polynomial, 1 + r + c2 r^2 + ... + c6 r^6, on |r| <= ln2/2: the
 * c_k are a weighted least-squares (near-minimax) fit of exp on that interval,
 * 3e-9 relative error before float32 rounding. */
#define MC_EXP_LO (-87.3f)
#define MC_LOG2E 1.44269504088896341f
#define MC_RND 12582912.0f /* 1.5 * 2^23: adding and subtracting rounds to an integer */
#define MC_LN2_HI 0.693359375f
#define MC_LN2_LO 2.12194440e-4f
#define MC_EXP_POLY(p, r)                                                       \
    do {                                                                        \
        p = (r) * 1.381461275741458e-3f + 8.368710055947304e-3f;                \
        p = p * (r) + 4.166838899254799e-2f;                                    \
        p = p * (r) + 1.666652113199234e-1f;                                    \
        p = p * (r) + 4.999999403953552e-1f;                                    \
        p = p * (r) + 1.0f;                                                     \
        p = p * (r) + 1.0f;                                                     \
    } while (0)

static inline float mc_exp_nonpos(float x)
{
    float xc = x < MC_EXP_LO ? MC_EXP_LO : x;
    float k = (xc * MC_LOG2E + MC_RND) - MC_RND;
    float r = (xc - k * MC_LN2_HI) + k * MC_LN2_LO;
    float p;
    MC_EXP_POLY(p, r);
    int32_t bits = ((int32_t)k + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float e = x < MC_EXP_LO ? 0.0f : p * scale;
    return x != x ? x : e;
}

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9)
#define MC_VEC 1
/* 16-byte vectors are native on every SSE2 and NEON target; wider generic vectors
 * get lowered element by element when the target lacks them. */
#define VW 4
#define VU 4 /* vectors per loop step: independent accumulators hide add latency */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));

static inline v4f vld(const float *p) { v4f v; memcpy(&v, p, sizeof v); return v; }
static inline void vst(float *p, v4f v) { memcpy(p, &v, sizeof v); }
static inline v4f vset(float s) { v4f v = {s, s, s, s}; return v; }
static inline v4f vsel(v4i m, v4f a, v4f b) { return (v4f)(((v4i)a & m) | ((v4i)b & ~m)); }
static inline double vsum(const v4f *acc)
{
    v4f t = acc[0];
    for (int u = 1; u < VU; u++) t += acc[u];
    return (double)((t[0] + t[1]) + (t[2] + t[3]));
}

/* Vector exp(x <= 0). No clamp and no float->int conversion: k comes from the bits
 * of the rounding sum (bits(t) - bits(1.5*2^23) == k), which is defined for any x;
 * lanes below -87.3 (garbage exponent there) are zeroed, NaN flows through p. */
static inline v4f vexp_nonpos(v4f x)
{
    const v4f rnd = vset(MC_RND);
    v4i small = x < vset(MC_EXP_LO);
    v4f t = x * MC_LOG2E + rnd;
    v4f k = t - rnd;
    v4f r = (x - k * MC_LN2_HI) + k * MC_LN2_LO;
    v4f p;
    MC_EXP_POLY(p, r);
    v4u ki = (v4u)t - (v4u)rnd;
    v4f e = p * (v4f)((ki + 127u) << 23);
    return (v4f)((v4i)e & ~small);
}
#define STEP (VW * VU)
#endif

static float row_max(const float *x, int64_t n)
{
    float m = -INFINITY;
    int64_t i = 0;
#ifdef MC_VEC
    v4f a[VU];
    for (int u = 0; u < VU; u++) a[u] = vset(-INFINITY);
    for (; i + STEP <= n; i += STEP)
        for (int u = 0; u < VU; u++) {
            v4f v = vld(x + i + u * VW);
            a[u] = vsel(v > a[u], v, a[u]);
        }
    for (int u = 0; u < VU; u++)
        for (int j = 0; j < VW; j++) m = a[u][j] > m ? a[u][j] : m;
#endif
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* s1 = sum(x - c), s2 = sum((x - c)^2). */
static void row_moments(const float *x, int64_t n, float c, double *s1, double *s2)
{
    double t1 = 0.0, t2 = 0.0;
    int64_t i = 0;
#ifdef MC_VEC
    const v4f vc = vset(c);
    while (i + STEP <= n) {
        v4f a1[VU], a2[VU];
        for (int u = 0; u < VU; u++) a1[u] = a2[u] = vset(0.0f);
        int64_t end = i + MC_SUM_BLOCK < n ? i + MC_SUM_BLOCK : n;
        for (; i + STEP <= end; i += STEP)
            for (int u = 0; u < VU; u++) {
                v4f d = vld(x + i + u * VW) - vc;
                a1[u] += d;
                a2[u] += d * d;
            }
        t1 += vsum(a1);
        t2 += vsum(a2);
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
static double row_exp(const float *x, float *y, int64_t n, float m)
{
    double total = 0.0;
    int64_t i = 0;
#ifdef MC_VEC
    const v4f vm = vset(m);
    while (i + STEP <= n) {
        v4f a[VU];
        for (int u = 0; u < VU; u++) a[u] = vset(0.0f);
        int64_t end = i + MC_SUM_BLOCK < n ? i + MC_SUM_BLOCK : n;
        for (; i + STEP <= end; i += STEP) {
            v4f e[VU];
            for (int u = 0; u < VU; u++) e[u] = vexp_nonpos(vld(x + i + u * VW) - vm);
            if (y)
                for (int u = 0; u < VU; u++) vst(y + i + u * VW, e[u]);
            for (int u = 0; u < VU; u++) a[u] += e[u];
        }
        total += vsum(a);
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
static void row_affine(const float *x, float *y, int64_t n, float c, float r,
                       const float *w, const float *b, float d)
{
    int64_t i = 0;
#ifdef MC_VEC
    const v4f vc = vset(c), vr = vset(r), vd = vset(d);
    for (; i + VW <= n; i += VW) {
        v4f t = (vld(x + i) - vc) * vr;
        if (w) t = t * vld(w + i);
        if (b) t = t + vld(b + i);
        vst(y + i, t + vd);
    }
#endif
    for (; i < n; i++) {
        float t = (x[i] - c) * r;
        if (w) t = t * w[i];
        if (b) t = t + b[i];
        y[i] = t + d;
    }
}

/* y *= s, in place. */
static void row_scale(float *y, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}

#endif /* MC_CPU_ROWOPS_H */

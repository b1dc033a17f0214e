/* Private: the LoRA kernel, y (=|+=) scale * (x @ a) @ b on float32 rows,
 * instantiated once per vector ISA (no include guard).
 *
 * Before including, define ROW(name), RW, MC_FN as for mc_cpu_rowops.h, and
 *   LORA_FMA(c, v, s)  c + v * s for a vector v and a float s; fused where the
 *                      ISA has FMA (ISO C mode never contracts a*b+c by itself).
 * and optionally
 *   LORA_STREAM(p, v)  non-temporal store of vector v at p (16-byte aligned);
 *                      the caller fences after the job.
 *
 * Register blocking: LB rows share every loaded a (or b) vector, and each
 * micro-tile keeps 2 * LB independent accumulators to hide the FMA latency.
 * Cache blocking: x @ a walks n_in in chunks whose slice of a stays in L1, each
 * chunk serving every row of the block. b comes packed in column panels, read
 * sequentially: with its own row stride, a power-of-two n_out maps every row
 * of b to the same L1 sets. x @ a is computed once per row, never per column.
 */

#define LB 6 /* rows per micro-tile: 12 accumulators + 2 loads + 1 broadcast, 15 of 16 ymm */
#define LORA_L1_FLOATS 4096 /* 16 KiB: the chunk of a kept in L1 */
#ifndef LORA_PANEL /* stays defined: mc_cpu_fused.c packs b with it */
#define LORA_PANEL 16 /* columns per packed panel of b: 2 vectors of 8, or 2 tiles of 2 x 4 */
#endif

#if RW > 0
typedef float ROW(lora_vf) __attribute__((vector_size(RW * 4)));
#define LVF ROW(lora_vf)

MC_FN static inline LVF ROW(lora_ld)(const float *p) { LVF v; memcpy(&v, p, sizeof v); return v; }
MC_FN static inline void ROW(lora_st)(float *p, LVF v) { memcpy(p, &v, sizeof v); }

/* h[q][j .. j+2RW) (+)= sum_{k0 <= k < k1} x[q][k] * a[k][j .. j+2RW). */
MC_FN static inline void ROW(lora_xa2)(const float *const *xr, float *const *hr, const float *a,
                                       int64_t lda, int64_t j, int64_t k0, int64_t k1)
{
    LVF c[LB][2];
    for (int q = 0; q < LB; q++) {
        if (k0 == 0) {
            c[q][0] = c[q][1] = (LVF){0};
        } else {
            c[q][0] = ROW(lora_ld)(hr[q] + j);
            c[q][1] = ROW(lora_ld)(hr[q] + j + RW);
        }
    }
    for (int64_t k = k0; k < k1; k++) {
        LVF a0 = ROW(lora_ld)(a + k * lda + j), a1 = ROW(lora_ld)(a + k * lda + j + RW);
        for (int q = 0; q < LB; q++) {
            float s = xr[q][k];
            c[q][0] = LORA_FMA(c[q][0], a0, s);
            c[q][1] = LORA_FMA(c[q][1], a1, s);
        }
    }
    for (int q = 0; q < LB; q++) {
        ROW(lora_st)(hr[q] + j, c[q][0]);
        ROW(lora_st)(hr[q] + j + RW, c[q][1]);
    }
}

/* One vector of columns: even and odd k go to separate accumulators, so there
 * are still 2 * LB independent chains. */
MC_FN static inline void ROW(lora_xa1)(const float *const *xr, float *const *hr, const float *a,
                                       int64_t lda, int64_t j, int64_t k0, int64_t k1)
{
    LVF c[LB][2];
    for (int q = 0; q < LB; q++) {
        c[q][0] = k0 == 0 ? (LVF){0} : ROW(lora_ld)(hr[q] + j);
        c[q][1] = (LVF){0};
    }
    int64_t k = k0;
    for (; k + 2 <= k1; k += 2) {
        LVF a0 = ROW(lora_ld)(a + k * lda + j), a1 = ROW(lora_ld)(a + (k + 1) * lda + j);
        for (int q = 0; q < LB; q++) {
            c[q][0] = LORA_FMA(c[q][0], a0, xr[q][k]);
            c[q][1] = LORA_FMA(c[q][1], a1, xr[q][k + 1]);
        }
    }
    if (k < k1) {
        LVF a0 = ROW(lora_ld)(a + k * lda + j);
        for (int q = 0; q < LB; q++) c[q][0] = LORA_FMA(c[q][0], a0, xr[q][k]);
    }
    for (int q = 0; q < LB; q++) ROW(lora_st)(hr[q] + j, c[q][0] + c[q][1]);
}

/* y[q][j .. j+ncol) (=|+=) sum_k h[q][k] * bp[k][0 .. ncol), ncol <= 2RW, rows q < nq
 * only; bp points into a packed panel (row stride LORA_PANEL), zero past ncol.
 * `nt`: store whole tiles past the caches where aligned (a big output no one
 * reads soon: skips reading in lines that are entirely overwritten). */
MC_FN static inline void ROW(lora_hb)(const float *const *hr, float *const *yr, const float *bp,
                                      int64_t r, int64_t j, int ncol, int nq, int acc, int nt)
{
    LVF c[LB][2];
    for (int q = 0; q < LB; q++) c[q][0] = c[q][1] = (LVF){0};
    for (int64_t k = 0; k < r; k++) {
        LVF b0 = ROW(lora_ld)(bp + k * LORA_PANEL), b1 = ROW(lora_ld)(bp + k * LORA_PANEL + RW);
        for (int q = 0; q < LB; q++) {
            float s = hr[q][k];
            c[q][0] = LORA_FMA(c[q][0], b0, s);
            c[q][1] = LORA_FMA(c[q][1], b1, s);
        }
    }
    for (int q = 0; q < LB && q < nq; q++) {
        float *p = yr[q] + j;
        if (ncol == 2 * RW) {
            if (acc) {
                c[q][0] += ROW(lora_ld)(p);
                c[q][1] += ROW(lora_ld)(p + RW);
            }
#ifdef LORA_STREAM
            if (nt && ((uintptr_t)p & 15) == 0) {
                LORA_STREAM(p, c[q][0]);
                LORA_STREAM(p + RW, c[q][1]);
                continue;
            }
#endif
            (void)nt;
            ROW(lora_st)(p, c[q][0]);
            ROW(lora_st)(p + RW, c[q][1]);
        } else {
            float t[2 * RW];
            ROW(lora_st)(t, c[q][0]);
            ROW(lora_st)(t + RW, c[q][1]);
            for (int i = 0; i < ncol; i++) p[i] = acc ? p[i] + t[i] : t[i];
        }
    }
}
#endif

/* Rows [0, nr) of x (stride n_in) into y (stride n_out); x and y must not
 * overlap. a is (n_in, lda) with lda >= r a multiple of 8, columns past r zero.
 * bp is b packed in panels of LORA_PANEL columns: panel p holds b[k][16p ..]
 * at bp[(p * r + k) * LORA_PANEL], zero past n_out. h is scratch for
 * ceil(nr / LB) * LB rows of lda floats. `nt` as for lora_hb. */
MC_FN static void ROW(lora_block)(const float *x, const float *a, int64_t lda, const float *bp,
                                  float *y, float *h, int64_t nr, int64_t n_in, int64_t r,
                                  int64_t n_out, float scale, int acc, int nt)
{
    (void)nt; /* unused without vectors */
    int64_t nh = (nr + LB - 1) / LB * LB;
    if (n_in == 0) memset(h, 0, (size_t)(nh * lda) * sizeof(float));
#if RW > 0
    /* h = x @ a, n_in in chunks whose a slice fits in L1. */
    int64_t kc = LORA_L1_FLOATS / lda < 32 ? 32 : LORA_L1_FLOATS / lda;
    for (int64_t k0 = 0; k0 < n_in; k0 += kc) {
        int64_t k1 = k0 + kc < n_in ? k0 + kc : n_in;
        for (int64_t i = 0; i < nr; i += LB) {
            const float *xr[LB];
            float *hr[LB];
            /* Rows past nr repeat the last one; their h rows are scratch, never read back. */
            for (int q = 0; q < LB; q++) {
                xr[q] = x + (i + q < nr ? i + q : nr - 1) * n_in;
                hr[q] = h + (i + q) * lda;
            }
            int64_t j = 0;
            for (; j + 2 * RW <= lda; j += 2 * RW) ROW(lora_xa2)(xr, hr, a, lda, j, k0, k1);
            if (j < lda) ROW(lora_xa1)(xr, hr, a, lda, j, k0, k1);
        }
    }
#else
    for (int64_t i = 0; i < nr; i++)
        for (int64_t j = 0; j < r; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < n_in; k++) s += x[i * n_in + k] * a[k * lda + j];
            h[i * lda + j] = s;
        }
#endif
    /* Scale the small intermediate, as the NumPy path does. */
    for (int64_t i = 0; i < nh; i++)
        for (int64_t j = 0; j < r; j++) h[i * lda + j] *= scale;

    /* y = h @ b, a micro-tile of rows across all of n_out at a time: b comes from
     * L2, but each y row is written as one long stream (blocking n_out for L1 cut
     * the rows into short runs that the store prefetch kept missing: ~1.6x slower). */
    for (int64_t i = 0; i < nr; i += LB) {
        int nq = nr - i < LB ? (int)(nr - i) : LB;
        const float *hr[LB];
        float *yr[LB];
        for (int q = 0; q < LB; q++) {
            hr[q] = h + (i + q) * lda;
            yr[q] = y + (i + q < nr ? i + q : nr - 1) * n_out;
        }
        for (int64_t j = 0; j < n_out; j += LORA_PANEL) {
            const float *pan = bp + j * r; /* panel j / LORA_PANEL */
            int64_t left = n_out - j;
#if RW > 0
            for (int o = 0; o < LORA_PANEL && o < left; o += 2 * RW)
                ROW(lora_hb)(hr, yr, pan + o, r, j + o,
                             left - o < 2 * RW ? (int)(left - o) : 2 * RW, nq, acc, nt);
#else
            for (int o = 0; o < LORA_PANEL && o < left; o++)
                for (int q = 0; q < nq; q++) {
                    float s = 0.0f;
                    for (int64_t k = 0; k < r; k++) s += hr[q][k] * pan[k * LORA_PANEL + o];
                    yr[q][j + o] = acc ? yr[q][j + o] + s : s;
                }
#endif
        }
    }
}

#undef LB
#undef LORA_L1_FLOATS
#if RW > 0
#undef LVF
#endif

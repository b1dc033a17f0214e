/* CPU row kernels: softmax, log_softmax, rms_norm, layer_norm.
 *
 * Row math lives in mc_cpu_rowops.h, instantiated per vector ISA here; this
 * file picks the ISA at run time, splits rows over threads, converts float16
 * rows through a float32 scratch row, and exports the API.
 */
#include "mc_cpu_fused.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#include <pthread.h>
#define MC_HAVE_PTHREADS 1
#endif

static int baseline_only = 0; /* mc_cpu_set_baseline_only */

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

#define MAX_THREADS 16

int mc_cpu_has_f16(void)
{
#ifdef MC_HAVE_F16
    return 1;
#else
    return 0;
#endif
}

const char *mc_cpu_strerror(int status)
{
    switch (status) {
    case MC_CPU_OK: return "ok";
    case MC_CPU_EINVAL: return "invalid argument";
    case MC_CPU_ENOMEM: return "out of memory";
    case MC_CPU_EUNSUPPORTED: return "float16 not compiled in";
    default: return "unknown status";
    }
}

/* ------------------------------------------------------------ row kernels */

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9)
#define MC_VEC_EXT 1
#endif

/* Baseline ISA: 4 lanes (SSE2, NEON), 8 when the whole build targets AVX2. */
#define MC_FN
#define ROW(name) name##_base
#if defined(MC_VEC_EXT) && defined(__AVX2__)
#define RW 8
#elif defined(MC_VEC_EXT)
#define RW 4
#else
#define RW 0
#endif
#include "mc_cpu_rowops.h"
#undef RW
#undef ROW
#undef MC_FN

/* x86 baseline builds also carry an AVX2 copy, picked at run time: exp is
 * compute-bound and twice the lanes halves its cost. */
#if defined(MC_VEC_EXT) && (defined(__x86_64__) || defined(__i386__)) && !defined(__AVX2__)
#define MC_AVX2_DISPATCH 1
#define MC_FN __attribute__((target("avx2")))
#define ROW(name) name##_avx2
#define RW 8
#include "mc_cpu_rowops.h"
#undef RW
#undef ROW
#undef MC_FN
#endif

void mc_cpu_set_baseline_only(int on)
{
    baseline_only = on != 0;
}

static int cpu_has_avx2(void)
{
#ifdef MC_AVX2_DISPATCH
    return !baseline_only && __builtin_cpu_supports("avx2") != 0;
#else
    return 0;
#endif
}

/* ------------------------------------------------------------ jobs */

enum { OP_SOFTMAX, OP_RMS, OP_LAYER };

typedef struct {
    int op, dtype, log, status, avx2;
    const void *x;
    void *y;
    const float *w, *b;
    int64_t r0, r1, n;
    float eps;
} job_t;

static void run_row(const job_t *jb, const float *x, float *y)
{
#ifdef MC_AVX2_DISPATCH
    if (jb->avx2) {
        switch (jb->op) {
        case OP_SOFTMAX: softmax_row_avx2(x, y, jb->n, jb->log); break;
        case OP_RMS: rms_row_avx2(x, jb->w, y, jb->n, jb->eps); break;
        default: layer_norm_row_avx2(x, jb->w, jb->b, y, jb->n, jb->eps); break;
        }
        return;
    }
#endif
    switch (jb->op) {
    case OP_SOFTMAX: softmax_row_base(x, y, jb->n, jb->log); break;
    case OP_RMS: rms_row_base(x, jb->w, y, jb->n, jb->eps); break;
    default: layer_norm_row_base(x, jb->w, jb->b, y, jb->n, jb->eps); break;
    }
}

static void run_job(job_t *jb)
{
    int64_t n = jb->n;
    if (jb->dtype == MC_CPU_F32) {
        const float *x = (const float *)jb->x;
        float *y = (float *)jb->y;
        for (int64_t r = jb->r0; r < jb->r1; r++) run_row(jb, x + r * n, y + r * n);
        jb->status = MC_CPU_OK;
        return;
    }
#ifdef MC_HAVE_F16
    /* float16 rows go through a float32 scratch row. */
    float *buf = (float *)malloc((size_t)n * sizeof(float));
    if (!buf) {
        jb->status = MC_CPU_ENOMEM;
        return;
    }
    const mc_half *x = (const mc_half *)jb->x;
    mc_half *y = (mc_half *)jb->y;
    int fast = cpu_has_f16c();
    for (int64_t r = jb->r0; r < jb->r1; r++) {
        h2f(x + r * n, buf, n, fast);
        run_row(jb, buf, buf);
        f2h(buf, y + r * n, n, fast);
    }
    free(buf);
    jb->status = MC_CPU_OK;
#else
    jb->status = MC_CPU_EUNSUPPORTED;
#endif
}

#ifdef MC_HAVE_PTHREADS
static void *job_main(void *arg)
{
    run_job((job_t *)arg);
    return NULL;
}
#endif

static int run_rows(job_t proto, int64_t rows, int nthreads)
{
    if (!proto.x || !proto.y || rows < 0 || proto.n < 0) return MC_CPU_EINVAL;
    if (proto.dtype != MC_CPU_F32 && proto.dtype != MC_CPU_F16) return MC_CPU_EINVAL;
    if (proto.dtype == MC_CPU_F16 && !mc_cpu_has_f16()) return MC_CPU_EUNSUPPORTED;
    if (rows == 0 || proto.n == 0) return MC_CPU_OK;

    int nt = nthreads < 1 ? 1 : (nthreads > MAX_THREADS ? MAX_THREADS : nthreads);
    if (rows * proto.n < MC_CPU_PARALLEL_MIN) nt = 1;
    if ((int64_t)nt > rows) nt = (int)rows;
#ifndef MC_HAVE_PTHREADS
    nt = 1;
#endif
    job_t jobs[MAX_THREADS];
    proto.avx2 = cpu_has_avx2();
    for (int t = 0; t < nt; t++) {
        jobs[t] = proto;
        jobs[t].r0 = rows * t / nt;
        jobs[t].r1 = rows * (t + 1) / nt;
        jobs[t].status = MC_CPU_OK;
    }
#ifdef MC_HAVE_PTHREADS
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS];
    for (int t = 1; t < nt; t++)
        started[t] = pthread_create(&tid[t], NULL, job_main, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int t = 1; t < nt; t++) {
        /* A thread that could not start runs here instead: never fail for lack of threads. */
        if (started[t]) pthread_join(tid[t], NULL);
        else run_job(&jobs[t]);
    }
#else
    run_job(&jobs[0]);
#endif
    for (int t = 0; t < nt; t++)
        if (jobs[t].status != MC_CPU_OK) return jobs[t].status;
    return MC_CPU_OK;
}

static job_t make_job(int op, const void *x, void *y, int64_t n, int dtype)
{
    job_t jb;
    memset(&jb, 0, sizeof jb);
    jb.op = op;
    jb.x = x;
    jb.y = y;
    jb.n = n;
    jb.dtype = dtype;
    return jb;
}

/* ------------------------------------------------------------ API */

int mc_cpu_softmax(const void *x, void *y, int64_t rows, int64_t n, int dtype,
                   int log, int nthreads)
{
    job_t jb = make_job(OP_SOFTMAX, x, y, n, dtype);
    jb.log = log != 0;
    return run_rows(jb, rows, nthreads);
}

int mc_cpu_rms_norm(const void *x, const float *w, void *y, int64_t rows,
                    int64_t n, float eps, int dtype, int nthreads)
{
    job_t jb = make_job(OP_RMS, x, y, n, dtype);
    jb.w = w;
    jb.eps = eps;
    return run_rows(jb, rows, nthreads);
}

int mc_cpu_layer_norm(const void *x, const float *w, const float *b, void *y,
                      int64_t rows, int64_t n, float eps, int dtype,
                      int nthreads)
{
    job_t jb = make_job(OP_LAYER, x, y, n, dtype);
    jb.w = w;
    jb.b = b;
    jb.eps = eps;
    return run_rows(jb, rows, nthreads);
}

/* CPU row kernels: softmax, log_softmax, rms_norm, layer_norm.
 *
 * Row math lives in mc_cpu_rowops.h; this file splits rows over threads,
 * converts float16 rows through a float32 scratch row, and exports the API.
 */
#include "mc_cpu_fused.h"
#include "mc_cpu_rowops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#include <pthread.h>
#define MC_HAVE_PTHREADS 1
#endif

/* GCC and Clang define __FLT16_MANT_DIG__ exactly when _Float16 exists. */
#if defined(__FLT16_MANT_DIG__)
#define MC_HAVE_F16 1
typedef _Float16 mc_half;

/* x86 builds for the baseline ISA convert _Float16 in software (a libgcc call per
 * element, ~40x slower); when the CPU has F16C, use loops compiled for it. */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(__F16C__) && \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12))
#define MC_F16C_DISPATCH 1
__attribute__((target("f16c"))) static void h2f_f16c(const mc_half *h, float *f, int64_t n)
{
    for (int64_t i = 0; i < n; i++) f[i] = (float)h[i];
}
__attribute__((target("f16c"))) static void f2h_f16c(const float *f, mc_half *h, int64_t n)
{
    for (int64_t i = 0; i < n; i++) h[i] = (mc_half)f[i];
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
    return __builtin_cpu_supports("f16c") != 0;
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

/* ------------------------------------------------------------ float32 rows */

static void softmax_row(const float *x, float *y, int64_t n, int want_log)
{
    float m = row_max(x, n);
    /* All -inf, or +inf present: NumPy's formula gives NaN for the whole row. */
    if (!(m > -INFINITY && m < INFINITY)) {
        for (int64_t i = 0; i < n; i++) y[i] = NAN;
        return;
    }
    if (want_log) {
        float ls = (float)log(row_exp(x, NULL, n, m));
        row_affine(x, y, n, m, 1.0f, NULL, NULL, -ls);
    } else {
        row_scale(y, n, (float)(1.0 / row_exp(x, y, n, m)));
    }
}

static void rms_row(const float *x, const float *w, float *y, int64_t n, float eps)
{
    double s1, s2;
    row_moments(x, n, 0.0f, &s1, &s2);
    float r = (float)(1.0 / sqrt(s2 / (double)n + (double)eps));
    row_affine(x, y, n, 0.0f, r, w, NULL, 0.0f);
}

static void layer_norm_row(const float *x, const float *w, const float *b, float *y,
                           int64_t n, float eps)
{
    double s1, s2;
    row_moments(x, n, 0.0f, &s1, &s2);
    float c = (float)(s1 / (double)n);
    /* Corrected two-pass: deviations from the float32 mean, minus their own mean. */
    row_moments(x, n, c, &s1, &s2);
    double dm = s1 / (double)n;
    double var = s2 / (double)n - dm * dm;
    float mean = (float)((double)c + dm);
    float r = (float)(1.0 / sqrt((var > 0.0 ? var : 0.0) + (double)eps));
    row_affine(x, y, n, mean, r, w, b, 0.0f);
}

/* ------------------------------------------------------------ jobs */

enum { OP_SOFTMAX, OP_RMS, OP_LAYER };

typedef struct {
    int op, dtype, log, status;
    const void *x;
    void *y;
    const float *w, *b;
    int64_t r0, r1, n;
    float eps;
} job_t;

static void run_row(const job_t *jb, const float *x, float *y)
{
    switch (jb->op) {
    case OP_SOFTMAX: softmax_row(x, y, jb->n, jb->log); break;
    case OP_RMS: rms_row(x, jb->w, y, jb->n, jb->eps); break;
    default: layer_norm_row(x, jb->w, jb->b, y, jb->n, jb->eps); break;
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

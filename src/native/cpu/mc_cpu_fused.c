/* CPU row kernels: softmax, log_softmax, rms_norm, layer_norm, and LoRA.
 *
 * Row math lives in mc_cpu_rowops.h and mc_cpu_lora.h, instantiated per vector
 * ISA here; this file picks the ISA at run time, splits rows over threads,
 * converts float16 rows through float32 scratch rows, and exports the API.
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

#include "mc_cpu_half.h"

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
#if RW == 8 && defined(__FMA__)
#include <immintrin.h>
#define LORA_FMA(c, v, s) _mm256_fmadd_ps((v), _mm256_set1_ps(s), (c))
#else
#define LORA_FMA(c, v, s) ((c) + (v) * (s))
#endif
#include "mc_cpu_lora.h"
#undef LORA_FMA
#undef RW
#undef ROW
#undef MC_FN

/* x86 baseline builds also carry an AVX2 copy, picked at run time: exp is
 * compute-bound and twice the lanes halves its cost. The LoRA copy also uses
 * FMA (every AVX2 CPU has it): the kernel is nothing but multiply-adds. */
#if defined(MC_VEC_EXT) && (defined(__x86_64__) || defined(__i386__)) && !defined(__AVX2__)
#define MC_AVX2_DISPATCH 1
#include <immintrin.h>
#define MC_FN __attribute__((target("avx2")))
#define ROW(name) name##_avx2
#define RW 8
#include "mc_cpu_rowops.h"
#undef MC_FN
#define MC_FN __attribute__((target("avx2,fma")))
#define LORA_FMA(c, v, s) _mm256_fmadd_ps((v), _mm256_set1_ps(s), (c))
#define LORA_STREAM(p, v)                                \
    (_mm_stream_ps((p), _mm256_castps256_ps128(v)), \
     _mm_stream_ps((p) + 4, _mm256_extractf128_ps((v), 1)))
#include "mc_cpu_lora.h"
#undef LORA_STREAM
#undef LORA_FMA
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

enum { OP_SOFTMAX, OP_RMS, OP_LAYER, OP_LORA };

typedef struct {
    int op, dtype, log, status, avx2;
    const void *x;
    void *y;
    const float *w, *b; /* LoRA: w is a (n x lda), b is b packed in panels */
    int64_t r1, n;      /* rows; row length (LoRA: n_in) */
    float eps;
    int64_t lda, rank, n_out; /* LoRA only */
    float scale;
    int acc, nt;   /* LoRA: y +=, and non-temporal (streaming) stores of y */
    int64_t *next; /* first row not yet claimed, shared by the threads; r1 is the row count */
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

/* LoRA rows per block (a multiple of the 6-row micro-tile): each L1 chunk of a
 * serves all of them. */
#define LORA_ROWS 24

/* Threads claim blocks of k rows from a shared counter rather than a fixed share
 * of the rows: a thread on a busy core (OpenBLAS's workers spin for ~0.1 s after
 * each BLAS call) claims fewer blocks instead of holding up the join. */
static int64_t claim_block(int64_t *next, int64_t k)
{
#ifdef MC_HAVE_PTHREADS
    return __atomic_fetch_add(next, k, __ATOMIC_RELAXED);
#else
    int64_t r0 = *next;
    *next += k;
    return r0;
#endif
}

static void lora_job(job_t *jb)
{
    int64_t n_in = jb->n, n_out = jb->n_out, lda = jb->lda;
    int half = jb->dtype == MC_CPU_F16;
    /* h (rank intermediate), then for float16 the float32 x and y rows. */
    size_t nf = (size_t)(LORA_ROWS * lda);
    if (half) nf += (size_t)LORA_ROWS * (size_t)(n_in + n_out);
    float *h = (float *)malloc(nf * sizeof(float));
    if (!h) {
        jb->status = MC_CPU_ENOMEM;
        return;
    }
#ifdef MC_HAVE_F16
    float *xs = h + LORA_ROWS * lda, *ys = xs + LORA_ROWS * n_in;
    int fast = half ? cpu_has_f16c() : 0;
#endif
#ifdef MC_AVX2_DISPATCH
    int avx2 = jb->avx2 && __builtin_cpu_supports("fma");
#endif
    for (int64_t r0; (r0 = claim_block(jb->next, LORA_ROWS)) < jb->r1;) {
        int64_t nr = jb->r1 - r0 < LORA_ROWS ? jb->r1 - r0 : LORA_ROWS;
        const float *x = (const float *)jb->x + r0 * n_in;
        float *y = (float *)jb->y + r0 * n_out;
#ifdef MC_HAVE_F16
        if (half) {
            h2f((const mc_half *)jb->x + r0 * n_in, xs, nr * n_in, fast);
            if (jb->acc) h2f((const mc_half *)jb->y + r0 * n_out, ys, nr * n_out, fast);
            x = xs;
            y = ys;
        }
#endif
#ifdef MC_AVX2_DISPATCH
        if (avx2)
            lora_block_avx2(x, jb->w, lda, jb->b, y, h, nr, n_in, jb->rank, n_out, jb->scale,
                            jb->acc, jb->nt);
        else
#endif
            lora_block_base(x, jb->w, lda, jb->b, y, h, nr, n_in, jb->rank, n_out, jb->scale,
                            jb->acc, jb->nt);
#ifdef MC_HAVE_F16
        if (half) f2h(ys, (mc_half *)jb->y + r0 * n_out, nr * n_out, fast);
#endif
    }
    free(h);
#ifdef MC_AVX2_DISPATCH
    if (avx2 && jb->nt) _mm_sfence(); /* order the streaming stores before the join */
#endif
    jb->status = MC_CPU_OK;
}

/* Row kernels: rows [r0, r1) (float16 through the float32 scratch row buf). */
static void run_row_range(const job_t *jb, int64_t r0, int64_t r1, float *buf)
{
    int64_t n = jb->n;
    if (jb->dtype == MC_CPU_F32) {
        const float *x = (const float *)jb->x;
        float *y = (float *)jb->y;
        for (int64_t r = r0; r < r1; r++) run_row(jb, x + r * n, y + r * n);
        return;
    }
#ifdef MC_HAVE_F16
    const mc_half *x = (const mc_half *)jb->x;
    mc_half *y = (mc_half *)jb->y;
    int fast = cpu_has_f16c();
    for (int64_t r = r0; r < r1; r++) {
        h2f(x + r * n, buf, n, fast);
        run_row(jb, buf, buf);
        f2h(buf, y + r * n, n, fast);
    }
#else
    (void)buf;
#endif
}

/* Rows per claimed block of a row kernel: about 64 KiB of float32 input. */
static int64_t row_block(int64_t n)
{
    int64_t b = (int64_t)(1 << 14) / (n > 0 ? n : 1);
    return b < 1 ? 1 : b;
}

static void run_job(job_t *jb)
{
    if (jb->op == OP_LORA) {
        lora_job(jb);
        return;
    }
    float *buf = NULL;
    if (jb->dtype != MC_CPU_F32) {
#ifdef MC_HAVE_F16
        buf = (float *)malloc((size_t)jb->n * sizeof(float));
        if (!buf) {
            jb->status = MC_CPU_ENOMEM;
            return;
        }
#else
        jb->status = MC_CPU_EUNSUPPORTED;
        return;
#endif
    }
    int64_t blk = row_block(jb->n);
    for (int64_t r0; (r0 = claim_block(jb->next, blk)) < jb->r1;)
        run_row_range(jb, r0, r0 + blk < jb->r1 ? r0 + blk : jb->r1, buf);
    free(buf);
    jb->status = MC_CPU_OK;
}

#ifdef MC_HAVE_PTHREADS
static void *job_main(void *arg)
{
    run_job((job_t *)arg);
    return NULL;
}
#endif

static int clamp_threads(int nthreads)
{
#ifndef MC_HAVE_PTHREADS
    nthreads = 1;
#endif
    return nthreads < 1 ? 1 : (nthreads > MAX_THREADS ? MAX_THREADS : nthreads);
}

/* Runs jobs[0] here and jobs[1 .. nt) on their own threads; the first error status. */
static int run_jobs(job_t *jobs, int nt)
{
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

static int check_dtype(int dtype)
{
    if (dtype != MC_CPU_F32 && dtype != MC_CPU_F16) return MC_CPU_EINVAL;
    if (dtype == MC_CPU_F16 && !mc_cpu_has_f16()) return MC_CPU_EUNSUPPORTED;
    return MC_CPU_OK;
}

static int run_rows(job_t proto, int64_t rows, int nthreads)
{
    if (!proto.x || !proto.y || rows < 0 || proto.n < 0) return MC_CPU_EINVAL;
    int st = check_dtype(proto.dtype);
    if (st != MC_CPU_OK) return st;
    if (rows == 0 || proto.n == 0) return MC_CPU_OK;

    int nt = clamp_threads(nthreads);
    if (rows * proto.n < MC_CPU_PARALLEL_MIN) nt = 1;
    if ((int64_t)nt > rows) nt = (int)rows;
    job_t jobs[MAX_THREADS];
    int64_t next = 0;
    proto.avx2 = cpu_has_avx2();
    for (int t = 0; t < nt; t++) {
        jobs[t] = proto;
        jobs[t].r1 = rows;
        jobs[t].next = &next;
        jobs[t].status = MC_CPU_OK;
    }
    return run_jobs(jobs, nt);
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

int mc_cpu_lora(const void *x, const float *a, const float *b, void *y, int64_t rows,
                int64_t n_in, int64_t rank, int64_t n_out, float scale, int accumulate,
                int dtype, int nthreads)
{
    if (!x || !a || !b || !y || rows < 0 || n_in < 0 || rank < 1 || n_out < 0)
        return MC_CPU_EINVAL;
    if (rank > MC_CPU_LORA_MAX_RANK) return MC_CPU_EINVAL;
    int st = check_dtype(dtype);
    if (st != MC_CPU_OK) return st;
    if (rows == 0 || n_out == 0) return MC_CPU_OK;

    /* Packed copies: a zero-padded to 8-column groups (the x @ a tiles' width), b
     * in zero-padded panels of LORA_PANEL columns (see mc_cpu_lora.h). */
    int64_t lda = (rank + 7) / 8 * 8, npan = (n_out + LORA_PANEL - 1) / LORA_PANEL;
    size_t na = lda == rank ? 0 : (size_t)(n_in * lda);
    float *bp = (float *)malloc((na + (size_t)(npan * rank * LORA_PANEL)) * sizeof(float));
    if (!bp) return MC_CPU_ENOMEM;
    float *ap = bp + npan * rank * LORA_PANEL;
    for (int64_t p = 0; p < npan; p++) {
        int64_t c0 = p * LORA_PANEL, nc = n_out - c0 < LORA_PANEL ? n_out - c0 : LORA_PANEL;
        for (int64_t k = 0; k < rank; k++) {
            float *d = bp + (p * rank + k) * LORA_PANEL;
            memcpy(d, b + k * n_out + c0, (size_t)nc * sizeof(float));
            memset(d + nc, 0, (size_t)(LORA_PANEL - nc) * sizeof(float));
        }
    }
    for (int64_t k = 0; na && k < n_in; k++) {
        memcpy(ap + k * lda, a + k * rank, (size_t)rank * sizeof(float));
        memset(ap + k * lda + rank, 0, (size_t)(lda - rank) * sizeof(float));
    }
    job_t jb = make_job(OP_LORA, x, y, n_in, dtype);
    jb.w = na ? ap : a;
    jb.b = bp;
    jb.lda = lda;
    jb.rank = rank;
    jb.n_out = n_out;
    jb.scale = scale;
    jb.acc = accumulate != 0;
    /* Big float32 outputs bypass the caches: no read-for-ownership of lines that are
     * entirely overwritten (float16 rows are converted from scratch instead). */
    jb.nt = !jb.acc && dtype == MC_CPU_F32 && rows * n_out >= MC_CPU_LORA_STREAM_MIN;
    int64_t next = 0;
    jb.next = &next;
    jb.r1 = rows;
    jb.avx2 = cpu_has_avx2();
    int nt = clamp_threads(nthreads);
    if (rows * rank * (n_in + n_out) < MC_CPU_LORA_PARALLEL_MIN) nt = 1;
    int64_t blocks = (rows + LORA_ROWS - 1) / LORA_ROWS;
    if ((int64_t)nt > blocks) nt = (int)blocks;
    job_t jobs[MAX_THREADS];
    for (int t = 0; t < nt; t++) jobs[t] = jb;
    st = run_jobs(jobs, nt);
    free(bp);
    return st;
}

/* CPU row kernels for the fused transformer primitives (softmax, norms, LoRA).
 *
 * Portable C99. Rows are contiguous, `rows` x `n` elements; x and y may be the
 * same buffer (in place), except for LoRA. Sums accumulate in float32 lanes
 * inside 256-element blocks and in double across blocks. Large inputs are split
 * over `nthreads` pthreads. Functions never abort or print; they return an
 * MC_CPU_* status.
 */
#ifndef MC_CPU_FUSED_H
#define MC_CPU_FUSED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MC_CPU_OK = 0,
    MC_CPU_EINVAL = 1,      /* bad sizes, NULL pointers, unknown dtype */
    MC_CPU_ENOMEM = 2,      /* scratch allocation failed */
    MC_CPU_EUNSUPPORTED = 3 /* float16 requested but not compiled in */
};

enum {
    MC_CPU_F32 = 0,
    MC_CPU_F16 = 1 /* IEEE binary16 storage, float32 compute */
};

/* Elements below which the kernels stay on the calling thread. */
#define MC_CPU_PARALLEL_MIN (1 << 16)

/* LoRA: multiply-adds (rows * rank * (n_in + n_out)) below which it stays on the
 * calling thread; output elements from which float32 results bypass the caches
 * (16 MiB); the largest rank it takes. */
#define MC_CPU_LORA_PARALLEL_MIN (1 << 22)
#define MC_CPU_LORA_STREAM_MIN (1 << 22)
#define MC_CPU_LORA_MAX_RANK 1024

/* 1 when this build converts float16 (the compiler has _Float16), else 0. */
int mc_cpu_has_f16(void);

/* Testing hook: nonzero restricts the kernels to the baseline ISA (no AVX2 or
 * F16C dispatch). Process-wide; set it while no kernel runs. */
void mc_cpu_set_baseline_only(int on);

/* Static text for a status code. */
const char *mc_cpu_strerror(int status);

/* y = softmax(x) per row, or log_softmax when `log` is nonzero. */
int mc_cpu_softmax(const void *x, void *y, int64_t rows, int64_t n, int dtype,
                   int log, int nthreads);

/* y = x * rsqrt(mean(x*x) + eps) * w; w (n float32) may be NULL. */
int mc_cpu_rms_norm(const void *x, const float *w, void *y, int64_t rows,
                    int64_t n, float eps, int dtype, int nthreads);

/* y = (x - mean) * rsqrt(var + eps) * w + b; w, b (n float32) may be NULL. */
int mc_cpu_layer_norm(const void *x, const float *w, const float *b, void *y,
                      int64_t rows, int64_t n, float eps, int dtype,
                      int nthreads);

/* y = scale * (x @ a) @ b, or y += that when `accumulate` is nonzero.
 * x is rows x n_in, y rows x n_out (dtype); a is n_in x rank and b rank x n_out,
 * float32, all C-contiguous. x and y must not overlap. 1 <= rank <= MAX_RANK.
 * Threads claim blocks of rows as they go rather than a fixed share. */
int mc_cpu_lora(const void *x, const float *a, const float *b, void *y, int64_t rows,
                int64_t n_in, int64_t rank, int64_t n_out, float scale, int accumulate,
                int dtype, int nthreads);

#ifdef __cplusplus
}
#endif

#endif /* MC_CPU_FUSED_H */

/* Private: constants and scalar exp shared by every instantiation of mc_cpu_rowops.h. */
#ifndef MC_CPU_EXPF_H
#define MC_CPU_EXPF_H

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

#endif /* MC_CPU_EXPF_H */

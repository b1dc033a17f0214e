/* mc_test_driver.h -- a pure-C driver for unit tests of the policy (no GPU, no Objective-C).
 *
 * "Kernels" are C functions chosen by name; a library source is valid when every
 * `kernel void NAME(` in it names one of them (a line starting with `#error` is a compile error
 * reported as LABEL:LINE). Dispatches between two barriers run in *reverse* order, so a missing
 * barrier between dependent dispatches shows up as a wrong result, as it could on a GPU.
 * In async mode a committed command buffer runs only when waited for (mc_test_driver_drain runs
 * everything pending), so tests can observe buffers that must stay alive in the meantime.
 *
 * Kernels (grid = threads; `n` in a setBytes argument bounds the index):
 *   fill_f32     (float *out [0], {float value; uint32 n} [1])
 *   fill_const_f32 (float *out [0], uint32 n [1])   value = float function constant 0 (or 0)
 *   add_f32      (const float *a [0], const float *b [1], float *out [2], uint32 n [3])
 *   scale_f32    (const float *x [0], float *out [1], {float s; uint32 n} [2])
 *   inc_f32      (float *x [0], uint32 n [1])            x += 1
 *   fault        ()                                       fails the command buffer
 */
#ifndef MC_TEST_DRIVER_H
#define MC_TEST_DRIVER_H

#include "mc_device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mc_test_driver_stats {
  int64_t live_devices, live_buffers, live_libraries, live_pipelines, live_commands;
  int64_t buffer_allocations, pipeline_builds, commits, barriers, dispatches_run, waits;
  int64_t violations; /* driver API misuse: use of a freed buffer, double commit, ... */
  char first_violation[256];
} mc_test_driver_stats;

void mc_test_driver_get_stats(mc_test_driver_stats *out);
void mc_test_driver_reset_stats(void); /* counters only; live_* are kept */
void mc_test_driver_fail_allocations(int n); /* the next n buffer allocations fail */
void mc_test_driver_fail_commands(int n);    /* the next n committed command buffers fail */
void mc_test_driver_set_async(int on);
void mc_test_driver_drain(void);            /* async mode: run every committed command buffer */
/* Last commands as letters: P set pipeline, D dispatch, B barrier, C commit (reset with stats). */
const char *mc_test_driver_trace(void);

#ifdef __cplusplus
}
#endif

#endif /* MC_TEST_DRIVER_H */

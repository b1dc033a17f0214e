/* mc_mock_bridge.h -- the mock Metal framework's test hooks for the Cython bridge, or inert
 * stand-ins when this build is not the -Dmetal=mock one (so _metal.pyx compiles everywhere). */
#ifndef MC_MOCK_BRIDGE_H
#define MC_MOCK_BRIDGE_H

#ifdef MC_METAL_MOCK
#include "mockmetal.h"
#define MC_HAVE_MOCK 1
#else
#include <stddef.h>
#define MC_HAVE_MOCK 0
static inline long mockmetal_live_objects(void) { return 0; }
static inline long mockmetal_validation_errors(void) { return 0; }
static inline const char *mockmetal_first_validation_error(void) { return ""; }
static inline long mockmetal_commits(void) { return 0; }
static inline long mockmetal_kernel_runs(void) { return 0; }
static inline long mockmetal_pipeline_builds(void) { return 0; }
static inline long mockmetal_compiler_runs(void) { return 0; }
static inline long mockmetal_barriers(void) { return 0; }
static inline void mockmetal_reset_counters(void) {}
static inline void mockmetal_fail_allocations(int n) { (void)n; }
static inline void mockmetal_fail_command_buffers(int n) { (void)n; }
static inline void mockmetal_fail_compiles(int n) { (void)n; }
static inline void mockmetal_set_compiler_command(const char *c) { (void)c; }
static inline const char *mockmetal_compiler_command(void) { return ""; }
static inline void mockmetal_set_workers(unsigned n) { (void)n; }
#endif

#endif /* MC_MOCK_BRIDGE_H */

/* mockmetal.h -- test hooks of the mock Metal framework (tests/support/mockmetal).
 *
 * The mock implements the Metal subset declared in include/Metal/Metal.h in Objective-C (manual
 * retain/release, GNUstep Base, GCC runtime), with Metal's validation rules. Its "GPU" is one
 * worker thread that runs committed command buffers in queue order by calling the launchers of
 * the MSL simulator (tests/support/mslsim): newLibraryWithSource: hands the source to a compiler
 * (a shell command or a callback) that builds a .so exporting `mslsim_kernel_<name>`.
 * Dispatches of a concurrent encoder between two barriers run in reverse order, so a missing
 * barrier shows up as a wrong result. Nothing here prints or aborts (MOCKMETAL_ABORT=1 in the
 * environment makes a validation error abort, for a debugger).
 */
#ifndef MOCKMETAL_H
#define MOCKMETAL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters. */
long mockmetal_live_objects(void);      /* live mock Metal objects (leak check: 0 after cleanup) */
long mockmetal_validation_errors(void); /* Metal API misuse seen (the debug layer would assert) */
const char *mockmetal_first_validation_error(void);
long mockmetal_commits(void);
long mockmetal_kernel_runs(void);      /* dispatches executed (only ever after commit) */
long mockmetal_pipeline_builds(void);  /* newComputePipelineStateWithFunction: calls */
long mockmetal_compiler_runs(void);    /* sources actually compiled (the rest hit the cache) */
long mockmetal_barriers(void);         /* memoryBarrierWithScope: calls */
void mockmetal_reset_counters(void);   /* everything but live objects; also clears injections */

/* Fault injection: the next n calls fail like Metal does. */
void mockmetal_fail_allocations(int n);     /* newBufferWithLength: returns nil */
void mockmetal_fail_command_buffers(int n); /* committed command buffer ends in MTLCommandBufferStatusError */
void mockmetal_fail_compiles(int n);        /* newLibraryWithSource: fails with a compile error */

/* The MSL compiler. A callback takes precedence over the command. The command is run by the
 * shell as: COMMAND compile SOURCE.metal -o OUT.so (e.g. "python3 /repo/tests/support/mslsim");
 * default: $MOCKMETAL_COMPILER, else the build-time MOCKMETAL_DEFAULT_COMPILER. Results are
 * cached in this process by a hash of the source. */
typedef const char *(*mockmetal_compiler_fn)(const char *source, char *error, size_t error_len);
void mockmetal_set_compiler(mockmetal_compiler_fn fn);
void mockmetal_set_compiler_command(const char *command); /* NULL: back to the default */
const char *mockmetal_compiler_command(void);
void mockmetal_set_workers(unsigned n); /* simulator threads per dispatch (0 = one per CPU) */

#ifdef __cplusplus
}
#endif

#endif /* MOCKMETAL_H */

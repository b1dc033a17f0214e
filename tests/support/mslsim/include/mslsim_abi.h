/* mslsim_abi.h -- the C ABI of a kernel library built by mslsim.
 *
 * `python -m tests.support.mslsim compile file.metal -o file.so` builds one shared object per
 * .metal file. It exports, with C linkage and default visibility:
 *
 *   int         mslsim_kernel_<host_name>(mslsim_dispatch *d);  one launcher per kernel
 *   const char *mslsim_module_info(void);                       JSON description (see README.md)
 *   uint32_t    mslsim_abi_version(void);                        == MSLSIM_ABI_VERSION
 *
 * A launcher runs the whole grid synchronously on the calling thread plus `n_workers - 1` helper
 * threads and returns when every threadgroup has finished. It is reentrant: several threads may
 * launch kernels of the same library at once. It never aborts and never prints: on failure it
 * returns a non-zero MSLSIM_STATUS_* and leaves a NUL-terminated message in d->error.
 * A memory fault inside a kernel (out-of-bounds access) still crashes the process, as it would
 * take down a real GPU command buffer; build with -fsanitize=address to get a report instead.
 *
 * Plain C, includable from C, C++ and Objective-C.
 */
#ifndef MSLSIM_ABI_H
#define MSLSIM_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MSLSIM_ABI_VERSION 1u

#define MSLSIM_MAX_BUFFERS 31u            /* Metal's buffer argument table size */
#define MSLSIM_MAX_THREADGROUP_MEMORY 8u  /* [[threadgroup(i)]] slots */
#define MSLSIM_MAX_FUNCTION_CONSTANTS 64u
#define MSLSIM_THREADGROUP_MEMORY_LIMIT 32768u /* bytes, as on Apple GPUs */

/* Grid modes, as the two MTLComputeCommandEncoder dispatch calls. */
#define MSLSIM_GRID_THREADGROUPS 0u /* dispatchThreadgroups: grid counts threadgroups */
#define MSLSIM_GRID_THREADS 1u      /* dispatchThreads: grid counts threads; edge groups shrink */

/* flags */
#define MSLSIM_FLAG_LENIENT_BARRIERS 1u /* early return before a barrier is not an error */
/* Resume the waiting threads of a group in descending order. A kernel free of threadgroup-memory
 * races gives bit-identical results in both orders; one that reads another thread's data
 * without a barrier in between usually does not. */
#define MSLSIM_FLAG_REVERSE_ORDER 2u

/* Return codes of a launcher. */
#define MSLSIM_STATUS_OK 0
#define MSLSIM_STATUS_INVALID_DISPATCH 1 /* bad sizes, missing/short buffer, unset constant... */
#define MSLSIM_STATUS_KERNEL_FAULT 2     /* divergent barrier, early return before a barrier... */
#define MSLSIM_STATUS_OUT_OF_RESOURCES 3 /* threadgroup memory over the limit, no stack memory */

#define MSLSIM_ERROR_LEN 512

typedef struct mslsim_dispatch {
  uint32_t abi_version; /* in: MSLSIM_ABI_VERSION */
  uint32_t grid_mode;   /* in: MSLSIM_GRID_* */
  uint32_t grid[3];     /* in: threadgroups or threads per dimension (each >= 1) */
  uint32_t threadgroup[3]; /* in: threads per threadgroup; product in 1..1024 */

  /* in: the buffer argument table, index = [[buffer(i)]]. setBytes: data goes here too (the
   * launcher reads it during the call only). NULL = nothing bound. */
  uint32_t n_buffers;
  uint32_t reserved0;
  void *const *buffers;
  const uint64_t *buffer_lengths; /* bytes; checked against `constant T&` parameter sizes */

  /* in: setThreadgroupMemoryLength:atIndex:, index = [[threadgroup(i)]] */
  uint32_t n_threadgroup_memory;
  uint32_t reserved1;
  const uint64_t *threadgroup_memory_lengths;

  /* in: function constant values, index = [[function_constant(i)]]; each points to one value of
   * the type declared in the shader (bool = 1 byte). NULL = not set: reading it fails the launch,
   * and is_function_constant_defined() returns false. */
  uint32_t n_function_constants;
  uint32_t reserved2;
  const void *const *function_constants;

  uint32_t n_workers; /* in: OS threads running threadgroups; 0 = one per CPU */
  uint32_t flags;     /* in: MSLSIM_FLAG_* */
  uint32_t stack_kib; /* in: fiber stack per simulated thread; 0 = 64 KiB */
  uint32_t reserved3;

  uint64_t n_context_switches; /* out: statistics */
  char error[MSLSIM_ERROR_LEN];  /* out: message when the return value is not MSLSIM_STATUS_OK */
} mslsim_dispatch;

typedef int (*mslsim_launcher)(mslsim_dispatch *d);
typedef const char *(*mslsim_module_info_fn)(void);
typedef uint32_t (*mslsim_abi_version_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* MSLSIM_ABI_H */

/* mc_driver.h -- the small driver vtable the portable policy (mc_device.c) drives.
 *
 * A driver only touches GPU objects: it makes no policy decisions (no caching, no batching, no
 * hazard analysis). Two implementations: Metal (src/native/metal/mc_metal_driver.m, on macOS and
 * on Linux over the mock Metal framework) and a pure-C test driver (mc_test_driver.c).
 *
 * Contracts:
 *  - Fallible calls return mc_status and report with mc_set_error("<function>: <driver text>").
 *  - Handles (void *) are owned by the policy between *_new and *_free.
 *  - commands_new returns a command buffer with one compute encoder open, whose dispatches may
 *    run concurrently: the policy encodes a barrier between dependent dispatches.
 *  - commit ends encoding and commits; `done` is called exactly once when the GPU finishes,
 *    possibly on another thread and possibly before commit returns. `done` takes no lock.
 *  - wait blocks until the committed command buffer has completed (and `done` has run).
 *  - commands_free releases a completed command buffer, or discards an uncommitted one.
 *  - The driver keeps no buffer alive on behalf of a command buffer: the policy does.
 */
#ifndef MC_DRIVER_H
#define MC_DRIVER_H

#include "mc_device.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MC_DRIVER_ABI_VERSION 1u

/* failed != 0: `message` says why (copied by the callee before returning). */
typedef void (*mc_completion_fn)(void *arg, int failed, const char *message);

struct mc_driver {
  const char *name;
  uint32_t abi_version; /* MC_DRIVER_ABI_VERSION */

  mc_status (*open)(void **ctx, mc_device_info *info);
  void (*close)(void *ctx);

  mc_status (*buffer_new)(void *ctx, size_t nbytes, void **buffer, void **contents);
  void (*buffer_free)(void *ctx, void *buffer);

  mc_status (*library_new)(void *ctx, const char *source, const char *label, void **library);
  void (*library_free)(void *ctx, void *library);
  /* MC_NOT_FOUND (no mc_set_error needed) when `library` has no function `function`. */
  mc_status (*pipeline_new)(void *ctx, void *library, const char *function, const mc_constant *constants,
                            uint32_t n_constants, void **pipeline, uint32_t *max_threads);
  void (*pipeline_free)(void *ctx, void *pipeline);

  mc_status (*commands_new)(void *ctx, void **commands);
  void (*set_pipeline)(void *commands, void *pipeline);
  void (*set_buffer)(void *commands, void *buffer, uint64_t offset, uint32_t index);
  void (*set_bytes)(void *commands, const void *bytes, uint32_t length, uint32_t index);
  void (*dispatch)(void *commands, const uint32_t grid[3], const uint32_t threadgroup[3], mc_grid_mode mode);
  void (*barrier)(void *commands);
  mc_status (*commit)(void *commands, mc_completion_fn done, void *arg);
  void (*wait)(void *commands);
  void (*commands_free)(void *commands);
};

#ifdef __cplusplus
}
#endif

#endif /* MC_DRIVER_H */

/* mc_device.h -- metalcandle's native device: the pure-C ABI over a GPU driver.
 *
 * Plain C11, includable from C, C++, Cython and Objective-C without an Objective-C compiler.
 * Every Metal object hides behind an opaque handle; where an id<MTL...> travels it is a void *.
 *
 * Layers (see docs/metal.md):
 *   mc_device_* / mc_buffer_* / mc_pipeline_*   this header: the portable policy (the src/native C files):
 *                                               pipeline cache, buffer cache, command batching,
 *                                               hazard tracking, keep-alive, sticky errors, stats.
 *   mc_driver                                   mc_driver.h: the small vtable the policy drives;
 *                                               implemented on Metal (src/native/metal/mc_metal_driver.m) and by
 *                                               a pure-C test driver (mc_test_driver.c).
 *
 * Conventions: every fallible call returns an mc_status; on failure a message prefixed with the
 * function name (and carrying the driver's text, e.g. the NSError with the MSL line) is left in a
 * thread-local buffer read by mc_last_error(). Nothing here aborts or prints.
 * Threads: a device may be used from several threads; calls are serialised by the device, except
 * that pipeline compilation runs outside every lock other lookups wait on.
 */
#ifndef MC_DEVICE_H
#define MC_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MC_DEVICE_ABI_VERSION 1u

/* ------------------------------------------------------------------------ status and errors */
typedef enum mc_status {
  MC_OK = 0,
  MC_INVALID_ARGUMENT = 1,      /* caller error: bad index, size, threadgroup, unknown kernel */
  MC_COMPILE_ERROR = 2,         /* shader source rejected; the message carries file:line */
  MC_OUT_OF_MEMORY = 3,         /* allocation failed even after flushing the buffer cache */
  MC_COMMAND_BUFFER_ERROR = 4,  /* a command buffer failed; the device is now sticky */
  MC_NO_DEVICE = 5,             /* no GPU, or the driver is not compiled in */
  MC_DEVICE_ERROR_STICKY = 6,   /* an earlier command buffer failed: call mc_device_reset */
  MC_NOT_FOUND = 7,             /* no loaded library has that function */
  MC_INTERNAL = 8               /* a bug or an unexpected driver state */
} mc_status;

/* The message of the last failed call on this thread ("" if none). Valid until the next call. */
const char *mc_last_error(void);
/* "MC_OK", "MC_COMPILE_ERROR", ... */
const char *mc_status_name(mc_status status);
/* Drivers and the policy report through this; returns `status` for `return mc_set_error(...)`. */
mc_status mc_set_error(mc_status status, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void mc_clear_error(void);

/* ------------------------------------------------------------------------------- handles */
typedef struct mc_driver mc_driver;     /* mc_driver.h */
typedef struct mc_device mc_device;     /* a device + queue + caches */
typedef struct mc_buffer mc_buffer;     /* shared-memory buffer (CPU-visible contents) */
typedef struct mc_pipeline mc_pipeline; /* compute pipeline, owned by the device's cache */

/* ---------------------------------------------------------------------------------- device */
typedef struct mc_device_info {
  char name[128];
  uint64_t max_working_set; /* bytes the GPU should use (recommendedMaxWorkingSetSize); 0 unknown */
  uint32_t max_threads_per_threadgroup;
  uint32_t unified_memory;
} mc_device_info;

/* Opens the driver's default device. MC_NO_DEVICE when there is none. */
mc_status mc_device_new(const mc_driver *driver, mc_device **out);
/* Waits for in-flight work, frees caches, pipelines and libraries. Every mc_buffer of the device
 * must have been freed first. NULL is a no-op. */
void mc_device_free(mc_device *dev);
void mc_device_info_get(const mc_device *dev, mc_device_info *out);

/* ----------------------------------------------------------------------- libraries, kernels */
/* Compiles MSL source into a library of the device; functions are looked up across every library
 * loaded so far, most recent first. `label` names the source in messages (may be NULL). */
mc_status mc_device_load_library(mc_device *dev, const char *source, const char *label);

typedef enum mc_constant_type {
  MC_CONST_BOOL = 1,
  MC_CONST_INT32 = 2,
  MC_CONST_UINT32 = 3,
  MC_CONST_FLOAT32 = 4,
  MC_CONST_FLOAT16 = 5, /* value.u16 holds IEEE half bits */
  MC_CONST_INT64 = 6,
  MC_CONST_UINT64 = 7
} mc_constant_type;

/* A function-constant value: by name when `name` is non-NULL, else by [[function_constant(index)]]. */
typedef struct mc_constant {
  const char *name;
  uint32_t index;
  uint32_t type; /* mc_constant_type */
  union {
    uint8_t b;
    int32_t i32;
    uint32_t u32;
    float f32;
    uint16_t u16;
    int64_t i64;
    uint64_t u64;
  } value;
} mc_constant;

#define MC_MAX_FUNCTION_CONSTANTS 64u
#define MC_MAX_NAME 128u

/* The pipeline of function `name` (or `name`_`dtype` when dtype is non-NULL and non-empty: the
 * kernel naming rule <family>_<variant>_<dtype>) specialised with `constants`. Cached by
 * (name, dtype, constant values): a second identical request compiles nothing. The pipeline is
 * owned by the device and valid until mc_device_free. */
mc_status mc_device_pipeline(mc_device *dev, const char *name, const char *dtype, const mc_constant *constants,
                             uint32_t n_constants, mc_pipeline **out);
uint32_t mc_pipeline_max_threads(const mc_pipeline *p);
const char *mc_pipeline_function(const mc_pipeline *p);

/* --------------------------------------------------------------------------------- buffers */
/* A shared-storage buffer of at least `nbytes` (page-rounded; reused from the cache when one fits
 * within 2x). When allocation fails the cache is flushed (after retiring finished work) and the
 * allocation retried once before MC_OUT_OF_MEMORY. */
mc_status mc_buffer_new(mc_device *dev, size_t nbytes, mc_buffer **out);
/* Drops the owner's reference. A command buffer that still uses it keeps it alive; it returns to
 * the cache when the last user lets go. NULL is a no-op. */
void mc_buffer_free(mc_buffer *buf);
void *mc_buffer_contents(const mc_buffer *buf); /* CPU address (shared memory) */
size_t mc_buffer_size(const mc_buffer *buf);     /* bytes requested */
size_t mc_buffer_capacity(const mc_buffer *buf); /* bytes allocated (>= size) */
void *mc_buffer_handle(const mc_buffer *buf);    /* the driver object (id<MTLBuffer>) */

/* ------------------------------------------------------------------------------- dispatch */
#define MC_MAX_BINDINGS 31u   /* Metal's buffer argument table */
#define MC_MAX_BYTES_ARG 4096u /* setBytes limit */

enum { MC_ACCESS_READ = 1, MC_ACCESS_WRITE = 2, MC_ACCESS_READ_WRITE = 3 };

typedef struct mc_binding {
  mc_buffer *buffer; /* bound with setBuffer, or NULL to use bytes */
  uint64_t offset;
  const void *bytes; /* setBytes data (copied at encode time) when buffer is NULL */
  uint32_t length;   /* bytes length */
  uint32_t index;    /* [[buffer(index)]] */
  uint32_t access;   /* MC_ACCESS_*: drives hazard tracking; 0 counts as read-write */
} mc_binding;

typedef enum mc_grid_mode {
  MC_GRID_THREADGROUPS = 0, /* dispatchThreadgroups: grid counts threadgroups */
  MC_GRID_THREADS = 1       /* dispatchThreads: grid counts threads */
} mc_grid_mode;

/* Encodes one dispatch into the open command buffer (opening one if needed); a barrier is
 * encoded first only when a bound buffer has a read-after-write, write-after-read or
 * write-after-write hazard against an earlier dispatch of the same encoder. Nothing runs before
 * the command buffer is committed: every `commit_every` dispatches, or by mc_device_sync. Every
 * bound buffer stays alive until the command buffer completes. A grid with a zero dimension is a
 * no-op. */
mc_status mc_device_dispatch(mc_device *dev, mc_pipeline *pipeline, const mc_binding *bindings, uint32_t n_bindings,
                             const uint32_t grid[3], const uint32_t threadgroup[3], mc_grid_mode mode);
/* Commits the open command buffer (if it has work) without waiting. */
mc_status mc_device_commit(mc_device *dev);
/* Commits and waits for every command buffer. MC_COMMAND_BUFFER_ERROR if one failed (the device
 * is then sticky: every later dispatch/sync fails with MC_DEVICE_ERROR_STICKY until reset). */
mc_status mc_device_sync(mc_device *dev);
/* Waits for in-flight work, drops uncommitted work and clears the sticky error state. */
mc_status mc_device_reset(mc_device *dev);
/* 1 when a command buffer failed and mc_device_reset has not been called since. */
int mc_device_is_sticky(const mc_device *dev);

/* ------------------------------------------------------------------------- policy settings */
#define MC_DEFAULT_COMMIT_EVERY 48u
#define MC_DEFAULT_MAX_IN_FLIGHT 3u
#define MC_MAX_IN_FLIGHT_LIMIT 16u
#define MC_DEFAULT_CACHE_LIMIT ((uint64_t)256 << 20) /* 256 MiB unless set */
#define MC_PAGE_SIZE 16384u                         /* Apple GPU page */

mc_status mc_device_set_commit_every(mc_device *dev, uint32_t n);   /* >= 1 */
mc_status mc_device_set_max_in_flight(mc_device *dev, uint32_t n);  /* 1..MC_MAX_IN_FLIGHT_LIMIT */
/* Bounds the bytes of free buffers kept for reuse; evicts (LRU) at once. Returns the old limit. */
uint64_t mc_device_set_cache_limit(mc_device *dev, uint64_t bytes);
/* Frees every cached (unused) buffer. */
void mc_device_clear_cache(mc_device *dev);

typedef struct mc_stats {
  uint64_t dispatches;        /* dispatches encoded */
  uint64_t command_buffers;   /* command buffers committed */
  uint64_t barriers;          /* memory barriers encoded for hazards */
  uint64_t pipeline_compiles; /* pipelines built by the driver */
  uint64_t pipeline_hits;     /* pipeline requests served by the cache */
  uint64_t active_bytes;      /* bytes in buffers owned by callers or in flight */
  uint64_t peak_bytes;        /* high-water mark of active_bytes */
  uint64_t cached_bytes;      /* bytes in free buffers kept for reuse */
  uint64_t cache_limit;
  uint64_t buffer_allocations; /* driver allocations */
  uint64_t buffer_reuses;      /* mc_buffer_new served from the cache */
  uint64_t oom_retries;        /* allocations retried after flushing the cache */
  uint64_t in_flight;          /* command buffers committed, not yet retired */
  uint64_t live_buffers;       /* mc_buffer objects not yet returned (owned or in flight) */
  uint32_t commit_every;
  uint32_t max_in_flight;
} mc_stats;

void mc_device_stats(mc_device *dev, mc_stats *out);

/* ------------------------------------------------------------------------------- drivers */
/* The Metal driver, or NULL when this build has none (Linux without -Dmetal=mock). */
const mc_driver *mc_metal_driver(void);
/* The pure-C test driver (always built; see mc_test_driver.h). */
const mc_driver *mc_test_driver(void);
const char *mc_driver_name(const mc_driver *driver);

#ifdef __cplusplus
}
#endif

#endif /* MC_DEVICE_H */

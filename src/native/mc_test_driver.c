/* mc_test_driver.c -- the pure-C test driver (see mc_test_driver.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_driver.h"
#include "mc_test_driver.h"

#define COUNT(field, d) __atomic_add_fetch(&g_stats.field, (d), __ATOMIC_RELAXED)

static mc_test_driver_stats g_stats;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* pending queue, trace, violations */
static int g_fail_allocations, g_fail_commands, g_async;
static char g_trace[4096];
static size_t g_trace_len;

static void trace(char c) {
  pthread_mutex_lock(&g_lock);
  if (g_trace_len + 1 < sizeof g_trace) g_trace[g_trace_len++] = c, g_trace[g_trace_len] = '\0';
  pthread_mutex_unlock(&g_lock);
}

static void violation_locked(const char *what) {
  if (g_stats.violations++ == 0) snprintf(g_stats.first_violation, sizeof g_stats.first_violation, "%s", what);
}

/* ------------------------------------------------------------------------------ objects */
typedef struct tbuf {
  void *mem;
  size_t len;
  int pending; /* recorded dispatches not yet run that use it */
  int freed;
} tbuf;

typedef struct tcall tcall;
typedef int (*tkernel_fn)(const tcall *c, uint64_t n_threads, char *err, size_t errlen);

typedef struct tkernel {
  const char *name;
  tkernel_fn fn;
} tkernel;

typedef struct tpipe {
  const tkernel *k;
  float constant0;
} tpipe;

typedef struct tlib {
  int n;
  const tkernel *kernels[32];
} tlib;

struct tcall {
  const tpipe *p;
  tbuf *bufs[MC_MAX_BINDINGS];
  uint64_t offsets[MC_MAX_BINDINGS];
  unsigned char *bytes[MC_MAX_BINDINGS];
  uint32_t lengths[MC_MAX_BINDINGS];
  uint64_t n_threads;
  int barrier_before;
};

typedef struct tcmds {
  tcall *calls;
  int n, cap;
  const tpipe *pipe;
  tbuf *bind_buf[MC_MAX_BINDINGS];
  uint64_t bind_off[MC_MAX_BINDINGS];
  unsigned char *bind_bytes[MC_MAX_BINDINGS];
  uint32_t bind_len[MC_MAX_BINDINGS];
  int barrier_pending;
  int committed, completed, fail;
  mc_completion_fn done;
  void *arg;
  struct tcmds *next_pending;
} tcmds;

static tcmds *g_pending_head, *g_pending_tail;

/* ------------------------------------------------------------------------------ kernels */
static void *arg(const tcall *c, int i) {
  if (c->bufs[i]) return (char *)c->bufs[i]->mem + c->offsets[i];
  return c->bytes[i];
}

static int k_fill(const tcall *c, uint64_t nt, char *err, size_t len) {
  (void)err, (void)len;
  float *out = arg(c, 0);
  const struct { float v; uint32_t n; } *a = arg(c, 1);
  for (uint64_t i = 0; i < nt && i < a->n; ++i) out[i] = a->v;
  return 0;
}
static int k_fill_const(const tcall *c, uint64_t nt, char *err, size_t len) {
  (void)err, (void)len;
  float *out = arg(c, 0);
  const uint32_t *n = arg(c, 1);
  for (uint64_t i = 0; i < nt && i < *n; ++i) out[i] = c->p->constant0;
  return 0;
}
static int k_add(const tcall *c, uint64_t nt, char *err, size_t len) {
  (void)err, (void)len;
  const float *a = arg(c, 0), *b = arg(c, 1);
  float *out = arg(c, 2);
  const uint32_t *n = arg(c, 3);
  for (uint64_t i = 0; i < nt && i < *n; ++i) out[i] = a[i] + b[i];
  return 0;
}
static int k_scale(const tcall *c, uint64_t nt, char *err, size_t len) {
  (void)err, (void)len;
  const float *x = arg(c, 0);
  float *out = arg(c, 1);
  const struct { float s; uint32_t n; } *a = arg(c, 2);
  for (uint64_t i = 0; i < nt && i < a->n; ++i) out[i] = x[i] * a->s;
  return 0;
}
static int k_inc(const tcall *c, uint64_t nt, char *err, size_t len) {
  (void)err, (void)len;
  float *x = arg(c, 0);
  const uint32_t *n = arg(c, 1);
  for (uint64_t i = 0; i < nt && i < *n; ++i) x[i] += 1.0f;
  return 0;
}
static int k_fault(const tcall *c, uint64_t nt, char *err, size_t len) {
  (void)c, (void)nt;
  snprintf(err, len, "fault: simulated kernel fault");
  return 1;
}

static const tkernel g_kernels[] = {
    {"fill_f32", k_fill}, {"fill_const_f32", k_fill_const}, {"add_f32", k_add},
    {"scale_f32", k_scale}, {"inc_f32", k_inc},           {"fault", k_fault},
};

static const tkernel *find_kernel(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof g_kernels / sizeof *g_kernels; ++i)
    if (strlen(g_kernels[i].name) == len && strncmp(g_kernels[i].name, name, len) == 0) return &g_kernels[i];
  return NULL;
}

/* ------------------------------------------------------------------------------- device */
static mc_status t_open(void **ctx, mc_device_info *info) {
  static int token;
  *ctx = &token;
  snprintf(info->name, sizeof info->name, "metalcandle test driver (CPU)");
  info->max_working_set = 0;
  info->max_threads_per_threadgroup = 1024;
  info->unified_memory = 1;
  COUNT(live_devices, 1);
  return MC_OK;
}
static void t_close(void *ctx) {
  (void)ctx;
  COUNT(live_devices, -1);
}

static mc_status t_buffer_new(void *ctx, size_t n, void **buffer, void **contents) {
  (void)ctx;
  if (__atomic_load_n(&g_fail_allocations, __ATOMIC_RELAXED) > 0 &&
      __atomic_sub_fetch(&g_fail_allocations, 1, __ATOMIC_RELAXED) >= 0)
    return mc_set_error(MC_OUT_OF_MEMORY, "test driver: injected allocation failure (%zu bytes)", n);
  tbuf *b = calloc(1, sizeof *b);
  void *mem = b ? calloc(1, n) : NULL;
  if (!mem) {
    free(b);
    return mc_set_error(MC_OUT_OF_MEMORY, "test driver: calloc(%zu) failed", n);
  }
  b->mem = mem;
  b->len = n;
  *buffer = b;
  *contents = mem;
  COUNT(live_buffers, 1);
  COUNT(buffer_allocations, 1);
  return MC_OK;
}

static void destroy_buffer(tbuf *b) {
  free(b->mem);
  free(b);
  COUNT(live_buffers, -1);
}

static void t_buffer_free(void *ctx, void *buffer) {
  (void)ctx;
  tbuf *b = buffer;
  pthread_mutex_lock(&g_lock);
  if (b->freed) violation_locked("buffer freed twice");
  b->freed = 1;
  int in_use = b->pending > 0;
  if (in_use) violation_locked("buffer freed while a command buffer still uses it");
  pthread_mutex_unlock(&g_lock);
  if (!in_use) destroy_buffer(b);
}

/* -------------------------------------------------------------------------------- code */
static mc_status t_library_new(void *ctx, const char *src, const char *label, void **library) {
  (void)ctx;
  tlib *lib = calloc(1, sizeof *lib);
  if (!lib) return mc_set_error(MC_OUT_OF_MEMORY, "test driver: out of memory");
  int line = 1;
  for (const char *p = src; *p; ++p) {
    if (*p == '\n') ++line;
    int at_line_start = p == src || p[-1] == '\n';
    if (at_line_start && strncmp(p, "#error", 6) == 0) {
      const char *e = strchr(p, '\n');
      int n = (int)(e ? e - p : (long)strlen(p));
      free(lib);
      return mc_set_error(MC_COMPILE_ERROR, "newLibraryWithSource: %s:%d: error: %.*s", label, line, n - 7, p + 7);
    }
    if (strncmp(p, "kernel void ", 12) == 0 && (p == src || p[-1] == ' ' || p[-1] == '\n')) {
      const char *name = p + 12;
      size_t len = strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_");
      const tkernel *k = find_kernel(name, len);
      if (!k || lib->n == 32) {
        free(lib);
        return mc_set_error(MC_COMPILE_ERROR, "newLibraryWithSource: %s:%d: error: no test kernel '%.*s'", label,
                            line, (int)len, name);
      }
      lib->kernels[lib->n++] = k;
    }
  }
  *library = lib;
  COUNT(live_libraries, 1);
  return MC_OK;
}

static void t_library_free(void *ctx, void *library) {
  (void)ctx;
  free(library);
  COUNT(live_libraries, -1);
}

static mc_status t_pipeline_new(void *ctx, void *library, const char *function, const mc_constant *constants,
                                uint32_t n, void **pipeline, uint32_t *max_threads) {
  (void)ctx;
  const tlib *lib = library;
  const tkernel *k = NULL;
  for (int i = 0; i < lib->n && !k; ++i)
    if (strcmp(lib->kernels[i]->name, function) == 0) k = lib->kernels[i];
  if (!k) return MC_NOT_FOUND;
  tpipe *p = calloc(1, sizeof *p);
  if (!p) return mc_set_error(MC_OUT_OF_MEMORY, "test driver: out of memory");
  p->k = k;
  for (uint32_t i = 0; i < n; ++i)
    if (!constants[i].name && constants[i].index == 0 && constants[i].type == MC_CONST_FLOAT32)
      p->constant0 = constants[i].value.f32;
  *pipeline = p;
  *max_threads = 1024;
  COUNT(live_pipelines, 1);
  COUNT(pipeline_builds, 1);
  return MC_OK;
}

static void t_pipeline_free(void *ctx, void *pipeline) {
  (void)ctx;
  free(pipeline);
  COUNT(live_pipelines, -1);
}

/* ---------------------------------------------------------------------------- commands */
static mc_status t_commands_new(void *ctx, void **commands) {
  (void)ctx;
  tcmds *c = calloc(1, sizeof *c);
  if (!c) return mc_set_error(MC_OUT_OF_MEMORY, "test driver: out of memory");
  *commands = c;
  COUNT(live_commands, 1);
  return MC_OK;
}

static void t_set_pipeline(void *commands, void *pipeline) {
  ((tcmds *)commands)->pipe = pipeline;
  trace('P');
}

static void t_set_buffer(void *commands, void *buffer, uint64_t offset, uint32_t index) {
  tcmds *c = commands;
  free(c->bind_bytes[index]);
  c->bind_bytes[index] = NULL;
  c->bind_buf[index] = buffer;
  c->bind_off[index] = offset;
}

static void t_set_bytes(void *commands, const void *bytes, uint32_t length, uint32_t index) {
  tcmds *c = commands;
  free(c->bind_bytes[index]);
  c->bind_buf[index] = NULL;
  c->bind_bytes[index] = malloc(length);
  if (c->bind_bytes[index]) memcpy(c->bind_bytes[index], bytes, length);
  c->bind_len[index] = length;
}

static void t_barrier(void *commands) {
  ((tcmds *)commands)->barrier_pending = 1;
  COUNT(barriers, 1);
  trace('B');
}

static void t_dispatch(void *commands, const uint32_t grid[3], const uint32_t tg[3], mc_grid_mode mode) {
  tcmds *c = commands;
  if (c->committed) {
    pthread_mutex_lock(&g_lock);
    violation_locked("dispatch after commit");
    pthread_mutex_unlock(&g_lock);
    return;
  }
  if (c->n == c->cap) {
    int cap = c->cap ? c->cap * 2 : 16;
    tcall *grown = realloc(c->calls, (size_t)cap * sizeof *grown);
    if (!grown) return;
    c->calls = grown;
    c->cap = cap;
  }
  tcall *k = &c->calls[c->n++];
  memset(k, 0, sizeof *k);
  k->p = c->pipe;
  k->barrier_before = c->barrier_pending;
  c->barrier_pending = 0;
  k->n_threads = (uint64_t)grid[0] * grid[1] * grid[2];
  if (mode == MC_GRID_THREADGROUPS) k->n_threads *= (uint64_t)tg[0] * tg[1] * tg[2];
  pthread_mutex_lock(&g_lock);
  for (uint32_t i = 0; i < MC_MAX_BINDINGS; ++i) {
    if (c->bind_buf[i]) {
      k->bufs[i] = c->bind_buf[i];
      k->offsets[i] = c->bind_off[i];
      k->bufs[i]->pending += 1;
    } else if (c->bind_bytes[i]) {
      k->bytes[i] = malloc(c->bind_len[i]);
      if (k->bytes[i]) memcpy(k->bytes[i], c->bind_bytes[i], c->bind_len[i]);
      k->lengths[i] = c->bind_len[i];
    }
  }
  pthread_mutex_unlock(&g_lock);
  trace('D');
}

/* Drops what a recorded call holds; a buffer its owner freed meanwhile goes now. */
static void release_call_locked(tcall *k) {
  for (uint32_t i = 0; i < MC_MAX_BINDINGS; ++i) {
    free(k->bytes[i]);
    k->bytes[i] = NULL;
    tbuf *b = k->bufs[i];
    k->bufs[i] = NULL;
    if (b && --b->pending == 0 && b->freed) destroy_buffer(b);
  }
}

/* Runs a committed command buffer: each barrier-delimited segment in reverse order. */
static void run_locked(tcmds *c) {
  char err[256] = "";
  int failed = c->fail;
  if (failed) snprintf(err, sizeof err, "test driver: injected command buffer failure");
  for (int start = 0; start < c->n && !failed;) {
    int end = start + 1;
    while (end < c->n && !c->calls[end].barrier_before) ++end;
    for (int i = end - 1; i >= start && !failed; --i) {
      tcall *k = &c->calls[i];
      for (uint32_t j = 0; j < MC_MAX_BINDINGS; ++j)
        if (k->bufs[j] && k->bufs[j]->freed) violation_locked("kernel ran on a buffer its owner had freed");
      failed = k->p->k->fn(k, k->n_threads, err, sizeof err);
      COUNT(dispatches_run, 1);
    }
    start = end;
  }
  for (int i = 0; i < c->n; ++i) release_call_locked(&c->calls[i]);
  c->completed = 1;
  c->done(c->arg, failed, err);
}

static void run_pending_until_locked(tcmds *last) {
  while (g_pending_head) {
    tcmds *c = g_pending_head;
    g_pending_head = c->next_pending;
    if (!g_pending_head) g_pending_tail = NULL;
    run_locked(c);
    if (c == last) break;
  }
}

static mc_status t_commit(void *commands, mc_completion_fn done, void *arg) {
  tcmds *c = commands;
  pthread_mutex_lock(&g_lock);
  if (c->committed) {
    violation_locked("command buffer committed twice");
    pthread_mutex_unlock(&g_lock);
    return mc_set_error(MC_INTERNAL, "test driver: command buffer committed twice");
  }
  c->committed = 1;
  c->done = done;
  c->arg = arg;
  if (g_fail_commands > 0) {
    g_fail_commands -= 1;
    c->fail = 1;
  }
  if (g_pending_tail) g_pending_tail->next_pending = c;
  else g_pending_head = c;
  g_pending_tail = c;
  g_stats.commits += 1;
  if (g_trace_len + 1 < sizeof g_trace) g_trace[g_trace_len++] = 'C', g_trace[g_trace_len] = '\0';
  if (!g_async) run_pending_until_locked(c);
  pthread_mutex_unlock(&g_lock);
  return MC_OK;
}

static void t_wait(void *commands) {
  tcmds *c = commands;
  pthread_mutex_lock(&g_lock);
  g_stats.waits += 1;
  if (!c->committed) violation_locked("wait before commit (would hang)");
  else if (!c->completed) run_pending_until_locked(c);
  pthread_mutex_unlock(&g_lock);
}

static void t_commands_free(void *commands) {
  tcmds *c = commands;
  pthread_mutex_lock(&g_lock);
  if (c->committed && !c->completed) violation_locked("command buffer freed before it completed");
  for (int i = 0; i < c->n; ++i) release_call_locked(&c->calls[i]); /* discarded: never ran */
  pthread_mutex_unlock(&g_lock);
  for (uint32_t i = 0; i < MC_MAX_BINDINGS; ++i) free(c->bind_bytes[i]);
  free(c->calls);
  free(c);
  COUNT(live_commands, -1);
}

static const mc_driver g_test_driver = {
    "test", MC_DRIVER_ABI_VERSION, t_open, t_close, t_buffer_new, t_buffer_free,
    t_library_new, t_library_free, t_pipeline_new, t_pipeline_free,
    t_commands_new, t_set_pipeline, t_set_buffer, t_set_bytes, t_dispatch, t_barrier,
    t_commit, t_wait, t_commands_free,
};

const mc_driver *mc_test_driver(void) { return &g_test_driver; }

/* ------------------------------------------------------------------------------- hooks */
void mc_test_driver_get_stats(mc_test_driver_stats *out) {
  pthread_mutex_lock(&g_lock);
  *out = g_stats;
  pthread_mutex_unlock(&g_lock);
}

void mc_test_driver_reset_stats(void) {
  pthread_mutex_lock(&g_lock);
  g_stats.buffer_allocations = g_stats.pipeline_builds = g_stats.commits = g_stats.barriers = 0;
  g_stats.dispatches_run = g_stats.waits = g_stats.violations = 0;
  g_stats.first_violation[0] = '\0';
  g_trace_len = 0;
  g_trace[0] = '\0';
  g_fail_allocations = g_fail_commands = 0;
  pthread_mutex_unlock(&g_lock);
}

void mc_test_driver_fail_allocations(int n) { __atomic_store_n(&g_fail_allocations, n, __ATOMIC_RELAXED); }

void mc_test_driver_fail_commands(int n) {
  pthread_mutex_lock(&g_lock);
  g_fail_commands = n;
  pthread_mutex_unlock(&g_lock);
}

void mc_test_driver_set_async(int on) {
  pthread_mutex_lock(&g_lock);
  g_async = on;
  pthread_mutex_unlock(&g_lock);
}

void mc_test_driver_drain(void) {
  pthread_mutex_lock(&g_lock);
  run_pending_until_locked(NULL);
  pthread_mutex_unlock(&g_lock);
}

const char *mc_test_driver_trace(void) { return g_trace; }

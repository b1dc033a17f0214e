/* mm_support.c -- counters, fault injection, the live-buffer registry, the MSL compiler hook and
 * the simulator's module description, for the mock Metal framework. Plain C. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mm_internal.h"

long mm_live, mm_validation, mm_commits, mm_kernel_runs, mm_pipeline_builds, mm_compiler_runs, mm_barriers;
int mm_fail_allocations, mm_fail_command_buffers, mm_fail_compiles;
unsigned mm_workers;
static char g_first_validation[512];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* registry, compile cache, settings */

/* ------------------------------------------------------------------------- validation */
void mm_validation_failed(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&g_lock);
  if (mm_validation++ == 0) memcpy(g_first_validation, msg, sizeof msg);
  pthread_mutex_unlock(&g_lock);
  if (getenv("MOCKMETAL_ABORT")) abort(); /* like MTL_DEBUG_LAYER=1, for a debugger */
}

int mm_take_injection(int *counter) {
  int n = __atomic_load_n(counter, __ATOMIC_RELAXED);
  while (n > 0)
    if (__atomic_compare_exchange_n(counter, &n, n - 1, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return 1;
  return 0;
}

long mockmetal_live_objects(void) { return __atomic_load_n(&mm_live, __ATOMIC_RELAXED); }
long mockmetal_validation_errors(void) { return mm_validation; }
const char *mockmetal_first_validation_error(void) { return g_first_validation; }
long mockmetal_commits(void) { return mm_commits; }
long mockmetal_kernel_runs(void) { return mm_kernel_runs; }
long mockmetal_pipeline_builds(void) { return mm_pipeline_builds; }
long mockmetal_compiler_runs(void) { return mm_compiler_runs; }
long mockmetal_barriers(void) { return mm_barriers; }
void mockmetal_fail_allocations(int n) { __atomic_store_n(&mm_fail_allocations, n, __ATOMIC_RELAXED); }
void mockmetal_fail_command_buffers(int n) { __atomic_store_n(&mm_fail_command_buffers, n, __ATOMIC_RELAXED); }
void mockmetal_fail_compiles(int n) { __atomic_store_n(&mm_fail_compiles, n, __ATOMIC_RELAXED); }
void mockmetal_set_workers(unsigned n) { mm_workers = n; }

void mockmetal_reset_counters(void) {
  pthread_mutex_lock(&g_lock);
  mm_validation = mm_commits = mm_kernel_runs = mm_pipeline_builds = mm_compiler_runs = mm_barriers = 0;
  mm_fail_allocations = mm_fail_command_buffers = mm_fail_compiles = 0;
  g_first_validation[0] = '\0';
  pthread_mutex_unlock(&g_lock);
}

/* ---------------------------------------------------------------------- buffer registry */
static uint64_t *g_live_serials; /* open addressing, 0 = empty, ~0 = deleted */
static size_t g_registry_cap, g_registry_used;

static void registry_put_locked(uint64_t s) {
  size_t mask = g_registry_cap - 1, i = (size_t)(s * 0x9E3779B97F4A7C15ull) & mask;
  while (g_live_serials[i] != 0 && g_live_serials[i] != ~0ull) i = (i + 1) & mask;
  if (g_live_serials[i] == 0) g_registry_used += 1;
  g_live_serials[i] = s;
}

void mm_registry_add(uint64_t serial) {
  pthread_mutex_lock(&g_lock);
  if ((g_registry_used + 1) * 2 > g_registry_cap) { /* rehash without tombstones */
    uint64_t *old = g_live_serials;
    size_t old_cap = g_registry_cap;
    g_registry_cap = old_cap ? old_cap * 2 : 1024;
    g_live_serials = calloc(g_registry_cap, sizeof *g_live_serials);
    g_registry_used = 0;
    for (size_t i = 0; i < old_cap; ++i)
      if (old[i] != 0 && old[i] != ~0ull) registry_put_locked(old[i]);
    free(old);
  }
  registry_put_locked(serial);
  pthread_mutex_unlock(&g_lock);
}

static size_t registry_find_locked(uint64_t s) {
  if (!g_registry_cap) return (size_t)-1;
  size_t mask = g_registry_cap - 1, i = (size_t)(s * 0x9E3779B97F4A7C15ull) & mask;
  for (; g_live_serials[i] != 0; i = (i + 1) & mask)
    if (g_live_serials[i] == s) return i;
  return (size_t)-1;
}

void mm_registry_remove(uint64_t serial) {
  pthread_mutex_lock(&g_lock);
  size_t i = registry_find_locked(serial);
  if (i != (size_t)-1) g_live_serials[i] = ~0ull;
  pthread_mutex_unlock(&g_lock);
}

int mm_registry_contains(uint64_t serial) {
  pthread_mutex_lock(&g_lock);
  int found = registry_find_locked(serial) != (size_t)-1;
  pthread_mutex_unlock(&g_lock);
  return found;
}

/* ---------------------------------------------------------------------------- compiler */
static mockmetal_compiler_fn g_callback;
static char g_command[1024];
typedef struct compiled {
  uint64_t hash;
  size_t length;
  char path[512];
} compiled;
static compiled g_compiled[256];
static int g_n_compiled;

void mockmetal_set_compiler(mockmetal_compiler_fn fn) { g_callback = fn; }

void mockmetal_set_compiler_command(const char *command) {
  pthread_mutex_lock(&g_lock);
  snprintf(g_command, sizeof g_command, "%s", command ? command : "");
  g_n_compiled = 0; /* another compiler: forget what the previous one built */
  pthread_mutex_unlock(&g_lock);
}

const char *mockmetal_compiler_command(void) {
  if (g_command[0]) return g_command;
  const char *env = getenv("MOCKMETAL_COMPILER");
  if (env && *env) return env;
#ifdef MOCKMETAL_DEFAULT_COMPILER
  return MOCKMETAL_DEFAULT_COMPILER;
#else
  return "";
#endif
}

static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

/* Runs `command compile SRC -o OUT`; 0 on success, else the output is in `error`. */
static int run_compiler(const char *command, const char *source, uint64_t hash, char *out_path, size_t out_len,
                        char *error, size_t error_len) {
  const char *tmp = getenv("TMPDIR");
  char dir[256], src_path[512];
  snprintf(dir, sizeof dir, "%s/mockmetal-%ld", tmp && *tmp ? tmp : "/tmp", (long)getuid());
  mkdir(dir, 0700);
  snprintf(src_path, sizeof src_path, "%s/%016llx.%ld.metal", dir, (unsigned long long)hash, (long)getpid());
  snprintf(out_path, out_len, "%s/%016llx.so", dir, (unsigned long long)hash);
  FILE *f = fopen(src_path, "w");
  if (!f || fputs(source, f) < 0 || fclose(f) != 0) {
    snprintf(error, error_len, "mockmetal: cannot write %s", src_path);
    return -1;
  }
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s compile '%s' -o '%s' 2>&1", command, src_path, out_path);
  FILE *p = popen(cmd, "r");
  if (!p) {
    snprintf(error, error_len, "mockmetal: cannot run %s", command);
    return -1;
  }
  size_t n = fread(error, 1, error_len - 1, p);
  error[n] = '\0';
  int status = pclose(p);
  unlink(src_path);
  /* Metal names a source without #line directives "program_source" in its diagnostics. */
  for (char *at; (at = strstr(error, src_path));) {
    size_t len = strlen(src_path), repl = strlen("program_source");
    memcpy(at, "program_source", repl);
    memmove(at + repl, at + len, strlen(at + len) + 1);
  }
  return status == 0 ? 0 : -1;
}

void *mm_compile(const char *source, char *error, size_t error_len) {
  error[0] = '\0';
  if (mm_take_injection(&mm_fail_compiles)) {
    snprintf(error, error_len, "program_source:1:1: error: injected compile failure (mockmetal_fail_compiles)");
    return NULL;
  }
  size_t length = strlen(source);
  uint64_t hash = fnv1a(source, length);
  char path[512] = "";
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < g_n_compiled; ++i)
    if (g_compiled[i].hash == hash && g_compiled[i].length == length) memcpy(path, g_compiled[i].path, sizeof path);
  pthread_mutex_unlock(&g_lock);
  if (!path[0]) {
    if (g_callback) {
      const char *built = g_callback(source, error, error_len);
      if (!built) return NULL;
      snprintf(path, sizeof path, "%s", built);
    } else {
      const char *command = mockmetal_compiler_command();
      if (!command[0]) {
        snprintf(error, error_len, "mockmetal: no MSL compiler (set MOCKMETAL_COMPILER or mockmetal_set_compiler)");
        return NULL;
      }
      if (run_compiler(command, source, hash, path, sizeof path, error, error_len) != 0) return NULL;
    }
    MM_COUNT(mm_compiler_runs, 1);
    pthread_mutex_lock(&g_lock);
    if (g_n_compiled < (int)(sizeof g_compiled / sizeof *g_compiled)) {
      compiled *c = &g_compiled[g_n_compiled++];
      c->hash = hash;
      c->length = length;
      memcpy(c->path, path, sizeof c->path);
    }
    pthread_mutex_unlock(&g_lock);
  }
  void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!so) {
    snprintf(error, error_len, "mockmetal: dlopen: %s", dlerror());
    return NULL;
  }
  mslsim_abi_version_fn version = (mslsim_abi_version_fn)dlsym(so, "mslsim_abi_version");
  if (!version || version() != MSLSIM_ABI_VERSION) {
    snprintf(error, error_len, "mockmetal: %s is not an mslsim library of ABI %u", path, MSLSIM_ABI_VERSION);
    dlclose(so);
    return NULL;
  }
  return so;
}

/* ----------------------------------------------------------------- module description */
static const char *info_of(void *so) {
  mslsim_module_info_fn info = (mslsim_module_info_fn)dlsym(so, "mslsim_module_info");
  return info ? info() : "";
}

/* Copies the JSON string starting at p (just past its opening quote) into out. */
static const char *read_string(const char *p, char *out, size_t len) {
  size_t n = 0;
  while (*p && *p != '"') {
    if (n + 1 < len) out[n++] = *p;
    ++p;
  }
  out[n] = '\0';
  return *p ? p + 1 : p;
}

int mm_module_kernels(void *so, char names[][128], int max) {
  int n = 0;
  const char *p = info_of(so);
  /* kernel objects are the only ones whose "name" is followed by "function" */
  while (n < max && (p = strstr(p, "{\"name\":\""))) {
    char name[128];
    const char *after = read_string(p + 9, name, sizeof name);
    if (strncmp(after, ",\"function\":", 12) == 0) snprintf(names[n++], 128, "%s", name);
    p = after;
  }
  return n;
}

int mm_module_constants(void *so, mm_constant_decl *out, int max) {
  const char *p = strstr(info_of(so), "\"function_constants\":[");
  int n = 0;
  if (!p) return 0;
  p += 22;
  while (n < max && *p == '{') {
    mm_constant_decl *c = &out[n];
    const char *q = strstr(p, "\"name\":\"");
    const char *end = strchr(p, '}');
    if (!q || !end || q > end) break;
    read_string(q + 8, c->name, sizeof c->name);
    q = strstr(p, "\"index\":");
    c->index = q && q < end ? (uint32_t)strtoul(q + 8, NULL, 10) : 0;
    q = strstr(p, "\"type\":\"");
    if (q && q < end) read_string(q + 8, c->type, sizeof c->type);
    ++n;
    p = end + 1;
    if (*p == ',') ++p;
  }
  return n;
}

typedef struct msl_type {
  const char *name;
  unsigned long mtl; /* MTLDataType */
  size_t width;
} msl_type;

static const msl_type g_types[] = {
    {"bool", 53, 1},     {"char", 45, 1},     {"int8_t", 45, 1},   {"uchar", 49, 1},    {"uint8_t", 49, 1},
    {"short", 37, 2},    {"int16_t", 37, 2},  {"ushort", 41, 2},   {"uint16_t", 41, 2}, {"half", 16, 2},
    {"int", 29, 4},      {"int32_t", 29, 4},  {"uint", 33, 4},     {"uint32_t", 33, 4}, {"float", 3, 4},
    {"long", 81, 8},     {"int64_t", 81, 8},  {"ulong", 85, 8},    {"uint64_t", 85, 8},
};

static const msl_type *find_type(const char *name) {
  for (size_t i = 0; i < sizeof g_types / sizeof *g_types; ++i)
    if (strcmp(g_types[i].name, name) == 0) return &g_types[i];
  return NULL;
}

size_t mm_type_width(const char *type_name) {
  const msl_type *t = find_type(type_name);
  return t ? t->width : 0;
}

int mm_type_matches(const char *type_name, unsigned long mtl_data_type) {
  const msl_type *t = find_type(type_name);
  return t && t->mtl == mtl_data_type;
}

/* ------------------------------------------------------------------------------ blocks */
/* GNUstep Base 1.28's _Block_copy tests a flag of the 2008 block ABI (1 << 29) that current
 * clang never sets, so it returns the *stack* block uncopied. Metal copies completion handlers;
 * the mock does it itself with the current ABI (clang's Block_layout). */
typedef struct mm_block_descriptor {
  unsigned long reserved, size;
  void (*copy)(void *dst, const void *src); /* present with BLOCK_HAS_COPY_DISPOSE */
  void (*dispose)(const void *);
} mm_block_descriptor;

typedef struct mm_block {
  void *isa;
  int flags, reserved;
  void (*invoke)(void *, ...);
  mm_block_descriptor *descriptor;
} mm_block;

enum { MM_BLOCK_HAS_COPY_DISPOSE = 1 << 25, MM_BLOCK_IS_GLOBAL = 1 << 28 };

void *mm_block_copy(const void *block) {
  const mm_block *src = block;
  if (src->flags & MM_BLOCK_IS_GLOBAL) return (void *)block;
  mm_block *dst = malloc(src->descriptor->size);
  if (!dst) return NULL;
  memcpy(dst, src, src->descriptor->size);
  if (src->flags & MM_BLOCK_HAS_COPY_DISPOSE) src->descriptor->copy(dst, src); /* retains captures */
  return dst;
}

void mm_block_release(void *block) {
  mm_block *b = block;
  if (!b || (b->flags & MM_BLOCK_IS_GLOBAL)) return;
  if (b->flags & MM_BLOCK_HAS_COPY_DISPOSE) b->descriptor->dispose(b);
  free(b);
}

/* mc_pipeline.c -- libraries and the pipeline cache.
 *
 * Key: (function name, dtype, function-constant values), as bytes. Lookup under pipe_lock; on a
 * miss the driver compiles with no lock held, then the table is checked again under the lock
 * before inserting (another thread may have won the race: its pipeline is kept, ours dropped).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_internal.h"

static uint64_t fnv1a(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

static size_t constant_width(uint32_t type) {
  switch (type) {
    case MC_CONST_BOOL: return 1;
    case MC_CONST_FLOAT16: return 2;
    case MC_CONST_INT32:
    case MC_CONST_UINT32:
    case MC_CONST_FLOAT32: return 4;
    case MC_CONST_INT64:
    case MC_CONST_UINT64: return 8;
  }
  return 0;
}

/* Constants in a canonical order (by name, then index) so {a, b} and {b, a} share a pipeline. */
static int compare_constants(const void *pa, const void *pb) {
  const mc_constant *a = pa, *b = pb;
  if (a->name || b->name) {
    if (!a->name) return -1;
    if (!b->name) return 1;
    return strcmp(a->name, b->name);
  }
  return (a->index > b->index) - (a->index < b->index);
}

static void put(unsigned char **w, const void *src, size_t n) {
  memcpy(*w, src, n);
  *w += n;
}

/* Serialises the key into `out` (capacity `cap`); returns its length, or 0 if it does not fit. */
static size_t build_key(const char *function, const mc_constant *sorted, uint32_t n, unsigned char *out, size_t cap) {
  size_t need = strlen(function) + 1;
  for (uint32_t i = 0; i < n; ++i) need += 4 + (sorted[i].name ? strlen(sorted[i].name) : 0) + 4 + 4 + 8;
  if (need > cap) return 0;
  unsigned char *w = out;
  put(&w, function, strlen(function) + 1);
  for (uint32_t i = 0; i < n; ++i) {
    const mc_constant *c = &sorted[i];
    uint32_t name_len = c->name ? (uint32_t)strlen(c->name) : 0;
    unsigned char value[8] = {0};
    memcpy(value, &c->value, constant_width(c->type));
    put(&w, &name_len, 4);
    put(&w, c->name ? c->name : "", name_len);
    put(&w, &c->index, 4);
    put(&w, &c->type, 4);
    put(&w, value, 8);
  }
  return (size_t)(w - out);
}

static mc_pipeline *find_locked(mc_device *dev, uint64_t hash, const unsigned char *key, size_t len) {
  if (!dev->table_size) return NULL;
  for (mc_pipeline *p = dev->table[hash & (dev->table_size - 1)]; p; p = p->next)
    if (p->hash == hash && p->key_len == len && memcmp(p->key, key, len) == 0) return p;
  return NULL;
}

static int grow_locked(mc_device *dev) {
  size_t size = dev->table_size ? dev->table_size * 2 : 64;
  mc_pipeline **table = calloc(size, sizeof *table);
  if (!table) return -1;
  for (size_t i = 0; i < dev->table_size; ++i) {
    for (mc_pipeline *p = dev->table[i], *next; p; p = next) {
      next = p->next;
      p->next = table[p->hash & (size - 1)];
      table[p->hash & (size - 1)] = p;
    }
  }
  free(dev->table);
  dev->table = table;
  dev->table_size = size;
  return 0;
}

mc_status mc_device_load_library(mc_device *dev, const char *source, const char *label) {
  if (!dev || !source) return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_load_library: NULL argument");
  mc_library_node *node = calloc(1, sizeof *node);
  if (!node) return mc_set_error(MC_OUT_OF_MEMORY, "mc_device_load_library: out of host memory");
  mc_status st = dev->drv->library_new(dev->ctx, source, label ? label : "", &node->handle); /* no lock held */
  if (st != MC_OK) {
    free(node);
    return st;
  }
  pthread_mutex_lock(&dev->pipe_lock);
  node->next = dev->libraries;
  dev->libraries = node;
  pthread_mutex_unlock(&dev->pipe_lock);
  return MC_OK;
}

static mc_status compile(mc_device *dev, const char *function, const mc_constant *constants, uint32_t n,
                         void **handle, uint32_t *max_threads) {
  pthread_mutex_lock(&dev->pipe_lock);
  mc_library_node *lib = dev->libraries; /* nodes live until mc_device_free: safe to walk unlocked */
  pthread_mutex_unlock(&dev->pipe_lock);
  for (; lib; lib = lib->next) {
    mc_status st = dev->drv->pipeline_new(dev->ctx, lib->handle, function, constants, n, handle, max_threads);
    if (st != MC_NOT_FOUND) return st;
  }
  return mc_set_error(MC_NOT_FOUND, "mc_device_pipeline: no loaded library has a kernel named '%s'", function);
}

mc_status mc_device_pipeline(mc_device *dev, const char *name, const char *dtype, const mc_constant *constants,
                             uint32_t n_constants, mc_pipeline **out) {
  if (!out) return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_pipeline: out is NULL");
  *out = NULL;
  if (!dev || !name) return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_pipeline: NULL argument");
  if (n_constants > MC_MAX_FUNCTION_CONSTANTS || (n_constants && !constants))
    return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_pipeline: %u function constants (at most %u)",
                        n_constants, MC_MAX_FUNCTION_CONSTANTS);
  char function[MC_MAX_NAME];
  int len = dtype && *dtype ? snprintf(function, sizeof function, "%s_%s", name, dtype)
                            : snprintf(function, sizeof function, "%s", name);
  if (len <= 0 || (size_t)len >= sizeof function)
    return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_pipeline: kernel name '%s' too long", name);
  mc_constant sorted[MC_MAX_FUNCTION_CONSTANTS];
  for (uint32_t i = 0; i < n_constants; ++i) {
    sorted[i] = constants[i];
    if (!constant_width(sorted[i].type))
      return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_pipeline: %s: constant %u has unknown type %u", function,
                          i, sorted[i].type);
    if (sorted[i].name && strlen(sorted[i].name) >= MC_MAX_NAME)
      return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_pipeline: %s: constant name too long", function);
  }
  qsort(sorted, n_constants, sizeof *sorted, compare_constants);

  unsigned char stack_key[512];
  unsigned char *key = stack_key;
  size_t key_len = build_key(function, sorted, n_constants, stack_key, sizeof stack_key);
  if (!key_len) {
    size_t cap = MC_MAX_NAME + (size_t)n_constants * (MC_MAX_NAME + 20);
    key = malloc(cap);
    if (!key) return mc_set_error(MC_OUT_OF_MEMORY, "mc_device_pipeline: out of host memory");
    key_len = build_key(function, sorted, n_constants, key, cap);
  }
  uint64_t hash = fnv1a(key, key_len);

  pthread_mutex_lock(&dev->pipe_lock);
  mc_pipeline *p = find_locked(dev, hash, key, key_len);
  if (p) dev->stats.pipeline_hits += 1;
  pthread_mutex_unlock(&dev->pipe_lock);
  mc_status st = MC_OK;
  if (!p) {
    void *handle = NULL;
    uint32_t max_threads = 0;
    st = compile(dev, function, sorted, n_constants, &handle, &max_threads);
    if (st == MC_OK) {
      mc_pipeline *fresh = calloc(1, sizeof *fresh);
      unsigned char *key_copy = fresh ? malloc(key_len) : NULL;
      pthread_mutex_lock(&dev->pipe_lock);
      dev->stats.pipeline_compiles += 1;
      p = find_locked(dev, hash, key, key_len); /* re-check: another thread may have won */
      if (!p && key_copy && (dev->n_pipelines * 4 < dev->table_size * 3 || grow_locked(dev) == 0)) {
        memcpy(key_copy, key, key_len);
        fresh->key = key_copy;
        fresh->key_len = key_len;
        fresh->hash = hash;
        fresh->handle = handle;
        fresh->max_threads = max_threads;
        snprintf(fresh->function, sizeof fresh->function, "%s", function);
        fresh->next = dev->table[hash & (dev->table_size - 1)];
        dev->table[hash & (dev->table_size - 1)] = fresh;
        dev->n_pipelines += 1;
        p = fresh;
        fresh = NULL;
        key_copy = NULL;
        handle = NULL;
      }
      pthread_mutex_unlock(&dev->pipe_lock);
      if (handle) dev->drv->pipeline_free(dev->ctx, handle);
      free(key_copy);
      free(fresh);
      if (!p) st = mc_set_error(MC_OUT_OF_MEMORY, "mc_device_pipeline: out of host memory");
    }
  }
  if (key != stack_key) free(key);
  *out = p;
  return st;
}

uint32_t mc_pipeline_max_threads(const mc_pipeline *p) { return p ? p->max_threads : 0; }
const char *mc_pipeline_function(const mc_pipeline *p) { return p ? p->function : ""; }

void mc_pipelines_free(mc_device *dev) {
  for (size_t i = 0; i < dev->table_size; ++i) {
    for (mc_pipeline *p = dev->table[i], *next; p; p = next) {
      next = p->next;
      dev->drv->pipeline_free(dev->ctx, p->handle);
      free(p->key);
      free(p);
    }
  }
  free(dev->table);
  dev->table = NULL;
  dev->table_size = dev->n_pipelines = 0;
  for (mc_library_node *l = dev->libraries, *next; l; l = next) {
    next = l->next;
    dev->drv->library_free(dev->ctx, l->handle);
    free(l);
  }
  dev->libraries = NULL;
}

/* mc_buffer.c -- shared buffers and the buffer cache.
 *
 * Sizes are rounded (powers of two from 256 B below a 16 KiB page, whole pages above) so freed
 * buffers fit later requests. A request takes the smallest free buffer at least as large, if it
 * is no more than twice the rounded size (best fit within 2x). Free buffers are kept up to a
 * limit (bounded by default) and evicted least recently used first.
 */
#include <stdlib.h>
#include <string.h>

#include "mc_internal.h"

static size_t round_capacity(size_t n) {
  if (n < MC_PAGE_SIZE) {
    size_t p = 256;
    while (p < n) p <<= 1;
    return p;
  }
  return (n + MC_PAGE_SIZE - 1) / MC_PAGE_SIZE * MC_PAGE_SIZE;
}

/* First index whose capacity is >= cap. */
static size_t lower_bound(const mc_device *dev, size_t cap) {
  size_t lo = 0, hi = dev->n_free;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (dev->free_sorted[mid]->capacity < cap) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static void lru_unlink(mc_device *dev, mc_buffer *b) {
  if (b->lru_prev) b->lru_prev->lru_next = b->lru_next;
  else dev->lru_head = b->lru_next;
  if (b->lru_next) b->lru_next->lru_prev = b->lru_prev;
  else dev->lru_tail = b->lru_prev;
  b->lru_prev = b->lru_next = NULL;
}

static void cache_remove(mc_device *dev, mc_buffer *b) {
  size_t i = lower_bound(dev, b->capacity);
  while (i < dev->n_free && dev->free_sorted[i] != b) ++i;
  if (i < dev->n_free) {
    memmove(&dev->free_sorted[i], &dev->free_sorted[i + 1], (dev->n_free - i - 1) * sizeof *dev->free_sorted);
    --dev->n_free;
  }
  lru_unlink(dev, b);
  b->cached = false;
  dev->stats.cached_bytes -= b->capacity;
}

static void destroy(mc_device *dev, mc_buffer *b) {
  dev->drv->buffer_free(dev->ctx, b->handle);
  free(b);
}

void mc_cache_evict_locked(mc_device *dev, uint64_t limit) {
  while (dev->lru_head && dev->stats.cached_bytes > limit) {
    mc_buffer *b = dev->lru_head;
    cache_remove(dev, b);
    destroy(dev, b);
  }
}

void mc_cache_insert_locked(mc_device *dev, mc_buffer *b) {
  if (b->capacity > dev->cache_limit) {
    destroy(dev, b);
    return;
  }
  if (dev->n_free == dev->cap_free) {
    size_t cap = dev->cap_free ? dev->cap_free * 2 : 64;
    mc_buffer **grown = realloc(dev->free_sorted, cap * sizeof *grown);
    if (!grown) { /* cannot track it: give it back instead */
      destroy(dev, b);
      return;
    }
    dev->free_sorted = grown;
    dev->cap_free = cap;
  }
  size_t i = lower_bound(dev, b->capacity);
  memmove(&dev->free_sorted[i + 1], &dev->free_sorted[i], (dev->n_free - i) * sizeof *dev->free_sorted);
  dev->free_sorted[i] = b;
  ++dev->n_free;
  b->cached = true;
  b->lru_prev = dev->lru_tail; /* most recently used at the tail */
  b->lru_next = NULL;
  if (dev->lru_tail) dev->lru_tail->lru_next = b;
  else dev->lru_head = b;
  dev->lru_tail = b;
  dev->stats.cached_bytes += b->capacity;
  mc_cache_evict_locked(dev, dev->cache_limit);
}

void mc_buffer_release_locked(mc_buffer *b) {
  mc_device *dev = b->dev;
  if (--b->refs > 0) return;
  dev->stats.active_bytes -= b->capacity;
  dev->stats.live_buffers -= 1;
  mc_cache_insert_locked(dev, b);
}

static mc_buffer *take_cached(mc_device *dev, size_t cap) {
  size_t i = lower_bound(dev, cap);
  if (i >= dev->n_free) return NULL;
  mc_buffer *b = dev->free_sorted[i];
  if (b->capacity / 2 > cap) return NULL; /* best fit is more than twice too large */
  cache_remove(dev, b);
  return b;
}

static mc_status allocate_locked(mc_device *dev, size_t cap, void **handle, void **contents) {
  mc_status st = dev->drv->buffer_new(dev->ctx, cap, handle, contents);
  if (st != MC_OUT_OF_MEMORY) return st;
  /* Flush and retry once: finished command buffers return their buffers to the cache first. */
  dev->stats.oom_retries += 1;
  mc_wait_all_locked(dev);
  mc_cache_evict_locked(dev, 0);
  st = dev->drv->buffer_new(dev->ctx, cap, handle, contents);
  if (st == MC_OUT_OF_MEMORY)
    return mc_set_error(MC_OUT_OF_MEMORY, "mc_buffer_new: cannot allocate %zu bytes even after flushing the "
                        "buffer cache (active %llu bytes): %s", cap,
                        (unsigned long long)dev->stats.active_bytes, mc_last_error());
  return st;
}

mc_status mc_buffer_new(mc_device *dev, size_t nbytes, mc_buffer **out) {
  if (!out) return mc_set_error(MC_INVALID_ARGUMENT, "mc_buffer_new: out is NULL");
  *out = NULL;
  if (!dev) return mc_set_error(MC_INVALID_ARGUMENT, "mc_buffer_new: device is NULL");
  if (nbytes > ((size_t)1 << 48))
    return mc_set_error(MC_OUT_OF_MEMORY, "mc_buffer_new: %zu bytes is beyond any device", nbytes);
  size_t cap = round_capacity(nbytes);
  pthread_mutex_lock(&dev->lock);
  mc_buffer *b = take_cached(dev, cap);
  if (b) {
    dev->stats.buffer_reuses += 1;
  } else {
    void *handle = NULL, *contents = NULL;
    b = calloc(1, sizeof *b);
    mc_status st = b ? allocate_locked(dev, cap, &handle, &contents)
                     : mc_set_error(MC_OUT_OF_MEMORY, "mc_buffer_new: out of host memory");
    if (st != MC_OK) {
      free(b);
      pthread_mutex_unlock(&dev->lock);
      return st;
    }
    b->dev = dev;
    b->handle = handle;
    b->contents = contents;
    b->capacity = cap;
    dev->stats.buffer_allocations += 1;
  }
  b->size = nbytes;
  b->refs = 1;
  b->read_segment = b->write_segment = 0;
  b->kept_by = 0;
  dev->stats.active_bytes += b->capacity;
  dev->stats.live_buffers += 1;
  if (dev->stats.active_bytes > dev->stats.peak_bytes) dev->stats.peak_bytes = dev->stats.active_bytes;
  pthread_mutex_unlock(&dev->lock);
  *out = b;
  return MC_OK;
}

void mc_buffer_free(mc_buffer *b) {
  if (!b) return;
  mc_device *dev = b->dev;
  pthread_mutex_lock(&dev->lock);
  mc_buffer_release_locked(b);
  pthread_mutex_unlock(&dev->lock);
}

void *mc_buffer_contents(const mc_buffer *b) { return b ? b->contents : NULL; }
size_t mc_buffer_size(const mc_buffer *b) { return b ? b->size : 0; }
size_t mc_buffer_capacity(const mc_buffer *b) { return b ? b->capacity : 0; }
void *mc_buffer_handle(const mc_buffer *b) { return b ? b->handle : NULL; }

uint64_t mc_device_set_cache_limit(mc_device *dev, uint64_t bytes) {
  pthread_mutex_lock(&dev->lock);
  uint64_t old = dev->cache_limit;
  dev->cache_limit = bytes;
  dev->stats.cache_limit = bytes;
  mc_cache_evict_locked(dev, bytes);
  pthread_mutex_unlock(&dev->lock);
  return old;
}

void mc_device_clear_cache(mc_device *dev) {
  pthread_mutex_lock(&dev->lock);
  mc_retire_finished_locked(dev); /* finished work hands its buffers back first */
  mc_cache_evict_locked(dev, 0);
  pthread_mutex_unlock(&dev->lock);
}

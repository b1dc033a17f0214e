/* mc_dispatch.c -- command batching, hazard tracking, keep-alive and the sticky error state.
 *
 * One command buffer is open at a time, with one compute encoder whose dispatches may run
 * concurrently. It is committed every `commit_every` dispatches and on sync; at most
 * `max_in_flight` committed command buffers are outstanding (the oldest is waited for first).
 *
 * Hazards: every encoder is split into segments by barriers. A buffer remembers the last segment
 * that read it and the last that wrote it; a dispatch that reads a buffer written in the current
 * segment (RAW), or writes one read (WAR) or written (WAW) in it, first encodes a barrier and
 * starts a new segment. Independent dispatches share a segment and may overlap on the GPU.
 *
 * Keep-alive: the open command record takes one reference on every buffer bound to it, released
 * when the command buffer is retired after completion, so a buffer its owner frees meanwhile is
 * neither destroyed nor handed out again by the cache while the GPU may still use it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_internal.h"

static void on_done(void *arg, int failed, const char *message) { /* any thread, no lock */
  mc_commands *c = arg;
  if (failed) {
    snprintf(c->message, sizeof c->message, "%s", message && *message ? message : "command buffer failed");
    atomic_store_explicit(&c->state, MC_CMD_FAILED, memory_order_release);
  } else {
    atomic_store_explicit(&c->state, MC_CMD_DONE, memory_order_release);
  }
}

static void release_keeps_locked(mc_commands *c) {
  for (uint32_t i = 0; i < c->n_keep; ++i) {
    c->keep[i]->kept_by = 0;
    mc_buffer_release_locked(c->keep[i]);
  }
  free(c->keep);
  c->keep = NULL;
  c->n_keep = c->cap_keep = 0;
}

static void retire_locked(mc_device *dev, mc_commands *c) {
  if (atomic_load_explicit(&c->state, memory_order_acquire) == MC_CMD_FAILED && !dev->sticky) {
    dev->sticky = true;
    dev->sticky_reported = false;
    snprintf(dev->sticky_message, sizeof dev->sticky_message, "%s", c->message);
  }
  release_keeps_locked(c);
  dev->drv->commands_free(c->handle);
  free(c);
}

static mc_commands *pop_oldest_locked(mc_device *dev) {
  mc_commands *c = dev->in_flight[dev->flight_head];
  dev->in_flight[dev->flight_head] = NULL;
  dev->flight_head = (dev->flight_head + 1) % MC_MAX_IN_FLIGHT_LIMIT;
  dev->n_flight -= 1;
  return c;
}

void mc_retire_finished_locked(mc_device *dev) {
  while (dev->n_flight) {
    mc_commands *c = dev->in_flight[dev->flight_head];
    if (atomic_load_explicit(&c->state, memory_order_acquire) == MC_CMD_PENDING) break;
    retire_locked(dev, pop_oldest_locked(dev));
  }
}

static void wait_oldest_locked(mc_device *dev) {
  mc_commands *c = dev->in_flight[dev->flight_head];
  dev->drv->wait(c->handle); /* `done` has run when this returns */
  retire_locked(dev, pop_oldest_locked(dev));
}

void mc_wait_all_locked(mc_device *dev) {
  while (dev->n_flight) wait_oldest_locked(dev);
}

void mc_discard_open_locked(mc_device *dev) {
  mc_commands *c = dev->open;
  if (!c) return;
  dev->open = NULL;
  release_keeps_locked(c);
  dev->drv->commands_free(c->handle);
  free(c);
}

/* The first call to see a failure gets MC_COMMAND_BUFFER_ERROR, later ones MC_DEVICE_ERROR_STICKY. */
static mc_status sticky_status_locked(mc_device *dev, const char *fn) {
  if (!dev->sticky_reported) {
    dev->sticky_reported = true;
    return mc_set_error(MC_COMMAND_BUFFER_ERROR, "%s: command buffer failed: %s", fn, dev->sticky_message);
  }
  return mc_set_error(MC_DEVICE_ERROR_STICKY,
                      "%s: the device is in an error state since a command buffer failed (%s); reset it first", fn,
                      dev->sticky_message);
}

static mc_status open_commands_locked(mc_device *dev) {
  if (dev->open) return MC_OK;
  while (dev->n_flight >= dev->max_in_flight) wait_oldest_locked(dev);
  mc_commands *c = calloc(1, sizeof *c);
  if (!c) return mc_set_error(MC_OUT_OF_MEMORY, "mc_device_dispatch: out of host memory");
  mc_status st = dev->drv->commands_new(dev->ctx, &c->handle);
  if (st != MC_OK) {
    free(c);
    return st;
  }
  atomic_init(&c->state, MC_CMD_PENDING);
  c->id = dev->next_command_id++;
  dev->segment += 1; /* a new encoder: nothing earlier in it to conflict with */
  dev->open = c;
  return MC_OK;
}

static mc_status commit_open_locked(mc_device *dev) {
  mc_commands *c = dev->open;
  if (!c) return MC_OK;
  if (!c->n_dispatches) {
    mc_discard_open_locked(dev);
    return MC_OK;
  }
  dev->open = NULL;
  dev->in_flight[(dev->flight_head + dev->n_flight) % MC_MAX_IN_FLIGHT_LIMIT] = c; /* before commit: done may */
  dev->n_flight += 1;                                                                /* fire inside it */
  dev->stats.command_buffers += 1;
  mc_status st = dev->drv->commit(c->handle, on_done, c);
  if (st != MC_OK) on_done(c, 1, mc_last_error()); /* the driver calls done only after a successful commit */
  return MC_OK;
}

static mc_status keep_locked(mc_commands *c, mc_buffer *b) {
  if (b->kept_by == c->id) return MC_OK;
  if (c->n_keep == c->cap_keep) {
    uint32_t cap = c->cap_keep ? c->cap_keep * 2 : 32;
    mc_buffer **grown = realloc(c->keep, cap * sizeof *grown);
    if (!grown) return mc_set_error(MC_OUT_OF_MEMORY, "mc_device_dispatch: out of host memory");
    c->keep = grown;
    c->cap_keep = cap;
  }
  c->keep[c->n_keep++] = b;
  b->refs += 1;
  b->kept_by = c->id;
  return MC_OK;
}

static mc_status validate(const mc_device *dev, const mc_pipeline *p, const mc_binding *bindings, uint32_t n,
                          const uint32_t grid[3], const uint32_t tg[3], mc_grid_mode mode) {
  if (!dev || !p || !grid || !tg || (n && !bindings))
    return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_dispatch: NULL argument");
  if (mode != MC_GRID_THREADGROUPS && mode != MC_GRID_THREADS)
    return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_dispatch: %s: unknown grid mode %d", p->function, (int)mode);
  if (n > MC_MAX_BINDINGS)
    return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_dispatch: %s: %u bindings (Metal allows %u)", p->function, n,
                        MC_MAX_BINDINGS);
  uint64_t threads = (uint64_t)tg[0] * tg[1] * tg[2];
  if (threads == 0 || threads > p->max_threads)
    return mc_set_error(MC_INVALID_ARGUMENT,
                        "mc_device_dispatch: %s: threadgroup (%u, %u, %u) = %llu threads, the pipeline allows 1..%u",
                        p->function, tg[0], tg[1], tg[2], (unsigned long long)threads, p->max_threads);
  uint32_t seen = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const mc_binding *b = &bindings[i];
    if (b->index >= MC_MAX_BINDINGS)
      return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_dispatch: %s: buffer index %u out of range 0..%u",
                          p->function, b->index, MC_MAX_BINDINGS - 1);
    if (seen & (1u << b->index))
      return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_dispatch: %s: buffer index %u bound twice", p->function,
                          b->index);
    seen |= 1u << b->index;
    if (b->buffer) {
      if (b->buffer->dev != dev || b->buffer->refs == 0)
        return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_dispatch: %s: buffer %u is freed or from another device",
                            p->function, b->index);
      if (b->offset > b->buffer->capacity)
        return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_dispatch: %s: offset %llu beyond buffer %u (%zu bytes)",
                            p->function, (unsigned long long)b->offset, b->index, b->buffer->capacity);
    } else if (!b->bytes || b->length == 0 || b->length > MC_MAX_BYTES_ARG) {
      return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_dispatch: %s: bytes argument %u has %u bytes (1..%u)",
                          p->function, b->index, b->length, MC_MAX_BYTES_ARG);
    }
  }
  return MC_OK;
}

mc_status mc_device_dispatch(mc_device *dev, mc_pipeline *p, const mc_binding *bindings, uint32_t n,
                             const uint32_t grid[3], const uint32_t tg[3], mc_grid_mode mode) {
  mc_status st = validate(dev, p, bindings, n, grid, tg, mode);
  if (st != MC_OK) return st;
  if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0) return MC_OK;
  pthread_mutex_lock(&dev->lock);
  mc_retire_finished_locked(dev);
  if (dev->sticky) {
    st = sticky_status_locked(dev, "mc_device_dispatch");
    goto out;
  }
  if ((st = open_commands_locked(dev)) != MC_OK) goto out;
  if (dev->sticky) { /* waiting for room in flight retired a failed command buffer */
    st = sticky_status_locked(dev, "mc_device_dispatch");
    goto out;
  }
  mc_commands *c = dev->open;
  bool barrier = false;
  for (uint32_t i = 0; i < n && !barrier; ++i) {
    const mc_buffer *b = bindings[i].buffer;
    if (!b) continue;
    bool writes = bindings[i].access == 0 || (bindings[i].access & MC_ACCESS_WRITE);
    barrier = b->write_segment == dev->segment || (writes && b->read_segment == dev->segment);
  }
  if (barrier) {
    dev->drv->barrier(c->handle);
    dev->segment += 1;
    dev->stats.barriers += 1;
  }
  for (uint32_t i = 0; i < n; ++i) {
    mc_buffer *b = bindings[i].buffer;
    if (!b) continue;
    if ((st = keep_locked(c, b)) != MC_OK) goto out;
    uint32_t access = bindings[i].access ? bindings[i].access : MC_ACCESS_READ_WRITE;
    if (access & MC_ACCESS_READ) b->read_segment = dev->segment;
    if (access & MC_ACCESS_WRITE) b->write_segment = dev->segment;
  }
  dev->drv->set_pipeline(c->handle, p->handle);
  for (uint32_t i = 0; i < n; ++i) {
    const mc_binding *b = &bindings[i];
    if (b->buffer) dev->drv->set_buffer(c->handle, b->buffer->handle, b->offset, b->index);
    else dev->drv->set_bytes(c->handle, b->bytes, b->length, b->index);
  }
  dev->drv->dispatch(c->handle, grid, tg, mode);
  c->n_dispatches += 1;
  dev->stats.dispatches += 1;
  if (c->n_dispatches >= dev->commit_every) st = commit_open_locked(dev);
out:
  pthread_mutex_unlock(&dev->lock);
  return st;
}

mc_status mc_device_commit(mc_device *dev) {
  pthread_mutex_lock(&dev->lock);
  mc_retire_finished_locked(dev);
  mc_status st = dev->sticky ? sticky_status_locked(dev, "mc_device_commit") : commit_open_locked(dev);
  pthread_mutex_unlock(&dev->lock);
  return st;
}

mc_status mc_device_sync(mc_device *dev) {
  pthread_mutex_lock(&dev->lock);
  mc_status st = MC_OK;
  if (!dev->sticky) {
    commit_open_locked(dev);
    mc_wait_all_locked(dev);
  }
  if (dev->sticky) st = sticky_status_locked(dev, "mc_device_sync");
  pthread_mutex_unlock(&dev->lock);
  return st;
}

mc_status mc_device_reset(mc_device *dev) {
  pthread_mutex_lock(&dev->lock);
  mc_discard_open_locked(dev);
  mc_wait_all_locked(dev);
  dev->sticky = false;
  dev->sticky_reported = false;
  dev->sticky_message[0] = '\0';
  pthread_mutex_unlock(&dev->lock);
  return MC_OK;
}

/* mc_device.c -- opening and closing a device, settings, stats. */
#include <stdlib.h>
#include <string.h>

#include "mc_internal.h"

const char *mc_driver_name(const mc_driver *driver) { return driver ? driver->name : ""; }

mc_status mc_device_new(const mc_driver *driver, mc_device **out) {
  if (!out) return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_new: out is NULL");
  *out = NULL;
  if (!driver) return mc_set_error(MC_NO_DEVICE, "mc_device_new: this build has no such driver");
  if (driver->abi_version != MC_DRIVER_ABI_VERSION)
    return mc_set_error(MC_INTERNAL, "mc_device_new: driver '%s' has ABI %u, expected %u", driver->name,
                        driver->abi_version, MC_DRIVER_ABI_VERSION);
  mc_device *dev = calloc(1, sizeof *dev);
  if (!dev) return mc_set_error(MC_OUT_OF_MEMORY, "mc_device_new: out of host memory");
  dev->drv = driver;
  mc_status st = driver->open(&dev->ctx, &dev->info);
  if (st != MC_OK) {
    free(dev);
    return st;
  }
  pthread_mutex_init(&dev->lock, NULL);
  pthread_mutex_init(&dev->pipe_lock, NULL);
  dev->cache_limit = MC_DEFAULT_CACHE_LIMIT;
  dev->commit_every = MC_DEFAULT_COMMIT_EVERY;
  dev->max_in_flight = MC_DEFAULT_MAX_IN_FLIGHT;
  dev->next_command_id = 1;
  dev->segment = 1;
  *out = dev;
  return MC_OK;
}

void mc_device_free(mc_device *dev) {
  if (!dev) return;
  pthread_mutex_lock(&dev->lock);
  mc_discard_open_locked(dev);
  mc_wait_all_locked(dev);
  mc_cache_evict_locked(dev, 0);
  pthread_mutex_unlock(&dev->lock);
  mc_pipelines_free(dev);
  free(dev->free_sorted);
  dev->drv->close(dev->ctx);
  pthread_mutex_destroy(&dev->lock);
  pthread_mutex_destroy(&dev->pipe_lock);
  free(dev);
}

void mc_device_info_get(const mc_device *dev, mc_device_info *out) {
  if (dev && out) *out = dev->info;
}

mc_status mc_device_set_commit_every(mc_device *dev, uint32_t n) {
  if (n < 1) return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_set_commit_every: n must be >= 1, got %u", n);
  pthread_mutex_lock(&dev->lock);
  dev->commit_every = n;
  pthread_mutex_unlock(&dev->lock);
  return MC_OK;
}

mc_status mc_device_set_max_in_flight(mc_device *dev, uint32_t n) {
  if (n < 1 || n > MC_MAX_IN_FLIGHT_LIMIT)
    return mc_set_error(MC_INVALID_ARGUMENT, "mc_device_set_max_in_flight: n must be in 1..%u, got %u",
                        MC_MAX_IN_FLIGHT_LIMIT, n);
  pthread_mutex_lock(&dev->lock);
  dev->max_in_flight = n;
  pthread_mutex_unlock(&dev->lock);
  return MC_OK;
}

void mc_device_stats(mc_device *dev, mc_stats *out) {
  pthread_mutex_lock(&dev->lock);
  mc_retire_finished_locked(dev);
  pthread_mutex_lock(&dev->pipe_lock);
  *out = dev->stats;
  pthread_mutex_unlock(&dev->pipe_lock);
  out->cache_limit = dev->cache_limit;
  out->in_flight = dev->n_flight;
  out->commit_every = dev->commit_every;
  out->max_in_flight = dev->max_in_flight;
  pthread_mutex_unlock(&dev->lock);
}

int mc_device_is_sticky(const mc_device *dev) { return dev && dev->sticky; }

#ifndef MC_HAVE_METAL
const mc_driver *mc_metal_driver(void) { return NULL; } /* this build has no Metal driver */
#endif

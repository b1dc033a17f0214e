/* mc_internal.h -- structures shared by the policy's translation units (not an API). */
#ifndef MC_INTERNAL_H
#define MC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "mc_driver.h"

/* A buffer: owned by its caller (1 reference) plus one reference per command buffer using it. */
struct mc_buffer {
  mc_device *dev;
  void *handle;
  void *contents;
  size_t capacity;
  size_t size;
  uint32_t refs;
  bool cached;           /* in the free cache (refs == 0) */
  uint64_t read_segment; /* hazard tracking: last encoder segment that read / wrote it */
  uint64_t write_segment;
  uint64_t kept_by;        /* id of the open command record that already holds a reference */
  mc_buffer *lru_prev;     /* free cache: least recently used first */
  mc_buffer *lru_next;
};

struct mc_pipeline {
  mc_pipeline *next; /* hash chain */
  uint64_t hash;
  size_t key_len;
  unsigned char *key;
  void *handle;
  uint32_t max_threads;
  char function[MC_MAX_NAME];
};

typedef struct mc_library_node {
  struct mc_library_node *next; /* most recent first */
  void *handle;
} mc_library_node;

/* A command buffer the policy created: open (encoding), then in flight until retired. */
typedef struct mc_commands {
  void *handle;
  uint64_t id;
  uint32_t n_dispatches;
  uint32_t n_keep, cap_keep;
  mc_buffer **keep; /* one reference each, released at retire */
  atomic_int state; /* MC_CMD_* */
  char message[512];
} mc_commands;

enum { MC_CMD_PENDING = 0, MC_CMD_DONE = 1, MC_CMD_FAILED = 2 };

struct mc_device {
  const mc_driver *drv;
  void *ctx;
  mc_device_info info;

  /* Serialises buffers, encoding, commit/wait and stats. Never held while compiling. */
  pthread_mutex_t lock;
  /* Guards the pipeline table and the library list. Held only for lookups and inserts. */
  pthread_mutex_t pipe_lock;

  /* pipeline cache */
  mc_pipeline **table;
  size_t table_size, n_pipelines;
  mc_library_node *libraries;

  /* buffer cache: free buffers sorted by capacity, and an LRU list for eviction */
  mc_buffer **free_sorted;
  size_t n_free, cap_free;
  mc_buffer *lru_head, *lru_tail;
  uint64_t cache_limit;

  /* batching */
  mc_commands *open;
  mc_commands *in_flight[MC_MAX_IN_FLIGHT_LIMIT]; /* FIFO ring */
  uint32_t flight_head, n_flight;
  uint32_t commit_every, max_in_flight;
  uint64_t next_command_id;
  uint64_t segment; /* hazard segment: bumped per encoder and per barrier */

  /* sticky error */
  bool sticky;
  bool sticky_reported;
  char sticky_message[512];

  mc_stats stats;
};

/* mc_buffer.c */
void mc_cache_insert_locked(mc_device *dev, mc_buffer *buf);
void mc_cache_evict_locked(mc_device *dev, uint64_t limit);
void mc_buffer_release_locked(mc_buffer *buf);

/* mc_pipeline.c */
void mc_pipelines_free(mc_device *dev);

/* mc_dispatch.c */
void mc_retire_finished_locked(mc_device *dev);
void mc_wait_all_locked(mc_device *dev);
void mc_discard_open_locked(mc_device *dev);

#endif /* MC_INTERNAL_H */

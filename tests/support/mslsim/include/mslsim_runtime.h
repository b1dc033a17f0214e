// mslsim_runtime.h -- the simulated device: runs a grid of threadgroups on CPU threads.
//
// One OS worker thread runs one threadgroup at a time; every GPU thread of the group is a fiber
// (mslsim_fiber.h). Fibers run until they reach a synchronisation point (threadgroup_barrier,
// simdgroup_barrier or a simd_* collective). When every fiber is blocked or done, the scheduler
// resolves SIMD collectives per 32-lane SIMD-group (the active lanes are those waiting at the
// same call site), then releases a barrier once every thread waits at the same one. Threadgroup
// memory is filled with 0xFF bytes (NaN in every float type) when each threadgroup starts, so a
// read that a missing barrier lets through shows up as NaN.
//
// Nothing here is a template: each kernel contributes one small body thunk (mslsim_launch.h),
// so a .metal file with a hundred kernels still compiles in seconds.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>
#include <sys/mman.h>

#include "mslsim_abi.h"
#include "mslsim_fiber.h"

namespace mslsim {

constexpr int kSimdWidth = 32;
constexpr int kMaxThreads = 1024;

struct u3 {
  uint32_t x, y, z;
};

struct ThreadInfo {
  u3 thread_position_in_grid;
  u3 thread_position_in_threadgroup;
  u3 threadgroup_position_in_grid;
  u3 threads_per_threadgroup;
  u3 threadgroups_per_grid;
  u3 threads_per_grid;
  u3 dispatch_threads_per_threadgroup;
  uint32_t thread_index_in_threadgroup;
  uint32_t simdgroup_index_in_threadgroup;
  uint32_t thread_index_in_simdgroup;
  uint32_t simdgroups_per_threadgroup;
};

// A call site of a synchronisation primitive: __builtin_FILE()/__builtin_LINE() of the caller,
// which the #line markers of the preprocessed shader make the .metal file and line.
struct Site {
  const char* file;
  int line;
  bool operator==(const Site& o) const { return line == o.line && std::strcmp(file, o.file) == 0; }
};

enum LaneState : uint8_t { RUNNABLE, AT_BARRIER, AT_SIMD, DONE, FAULTED };

struct Lane;
typedef void (*SimdResolveFn)(Lane* const* lanes_by_index, int kind);

struct Group;

struct Lane {
  Fiber fiber;
  Group* group = nullptr;
  char* stack = nullptr;
  ThreadInfo ti;
  LaneState state = DONE;
  Site site = {"", 0};
  // the pending SIMD collective
  int simd_kind = 0;
  const void* simd_in = nullptr;
  void* simd_out = nullptr;
  uint32_t simd_arg = 0;
  SimdResolveFn simd_resolve = nullptr;
};

typedef void (*BodyFn)(void* ctx, const ThreadInfo& ti);

struct Group {
  Lane lanes[kMaxThreads];
  int n = 0;
  Fiber scheduler;
  BodyFn body = nullptr;
  void* ctx = nullptr;
  const mslsim_dispatch* dispatch = nullptr;
  // Threadgroup memory: [[threadgroup(i)]] arguments first, then kernel-scope
  // `threadgroup T x[N];` variables (rewritten by the front end into tg_var<T[N], ID>()).
  alignas(64) unsigned char arena[MSLSIM_THREADGROUP_MEMORY_LIMIT];
  size_t tgmem_offset[MSLSIM_MAX_THREADGROUP_MEMORY] = {};
  size_t tg_args_end = 0;           // bytes of [[threadgroup(i)]] arguments
  size_t arena_used = 0;            // bytes claimed by the running threadgroup
  size_t arena_dirty = 0;           // high-water mark since the last poisoning
  size_t stack_size = 0;
  struct Slot { int id; size_t offset; };
  Slot slots[64];
  int n_slots = 0;
  uint64_t switches = 0;
  int fault_status = MSLSIM_STATUS_OK;
  char error[MSLSIM_ERROR_LEN] = {};
};

inline thread_local Lane* t_lane = nullptr;

inline Lane* current_lane() { return t_lane; }

inline const char* basename_of(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

inline void suspend(Lane* l) {
  ++l->group->switches;
  fiber_switch(&l->fiber, &l->group->scheduler);
}

// A fault ends the threadgroup: the lane never resumes and the dispatch fails with `status`.
// Kernel code holds only trivially destructible objects, so abandoning its stack is safe.
[[noreturn]] inline void fault(int status, const char* fmt, ...) {
  Lane* l = t_lane;
  Group* g = l->group;
  if (g->fault_status == MSLSIM_STATUS_OK) {
    g->fault_status = status;
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(g->error, sizeof g->error, fmt, ap);
    va_end(ap);
  }
  l->state = FAULTED;
  suspend(l);
  __builtin_trap();  // a faulted lane is never resumed
}

inline void barrier(Site site) {
  Lane* l = t_lane;
  l->state = AT_BARRIER;
  l->site = site;
  suspend(l);
}

inline void simd_collective(int kind, Site site, const void* in, void* out, uint32_t arg, SimdResolveFn fn) {
  Lane* l = t_lane;
  l->state = AT_SIMD;
  l->site = site;
  l->simd_kind = kind;
  l->simd_in = in;
  l->simd_out = out;
  l->simd_arg = arg;
  l->simd_resolve = fn;
  suspend(l);
}

inline void* claim_threadgroup_memory(Group* g, size_t size, size_t align) {
  const size_t off = (g->arena_used + align - 1) & ~(align - 1);
  if (off + size > sizeof g->arena)
    fault(MSLSIM_STATUS_OUT_OF_RESOURCES, "threadgroup memory exceeds %u bytes (%zu requested)",
          MSLSIM_THREADGROUP_MEMORY_LIMIT, off + size);
  g->arena_used = off + size;
  g->arena_dirty = std::max(g->arena_dirty, g->arena_used);
  return g->arena + off;
}

// Storage of a kernel-scope `threadgroup T x[N];` declaration: the first thread of the group to
// reach it allocates, the others find the same slot. The arena is already poisoned.
template <class T, int ID>
T& tg_var() {
  Group* g = t_lane->group;
  for (int i = 0; i < g->n_slots; ++i)
    if (g->slots[i].id == ID) return *reinterpret_cast<T*>(g->arena + g->slots[i].offset);
  if (g->n_slots == int(sizeof g->slots / sizeof g->slots[0]))
    fault(MSLSIM_STATUS_OUT_OF_RESOURCES, "more than 64 threadgroup variables");
  void* p = claim_threadgroup_memory(g, sizeof(T), alignof(T) < 16 ? 16 : alignof(T));
  g->slots[g->n_slots++] = {ID, size_t(static_cast<unsigned char*>(p) - g->arena)};
  return *static_cast<T*>(p);
}

inline void* threadgroup_argument(int index) {
  return t_lane->group->arena + t_lane->group->tgmem_offset[index];
}

[[noreturn]] inline void lane_main(void* arg) {
  Lane* l = static_cast<Lane*>(arg);
  l->group->body(l->group->ctx, l->ti);
  l->state = DONE;
  suspend(l);
  __builtin_trap();  // a finished lane is never resumed
}

// ---------------------------------------------------------------- scheduler

// Resolve every pending SIMD collective; returns whether any lane was released.
inline bool resolve_simd(Group& g) {
  bool progressed = false;
  for (int base = 0; base < g.n; base += kSimdWidth) {
    const int end = std::min(g.n, base + kSimdWidth);
    for (;;) {
      Lane* first = nullptr;
      for (int i = base; i < end && !first; ++i)
        if (g.lanes[i].state == AT_SIMD) first = &g.lanes[i];
      if (!first) break;
      Lane* active[kSimdWidth] = {};
      for (int i = base; i < end; ++i) {
        Lane& l = g.lanes[i];
        if (l.state == AT_SIMD && l.site == first->site && l.simd_kind == first->simd_kind &&
            l.simd_resolve == first->simd_resolve)
          active[i - base] = &l;
      }
      first->simd_resolve(active, first->simd_kind);
      for (Lane* l : active)
        if (l) l->state = RUNNABLE;
      progressed = true;
    }
  }
  return progressed;
}

// Release the pending barrier, or explain why it cannot be. Returns false on a kernel fault.
inline bool release_barrier(Group& g, bool strict, bool* finished) {
  int waiting = 0, done = 0, other = 0;
  const Lane* a = nullptr;
  const Lane* b = nullptr;
  for (int i = 0; i < g.n; ++i) {
    const Lane& l = g.lanes[i];
    if (l.state == DONE) { ++done; continue; }
    if (l.state != AT_BARRIER) continue;
    ++waiting;
    if (!a) a = &l;
    else if (!(l.site == a->site)) { ++other; if (!b) b = &l; }
  }
  *finished = waiting == 0;
  if (waiting == 0) return true;
  if (b) {
    std::snprintf(g.error, sizeof g.error,
                  "threadgroup_barrier reached at different call sites: %s:%d (thread %u, %d threads) "
                  "and %s:%d (thread %u); a barrier must be in uniform control flow",
                  basename_of(a->site.file), a->site.line, a->ti.thread_index_in_threadgroup, waiting - other,
                  basename_of(b->site.file), b->site.line, b->ti.thread_index_in_threadgroup);
    g.fault_status = MSLSIM_STATUS_KERNEL_FAULT;
    return false;
  }
  if (done && strict) {
    std::snprintf(g.error, sizeof g.error,
                  "threadgroup_barrier at %s:%d not reached by all threads: %d of %d had already returned "
                  "(early return before a barrier)",
                  basename_of(a->site.file), a->site.line, done, g.n);
    g.fault_status = MSLSIM_STATUS_KERNEL_FAULT;
    return false;
  }
  for (int i = 0; i < g.n; ++i)
    if (g.lanes[i].state == AT_BARRIER) g.lanes[i].state = RUNNABLE;
  return true;
}

inline bool run_group(Group& g, bool strict, bool reverse) {
  for (int i = 0; i < g.n; ++i) {
    Lane& l = g.lanes[i];
    l.state = RUNNABLE;
    const size_t colour = (size_t(i) & 63) * 192;
    fiber_init(&l.fiber, l.stack, g.stack_size, colour, lane_main, &l);
  }
  for (;;) {
    for (int k = 0; k < g.n; ++k) {
      Lane& l = g.lanes[reverse ? g.n - 1 - k : k];
      if (l.state != RUNNABLE) continue;
      t_lane = &l;
      fiber_switch(&g.scheduler, &l.fiber);
      t_lane = nullptr;
      if (l.state == FAULTED) return false;
    }
    if (resolve_simd(g)) continue;
    bool finished = false;
    if (!release_barrier(g, strict, &finished)) return false;
    if (finished) return true;
  }
}

// ---------------------------------------------------------------- stacks
// Fiber stacks are mmap'ed once and recycled across dispatches (first-touch page faults would
// dominate otherwise). Each stack has a PROT_NONE guard page below it.
struct StackRegion {
  char* base;
  size_t count, stack_size;
  bool busy;
};

inline std::mutex& stack_pool_mutex() { static std::mutex m; return m; }
inline std::vector<StackRegion>& stack_pool() { static std::vector<StackRegion> p; return p; }

inline char* acquire_stacks(size_t count, size_t stack_size) {
  {
    std::lock_guard<std::mutex> lock(stack_pool_mutex());
    for (StackRegion& r : stack_pool())
      if (!r.busy && r.count >= count && r.stack_size == stack_size) { r.busy = true; return r.base; }
  }
  void* m = mmap(nullptr, count * stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (m == MAP_FAILED) return nullptr;
  char* base = static_cast<char*>(m);
  for (size_t i = 0; i < count; ++i) mprotect(base + i * stack_size, 4096, PROT_NONE);
  std::lock_guard<std::mutex> lock(stack_pool_mutex());
  stack_pool().push_back({base, count, stack_size, true});
  return base;
}

inline void release_stacks(char* base) {
  std::lock_guard<std::mutex> lock(stack_pool_mutex());
  for (StackRegion& r : stack_pool())
    if (r.base == base) r.busy = false;
}

// ---------------------------------------------------------------- dispatch

inline int dispatch_error(mslsim_dispatch* d, int status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(d->error, sizeof d->error, fmt, ap);
  va_end(ap);
  return status;
}

struct Grid {
  u3 tg, groups, threads;
  bool threads_mode;
  uint64_t n_groups;
};

inline void setup_group(Group& g, const Grid& grid, uint64_t idx) {
  const u3 tgp = {uint32_t(idx % grid.groups.x), uint32_t((idx / grid.groups.x) % grid.groups.y),
                  uint32_t(idx / (uint64_t(grid.groups.x) * grid.groups.y))};
  u3 sz = grid.tg;  // dispatchThreads: the groups at the grid's far edge are smaller
  if (grid.threads_mode) {
    sz.x = std::min(sz.x, grid.threads.x - tgp.x * grid.tg.x);
    sz.y = std::min(sz.y, grid.threads.y - tgp.y * grid.tg.y);
    sz.z = std::min(sz.z, grid.threads.z - tgp.z * grid.tg.z);
  }
  g.n = int(sz.x * sz.y * sz.z);
  const uint32_t n_simd = uint32_t((g.n + kSimdWidth - 1) / kSimdWidth);
  for (int i = 0; i < g.n; ++i) {
    ThreadInfo& ti = g.lanes[i].ti;
    const u3 t = {uint32_t(i) % sz.x, (uint32_t(i) / sz.x) % sz.y, uint32_t(i) / (sz.x * sz.y)};
    ti.thread_position_in_threadgroup = t;
    ti.threadgroup_position_in_grid = tgp;
    ti.thread_position_in_grid = {tgp.x * grid.tg.x + t.x, tgp.y * grid.tg.y + t.y, tgp.z * grid.tg.z + t.z};
    ti.threads_per_threadgroup = sz;
    ti.threadgroups_per_grid = grid.groups;
    ti.threads_per_grid = grid.threads;
    ti.dispatch_threads_per_threadgroup = grid.tg;
    ti.thread_index_in_threadgroup = uint32_t(i);
    ti.simdgroup_index_in_threadgroup = uint32_t(i / kSimdWidth);
    ti.thread_index_in_simdgroup = uint32_t(i % kSimdWidth);
    ti.simdgroups_per_threadgroup = n_simd;
  }
  // Poison everything the previous group touched plus this group's arguments.
  std::memset(g.arena, 0xFF, std::max(g.arena_dirty, g.tg_args_end));
  g.arena_used = g.arena_dirty = g.tg_args_end;
  g.n_slots = 0;
}

struct DispatchState {
  mslsim_dispatch* d;
  const char* kernel;
  BodyFn body;
  void* ctx;
  Grid grid;
  size_t stack_size;
  size_t tg_args_end;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::atomic<uint64_t> switches{0};
  std::mutex error_mutex;
  int status = MSLSIM_STATUS_OK;
};

inline void worker_main(DispatchState* s) {
  mslsim_dispatch* d = s->d;
  const int max_threads = int(s->grid.tg.x * s->grid.tg.y * s->grid.tg.z);
  Group* g = new (std::nothrow) Group;
  char* stacks = g ? acquire_stacks(size_t(max_threads), s->stack_size) : nullptr;
  if (!stacks) {
    std::lock_guard<std::mutex> lock(s->error_mutex);
    if (s->status == MSLSIM_STATUS_OK)
      s->status = dispatch_error(d, MSLSIM_STATUS_OUT_OF_RESOURCES, "%s: cannot allocate fiber stacks", s->kernel);
    s->failed = true;
    delete g;
    return;
  }
  g->body = s->body;
  g->ctx = s->ctx;
  g->dispatch = d;
  size_t off = 0;
  for (uint32_t i = 0; i < MSLSIM_MAX_THREADGROUP_MEMORY; ++i) {
    g->tgmem_offset[i] = off;
    if (i < d->n_threadgroup_memory && d->threadgroup_memory_lengths)
      off = (off + d->threadgroup_memory_lengths[i] + 15) & ~size_t(15);
  }
  g->tg_args_end = s->tg_args_end;
  g->stack_size = s->stack_size;
  g->arena_dirty = sizeof g->arena;
  for (int i = 0; i < max_threads; ++i) {
    g->lanes[i].group = g;
    g->lanes[i].stack = stacks + size_t(i) * s->stack_size;
  }
  const bool strict = !(d->flags & MSLSIM_FLAG_LENIENT_BARRIERS);
  const bool reverse = (d->flags & MSLSIM_FLAG_REVERSE_ORDER) != 0;
  for (;;) {
    const uint64_t idx = s->next.fetch_add(1);
    if (idx >= s->grid.n_groups || s->failed.load(std::memory_order_relaxed)) break;
    setup_group(*g, s->grid, idx);
    if (run_group(*g, strict, reverse)) continue;
    s->failed = true;
    std::lock_guard<std::mutex> lock(s->error_mutex);
    if (s->status == MSLSIM_STATUS_OK) {
      const u3 p = g->lanes[0].ti.threadgroup_position_in_grid;
      s->status = dispatch_error(d, g->fault_status, "%s: threadgroup (%u,%u,%u): %s", s->kernel, p.x, p.y, p.z,
                                 g->error);
    }
    break;
  }
  s->switches += g->switches;
  release_stacks(stacks);
  delete g;
}

// Validate the grid and run every threadgroup of the dispatch.
inline int run_dispatch(mslsim_dispatch* d, const char* kernel, BodyFn body, void* ctx) {
  DispatchState s;
  s.d = d;
  s.kernel = kernel;
  s.body = body;
  s.ctx = ctx;
  for (int k = 0; k < 3; ++k)
    if (d->grid[k] == 0 || d->threadgroup[k] == 0)
      return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH, "%s: grid (%u,%u,%u) and threadgroup (%u,%u,%u) "
                            "sizes must all be >= 1", kernel, d->grid[0], d->grid[1], d->grid[2],
                            d->threadgroup[0], d->threadgroup[1], d->threadgroup[2]);
  Grid& gr = s.grid;
  gr.tg = {d->threadgroup[0], d->threadgroup[1], d->threadgroup[2]};
  const uint64_t per_group = uint64_t(gr.tg.x) * gr.tg.y * gr.tg.z;
  if (per_group > uint64_t(kMaxThreads))
    return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH, "%s: %llu threads per threadgroup, at most %d",
                          kernel, (unsigned long long)per_group, kMaxThreads);
  gr.threads_mode = d->grid_mode == MSLSIM_GRID_THREADS;
  if (gr.threads_mode) {
    gr.threads = {d->grid[0], d->grid[1], d->grid[2]};
    gr.groups = {(gr.threads.x + gr.tg.x - 1) / gr.tg.x, (gr.threads.y + gr.tg.y - 1) / gr.tg.y,
                 (gr.threads.z + gr.tg.z - 1) / gr.tg.z};
  } else if (d->grid_mode == MSLSIM_GRID_THREADGROUPS) {
    gr.groups = {d->grid[0], d->grid[1], d->grid[2]};
    gr.threads = {gr.groups.x * gr.tg.x, gr.groups.y * gr.tg.y, gr.groups.z * gr.tg.z};
  } else {
    return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH, "%s: unknown grid_mode %u", kernel, d->grid_mode);
  }
  gr.n_groups = uint64_t(gr.groups.x) * gr.groups.y * gr.groups.z;
  if (d->n_threadgroup_memory > MSLSIM_MAX_THREADGROUP_MEMORY)
    return dispatch_error(d, MSLSIM_STATUS_INVALID_DISPATCH, "%s: %u threadgroup memory slots, at most %u", kernel,
                          d->n_threadgroup_memory, MSLSIM_MAX_THREADGROUP_MEMORY);
  uint64_t tg_bytes = 0;
  for (uint32_t i = 0; i < d->n_threadgroup_memory && d->threadgroup_memory_lengths; ++i)
    tg_bytes = (tg_bytes + d->threadgroup_memory_lengths[i] + 15) & ~uint64_t(15);
  if (tg_bytes > MSLSIM_THREADGROUP_MEMORY_LIMIT)
    return dispatch_error(d, MSLSIM_STATUS_OUT_OF_RESOURCES,
                          "%s: %llu bytes of threadgroup memory arguments, at most %u", kernel,
                          (unsigned long long)tg_bytes, MSLSIM_THREADGROUP_MEMORY_LIMIT);
  s.tg_args_end = size_t(tg_bytes);
  s.stack_size = size_t(d->stack_kib ? d->stack_kib : 64) * 1024;

  uint64_t workers = d->n_workers ? d->n_workers : std::max(1u, std::thread::hardware_concurrency());
  workers = std::max<uint64_t>(1, std::min<uint64_t>(workers, gr.n_groups));
  std::vector<std::thread> helpers;
  for (uint64_t w = 1; w < workers; ++w) {
    try {
      helpers.emplace_back(worker_main, &s);
    } catch (...) {
      break;  // fewer helpers is still correct
    }
  }
  worker_main(&s);
  for (std::thread& t : helpers) t.join();
  d->n_context_switches = s.switches.load();
  return s.status;
}

}  // namespace mslsim

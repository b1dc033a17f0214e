// mm_commands.m -- mock Metal: command queues, command buffers, compute encoders and the "GPU".
//
// The GPU is one worker thread running committed command buffers in commit order. A dispatch
// calls the simulator launcher of its pipeline's function. Dispatches of a concurrent encoder
// between barriers run in reverse order: on a GPU they may overlap, so a missing barrier must
// show. Command buffers made with commandBufferWithUnretainedReferences do not retain their
// buffers (as in Metal): running a dispatch whose buffer was already released is reported as a
// validation error and fails the command buffer, like a GPU page fault.
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mm_internal.h"

#ifdef GNUSTEP
#import <Foundation/NSThread.h>  // GSRegisterCurrentThread: a pthread that uses Foundation
#endif

typedef struct mm_binding {
  MMBuffer *buffer;  // retained only by commands of a retaining command buffer
  uint64_t serial;
  NSUInteger offset;
  void *bytes;  // setBytes copy (malloc)
  NSUInteger length;
} mm_binding;

static void bindings_clear(mm_binding *b, BOOL release_buffers) {
  for (int i = 0; i < MM_MAX_BUFFERS; ++i) {
    if (release_buffers) [b[i].buffer release];
    free(b[i].bytes);
  }
  memset(b, 0, sizeof(mm_binding) * MM_MAX_BUFFERS);
}

// One recorded dispatch.
@interface MMCommand : MMObject {
 @public
  MMPipeline *_pso;
  mm_binding _b[MM_MAX_BUFFERS];
  uint32_t _grid[3], _tg[3];
  uint32_t _mode;
  BOOL _barrier_before;
  BOOL _retains;
}
@end
@implementation MMCommand
- (void)dealloc {
  [_pso release];
  bindings_clear(_b, _retains);
  [super dealloc];
}
@end

@interface MMCommandQueue : MMObject <MTLCommandQueue> {
 @public
  id<MTLDevice> _device;
}
@end

@class MMComputeEncoder;

@interface MMCommandBuffer : MMObject <MTLCommandBuffer> {
 @public
  MMCommandQueue *_queue;
  NSMutableArray *_commands;
  volatile MTLCommandBufferStatus _status;
  NSError *_error;
  MMComputeEncoder *_active;  // not retained
  BOOL _retains, _inject_failure;
  MTLCommandBufferHandler _handlers[8];
  int _n_handlers;
}
- (void)execute;
@end

@interface MMComputeEncoder : MMObject <MTLComputeCommandEncoder> {
 @public
  MMCommandBuffer *_cb;  // retained
  MMPipeline *_pso;      // retained
  mm_binding _b[MM_MAX_BUFFERS];
  BOOL _ended, _concurrent, _barrier_pending;
}
@end

// ---------------------------------------------------------------------------- the GPU
static pthread_mutex_t g_gpu_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gpu_cond = PTHREAD_COND_INITIALIZER;
static MMCommandBuffer *g_queue[1024];
static int g_head, g_count;
static int g_started;

static void *gpu_main(void *arg) {
  (void)arg;
#ifdef GNUSTEP
  GSRegisterCurrentThread();
#endif
  for (;;) {
    pthread_mutex_lock(&g_gpu_lock);
    while (g_count == 0) pthread_cond_wait(&g_gpu_cond, &g_gpu_lock);
    MMCommandBuffer *cb = g_queue[g_head];
    g_head = (g_head + 1) % 1024;
    g_count -= 1;
    pthread_cond_broadcast(&g_gpu_cond);  // room in the queue
    pthread_mutex_unlock(&g_gpu_lock);
    @autoreleasepool {
      [cb execute];
      [cb release];  // the queue's reference
    }
  }
  return NULL;
}

static void gpu_submit(MMCommandBuffer *cb) {
  pthread_mutex_lock(&g_gpu_lock);
  if (!g_started) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&t, &attr, gpu_main, NULL);
    pthread_attr_destroy(&attr);
    g_started = 1;
  }
  while (g_count == 1024) pthread_cond_wait(&g_gpu_cond, &g_gpu_lock);
  g_queue[(g_head + g_count) % 1024] = [cb retain];
  g_count += 1;
  pthread_cond_broadcast(&g_gpu_cond);
  pthread_mutex_unlock(&g_gpu_lock);
}

// --------------------------------------------------------------------------- encoder
@implementation MMComputeEncoder
- (BOOL)usable:(const char *)what index:(NSUInteger)index {
  if (_ended) mm_validation_failed("%s after endEncoding", what);
  if (index >= MM_MAX_BUFFERS) mm_validation_failed("%s: index %lu >= %d", what, (unsigned long)index, MM_MAX_BUFFERS);
  return !_ended && index < MM_MAX_BUFFERS;
}
- (void)setComputePipelineState:(id<MTLComputePipelineState>)state {
  if (_ended) mm_validation_failed("setComputePipelineState after endEncoding");
  [(id)state retain];
  [_pso release];
  _pso = (MMPipeline *)state;
}
- (void)setBuffer:(id<MTLBuffer>)buffer offset:(NSUInteger)offset atIndex:(NSUInteger)index {
  if (![self usable:"setBuffer" index:index]) return;
  MMBuffer *b = (MMBuffer *)buffer;
  if (b && offset > b->_length) mm_validation_failed("setBuffer: offset %lu beyond length %lu", (unsigned long)offset,
                                                     (unsigned long)b->_length);
  free(_b[index].bytes);
  _b[index].bytes = NULL;
  _b[index].buffer = b;
  _b[index].serial = b ? b->_serial : 0;
  _b[index].offset = offset;
}
- (void)setBytes:(const void *)bytes length:(NSUInteger)length atIndex:(NSUInteger)index {
  if (![self usable:"setBytes" index:index]) return;
  if (length > MM_MAX_BYTES) mm_validation_failed("setBytes: %lu bytes (Metal allows 4 KiB)", (unsigned long)length);
  free(_b[index].bytes);
  _b[index].buffer = nil;
  _b[index].bytes = malloc(length ? length : 1);
  memcpy(_b[index].bytes, bytes, length);
  _b[index].length = length;
}
- (void)memoryBarrierWithScope:(MTLBarrierScope)scope {
  if (_ended) mm_validation_failed("memoryBarrierWithScope after endEncoding");
  if (!(scope & MTLBarrierScopeBuffers)) mm_validation_failed("memoryBarrierWithScope: no buffer scope");
  _barrier_pending = YES;
  MM_COUNT(mm_barriers, 1);
}
- (void)dispatch:(MTLSize)grid threadgroup:(MTLSize)tg mode:(uint32_t)mode {
  if (_ended || !_pso) {
    mm_validation_failed(_ended ? "dispatch after endEncoding" : "dispatch without a pipeline state");
    return;
  }
  NSUInteger threads = tg.width * tg.height * tg.depth;
  if (threads == 0 || threads > [_pso maxTotalThreadsPerThreadgroup]) {
    mm_validation_failed("threadsPerThreadgroup (%lu, %lu, %lu) outside 1..%lu threads", (unsigned long)tg.width,
                         (unsigned long)tg.height, (unsigned long)tg.depth,
                         (unsigned long)[_pso maxTotalThreadsPerThreadgroup]);
    return;
  }
  MMCommand *c = [[MMCommand alloc] init];
  c->_pso = [_pso retain];
  c->_retains = _cb->_retains;
  for (int i = 0; i < MM_MAX_BUFFERS; ++i) {
    c->_b[i] = _b[i];
    if (_b[i].bytes) {
      c->_b[i].bytes = malloc(_b[i].length ? _b[i].length : 1);
      memcpy(c->_b[i].bytes, _b[i].bytes, _b[i].length);
    }
    if (c->_retains) [c->_b[i].buffer retain];
  }
  c->_grid[0] = (uint32_t)grid.width, c->_grid[1] = (uint32_t)grid.height, c->_grid[2] = (uint32_t)grid.depth;
  c->_tg[0] = (uint32_t)tg.width, c->_tg[1] = (uint32_t)tg.height, c->_tg[2] = (uint32_t)tg.depth;
  c->_mode = mode;
  c->_barrier_before = _barrier_pending || !_concurrent;  // serial encoders order every dispatch
  _barrier_pending = NO;
  [_cb->_commands addObject:c];
  [c release];
}
- (void)dispatchThreadgroups:(MTLSize)threadgroupsPerGrid threadsPerThreadgroup:(MTLSize)threadsPerThreadgroup {
  [self dispatch:threadgroupsPerGrid threadgroup:threadsPerThreadgroup mode:MSLSIM_GRID_THREADGROUPS];
}
- (void)dispatchThreads:(MTLSize)threadsPerGrid threadsPerThreadgroup:(MTLSize)threadsPerThreadgroup {
  [self dispatch:threadsPerGrid threadgroup:threadsPerThreadgroup mode:MSLSIM_GRID_THREADS];
}
- (void)endEncoding {
  if (_ended) mm_validation_failed("endEncoding called twice");
  _ended = YES;
  if (_cb->_active == self) _cb->_active = nil;
}
- (void)dealloc {
  if (!_ended) mm_validation_failed("compute encoder released without endEncoding");
  if (_cb->_active == self) _cb->_active = nil;
  [_pso release];
  bindings_clear(_b, NO);
  [_cb release];
  [super dealloc];
}
@end

// --------------------------------------------------------------------- command buffer
@implementation MMCommandBuffer
- (id<MTLComputeCommandEncoder>)computeCommandEncoderWithDispatchType:(MTLDispatchType)type {
  if (_status != MTLCommandBufferStatusNotEnqueued) mm_validation_failed("encoder on a committed command buffer");
  if (_active) mm_validation_failed("new encoder while another is still encoding");
  MMComputeEncoder *e = [[MMComputeEncoder alloc] init];
  e->_cb = [self retain];
  e->_concurrent = type == MTLDispatchTypeConcurrent;
  _active = e;
  return [e autorelease];  // +0, as in Metal
}

// Runs one dispatch; returns a failure message or nil.
- (NSString *)run:(MMCommand *)c {
  void *buffers[MM_MAX_BUFFERS];
  uint64_t lengths[MM_MAX_BUFFERS];
  uint32_t n = 0;
  for (uint32_t i = 0; i < MM_MAX_BUFFERS; ++i) {
    const mm_binding *b = &c->_b[i];
    buffers[i] = NULL;
    lengths[i] = 0;
    if (b->bytes) {
      buffers[i] = b->bytes, lengths[i] = b->length;
    } else if (b->buffer) {
      if (!mm_registry_contains(b->serial)) {
        mm_validation_failed("buffer %u of a dispatch was released before its command buffer completed", i);
        return [NSString stringWithFormat:@"Invalid resource: buffer %u was released while in use (page fault)", i];
      }
      buffers[i] = (char *)b->buffer->_bytes + b->offset;
      lengths[i] = b->buffer->_length - b->offset;
    }
    if (buffers[i]) n = i + 1;
  }
  MMFunction *f = c->_pso->_function;
  mslsim_dispatch d;
  memset(&d, 0, sizeof d);
  d.abi_version = MSLSIM_ABI_VERSION;
  d.grid_mode = c->_mode;
  memcpy(d.grid, c->_grid, sizeof d.grid);
  memcpy(d.threadgroup, c->_tg, sizeof d.threadgroup);
  d.n_buffers = n;
  d.buffers = buffers;
  d.buffer_lengths = lengths;
  d.n_function_constants = f->_n_constants;
  d.function_constants = f->_constant_ptrs;
  d.n_workers = mm_workers;
  MM_COUNT(mm_kernel_runs, 1);
  if (f->_launch(&d) != MSLSIM_STATUS_OK) return [NSString stringWithFormat:@"%@: %s", f->_name, d.error];
  return nil;
}

- (void)execute {  // on the GPU thread
  NSString *failure = nil;
  if (_inject_failure) failure = @"Internal Error: injected command buffer failure (mockmetal_fail_command_buffers)";
  NSUInteger count = [_commands count];
  for (NSUInteger start = 0; start < count && !failure;) {
    NSUInteger end = start + 1;
    while (end < count && !((MMCommand *)[_commands objectAtIndex:end])->_barrier_before) ++end;
    for (NSUInteger i = end; i > start && !failure; --i) failure = [self run:[_commands objectAtIndex:i - 1]];
    start = end;
  }
  [_commands removeAllObjects];  // a finished command buffer lets go of its resources
  if (failure) _error = [mm_error(MTLCommandBufferErrorDomain, MTLCommandBufferErrorInternal, failure) retain];
  pthread_mutex_lock(&g_gpu_lock);
  _status = failure ? MTLCommandBufferStatusError : MTLCommandBufferStatusCompleted;
  pthread_cond_broadcast(&g_gpu_cond);  // waitUntilCompleted may return before the handlers run, as in Metal
  pthread_mutex_unlock(&g_gpu_lock);
  for (int i = 0; i < _n_handlers; ++i) _handlers[i](self);
}

- (void)addCompletedHandler:(MTLCommandBufferHandler)block {
  if (_status != MTLCommandBufferStatusNotEnqueued) mm_validation_failed("addCompletedHandler after commit");
  if (_n_handlers == 8) {
    mm_validation_failed("more than 8 completion handlers");
    return;
  }
  _handlers[_n_handlers++] = (MTLCommandBufferHandler)mm_block_copy((const void *)block);
}
- (void)commit {
  if (_status != MTLCommandBufferStatusNotEnqueued) {
    mm_validation_failed("commit of an already committed command buffer");
    return;
  }
  if (_active) mm_validation_failed("commit with an encoder still open (missing endEncoding)");
  MM_COUNT(mm_commits, 1);
  _inject_failure = mm_take_injection(&mm_fail_command_buffers);
  _status = MTLCommandBufferStatusCommitted;
  gpu_submit(self);
}
- (void)waitUntilCompleted {
  if (_status == MTLCommandBufferStatusNotEnqueued) {
    mm_validation_failed("waitUntilCompleted before commit (would hang)");
    return;
  }
  pthread_mutex_lock(&g_gpu_lock);
  while (_status != MTLCommandBufferStatusCompleted && _status != MTLCommandBufferStatusError)
    pthread_cond_wait(&g_gpu_cond, &g_gpu_lock);
  pthread_mutex_unlock(&g_gpu_lock);
}
- (MTLCommandBufferStatus)status { return _status; }
- (NSError *)error { return _error; }
- (void)dealloc {
  if (_status == MTLCommandBufferStatusCommitted) mm_validation_failed("command buffer released while running");
  [_queue release];
  [_commands release];
  [_error release];
  for (int i = 0; i < _n_handlers; ++i) mm_block_release((void *)_handlers[i]);
  [super dealloc];
}
@end

// ---------------------------------------------------------------------- command queue
@implementation MMCommandQueue
- (MMCommandBuffer *)makeBuffer:(BOOL)retains {
  MMCommandBuffer *cb = [[MMCommandBuffer alloc] init];
  cb->_queue = [self retain];
  cb->_commands = [[NSMutableArray alloc] init];
  cb->_retains = retains;
  return [cb autorelease];  // +0, as in Metal
}
- (id<MTLCommandBuffer>)commandBuffer { return [self makeBuffer:YES]; }
- (id<MTLCommandBuffer>)commandBufferWithUnretainedReferences { return [self makeBuffer:NO]; }
- (void)dealloc {
  [(id)_device release];
  [super dealloc];
}
@end

id<MTLCommandQueue> mm_new_command_queue(id<MTLDevice> device) {
  MMCommandQueue *q = [[MMCommandQueue alloc] init];
  q->_device = [(id)device retain];
  return q;
}

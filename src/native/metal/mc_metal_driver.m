// mc_metal_driver.m -- the only Objective-C of metalcandle: the mc_driver vtable on Metal.
//
// Thin wrappers: no caching, batching or hazard logic (that is the portable C policy).
// Memory: manual retain/release (built with -fno-objc-arc everywhere). Every object kept past a
// call is held at +1 (new*/alloc/copy, or an explicit retain of a +0 result) and released by
// the matching *_free. Every entry point runs inside @autoreleasepool: callers are Python
// threads with no pool, and a missing pool leaks every autoreleased NSError/NSString.
// Built on macOS against the SDK, and on Linux (-Dmetal=mock) against the mock framework in
// tests/support/mockmetal with GNUstep Base (GCC runtime: no object subscripting, no __weak).
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mc_driver.h"

typedef struct metal_ctx {
  id<MTLDevice> device;
  id<MTLCommandQueue> queue;
} metal_ctx;

// A command buffer with its one concurrent compute encoder. `finished` is set at the end of the
// completion handler: waitUntilCompleted may return before the handlers have run.
typedef struct metal_commands {
  id<MTLCommandBuffer> cb;
  id<MTLComputeCommandEncoder> enc;
  int committed;
  int finished;
  pthread_mutex_t lock;
  pthread_cond_t cond;
} metal_commands;

static const char *utf8(NSString *s) { return s ? [s UTF8String] : ""; }

static mc_status metal_open(void **ctx_out, mc_device_info *info) {
  @autoreleasepool {
    id<MTLDevice> device = MTLCreateSystemDefaultDevice();  // +1
    if (!device) return mc_set_error(MC_NO_DEVICE, "MTLCreateSystemDefaultDevice: no Metal device");
    metal_ctx *ctx = calloc(1, sizeof *ctx);
    id<MTLCommandQueue> queue = [device newCommandQueue];  // +1
    if (!ctx || !queue) {
      [queue release];
      [device release];
      free(ctx);
      return mc_set_error(MC_NO_DEVICE, "newCommandQueue: failed");
    }
    ctx->device = device;
    ctx->queue = queue;
    snprintf(info->name, sizeof info->name, "%s", utf8([device name]));
    info->max_working_set = [device recommendedMaxWorkingSetSize];
    MTLSize t = [device maxThreadsPerThreadgroup];
    info->max_threads_per_threadgroup = (uint32_t)t.width;
    info->unified_memory = [device hasUnifiedMemory] ? 1 : 0;
    *ctx_out = ctx;
    return MC_OK;
  }
}

static void metal_close(void *p) {
  @autoreleasepool {
    metal_ctx *ctx = p;
    [ctx->queue release];
    [ctx->device release];
    free(ctx);
  }
}

static mc_status metal_buffer_new(void *p, size_t nbytes, void **buffer, void **contents) {
  @autoreleasepool {
    metal_ctx *ctx = p;
    // Shared storage: one allocation the CPU and GPU both see (NumPy reads it zero-copy).
    id<MTLBuffer> b = [ctx->device newBufferWithLength:nbytes options:MTLResourceStorageModeShared];  // +1
    if (!b) return mc_set_error(MC_OUT_OF_MEMORY, "newBufferWithLength: %zu bytes failed", nbytes);
    *buffer = (void *)b;
    *contents = [b contents];
    return MC_OK;
  }
}

static void metal_buffer_free(void *p, void *buffer) {
  (void)p;
  @autoreleasepool {
    [(id<MTLBuffer>)buffer release];
  }
}

static mc_status metal_library_new(void *p, const char *source, const char *label, void **library) {
  @autoreleasepool {
    metal_ctx *ctx = p;
    NSString *src = [NSString stringWithUTF8String:source];
    if (!src) return mc_set_error(MC_INVALID_ARGUMENT, "newLibraryWithSource: %s: source is not UTF-8", label);
    MTLCompileOptions *options = [[MTLCompileOptions alloc] init];
    // Precise math: results are compared with NumPy, and fast math changes exp/div/rsqrt.
    options.fastMathEnabled = NO;
    NSError *error = nil;
    id<MTLLibrary> lib = [ctx->device newLibraryWithSource:src options:options error:&error];  // +1
    [options release];
    if (!lib)  // The description carries the compiler's FILE:LINE:COL diagnostics (#line maps to .metal files).
      return mc_set_error(MC_COMPILE_ERROR, "newLibraryWithSource: %s: %s", label, utf8([error localizedDescription]));
    *library = (void *)lib;
    return MC_OK;
  }
}

static void metal_library_free(void *p, void *library) {
  (void)p;
  @autoreleasepool {
    [(id<MTLLibrary>)library release];
  }
}

static MTLDataType data_type(uint32_t t) {
  switch (t) {
    case MC_CONST_BOOL: return MTLDataTypeBool;
    case MC_CONST_INT32: return MTLDataTypeInt;
    case MC_CONST_UINT32: return MTLDataTypeUInt;
    case MC_CONST_FLOAT32: return MTLDataTypeFloat;
    case MC_CONST_FLOAT16: return MTLDataTypeHalf;
    case MC_CONST_INT64: return MTLDataTypeLong;
    case MC_CONST_UINT64: return MTLDataTypeULong;
  }
  return MTLDataTypeNone;
}

static mc_status metal_pipeline_new(void *p, void *library, const char *function, const mc_constant *constants,
                                    uint32_t n, void **pipeline, uint32_t *max_threads) {
  @autoreleasepool {
    metal_ctx *ctx = p;
    id<MTLLibrary> lib = (id<MTLLibrary>)library;
    NSString *name = [NSString stringWithUTF8String:function];
    if (![[lib functionNames] containsObject:name]) return MC_NOT_FOUND;
    MTLFunctionConstantValues *values = [[MTLFunctionConstantValues alloc] init];
    for (uint32_t i = 0; i < n; ++i) {
      const mc_constant *c = &constants[i];
      if (c->name)
        [values setConstantValue:&c->value type:data_type(c->type) withName:[NSString stringWithUTF8String:c->name]];
      else
        [values setConstantValue:&c->value type:data_type(c->type) atIndex:c->index];
    }
    NSError *error = nil;
    id<MTLFunction> fn = [lib newFunctionWithName:name constantValues:values error:&error];  // +1
    [values release];
    if (!fn)
      return mc_set_error(MC_COMPILE_ERROR, "newFunctionWithName:constantValues: %s: %s", function,
                          utf8([error localizedDescription]));
    id<MTLComputePipelineState> pso = [ctx->device newComputePipelineStateWithFunction:fn error:&error];  // +1
    [fn release];
    if (!pso)
      return mc_set_error(MC_COMPILE_ERROR, "newComputePipelineStateWithFunction: %s: %s", function,
                          utf8([error localizedDescription]));
    *max_threads = (uint32_t)[pso maxTotalThreadsPerThreadgroup];
    *pipeline = (void *)pso;
    return MC_OK;
  }
}

static void metal_pipeline_free(void *p, void *pipeline) {
  (void)p;
  @autoreleasepool {
    [(id<MTLComputePipelineState>)pipeline release];
  }
}

static mc_status metal_commands_new(void *p, void **out) {
  @autoreleasepool {
    metal_ctx *ctx = p;
    metal_commands *c = calloc(1, sizeof *c);
    if (!c) return mc_set_error(MC_OUT_OF_MEMORY, "commandBuffer: out of host memory");
    // Unretained references: the policy keeps every bound buffer alive until completion, which
    // saves Metal a retain/release per binding.
    c->cb = [[ctx->queue commandBufferWithUnretainedReferences] retain];
    // Concurrent dispatch: the policy encodes a barrier only where a hazard exists.
    c->enc = [[c->cb computeCommandEncoderWithDispatchType:MTLDispatchTypeConcurrent] retain];
    if (!c->cb || !c->enc) {
      [c->enc endEncoding];
      [c->enc release];
      [c->cb release];
      free(c);
      return mc_set_error(MC_DEVICE_ERROR_STICKY, "commandBufferWithUnretainedReferences: failed");
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    *out = c;
    return MC_OK;
  }
}

static void metal_set_pipeline(void *p, void *pipeline) {
  @autoreleasepool {
    [((metal_commands *)p)->enc setComputePipelineState:(id<MTLComputePipelineState>)pipeline];
  }
}

static void metal_set_buffer(void *p, void *buffer, uint64_t offset, uint32_t index) {
  @autoreleasepool {
    [((metal_commands *)p)->enc setBuffer:(id<MTLBuffer>)buffer offset:offset atIndex:index];
  }
}

static void metal_set_bytes(void *p, const void *bytes, uint32_t length, uint32_t index) {
  @autoreleasepool {
    [((metal_commands *)p)->enc setBytes:bytes length:length atIndex:index];
  }
}

static void metal_dispatch(void *p, const uint32_t grid[3], const uint32_t tg[3], mc_grid_mode mode) {
  @autoreleasepool {
    id<MTLComputeCommandEncoder> enc = ((metal_commands *)p)->enc;
    MTLSize g = MTLSizeMake(grid[0], grid[1], grid[2]);
    MTLSize t = MTLSizeMake(tg[0], tg[1], tg[2]);
    if (mode == MC_GRID_THREADS) [enc dispatchThreads:g threadsPerThreadgroup:t];
    else [enc dispatchThreadgroups:g threadsPerThreadgroup:t];
  }
}

static void metal_barrier(void *p) {
  @autoreleasepool {
    [((metal_commands *)p)->enc memoryBarrierWithScope:MTLBarrierScopeBuffers];
  }
}

static mc_status metal_commit(void *p, mc_completion_fn done, void *arg) {
  @autoreleasepool {
    metal_commands *c = p;
    [c->enc endEncoding];
    [c->enc release];
    c->enc = nil;
    c->committed = 1;
    [c->cb addCompletedHandler:^(id<MTLCommandBuffer> cb) {
      @autoreleasepool {  // runs on a Metal thread
        int failed = [cb status] == MTLCommandBufferStatusError;
        NSError *error = [cb error];
        done(arg, failed, failed ? utf8([error localizedDescription]) : "");
        pthread_mutex_lock(&c->lock);
        c->finished = 1;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
      }
    }];
    [c->cb commit];
    return MC_OK;
  }
}

// Until the completion handler has let go of `c` (it runs `done` first, then signals).
static void wait_handler(metal_commands *c) {
  pthread_mutex_lock(&c->lock);
  while (!c->finished) pthread_cond_wait(&c->cond, &c->lock);
  pthread_mutex_unlock(&c->lock);
}

static void metal_wait(void *p) {
  @autoreleasepool {
    metal_commands *c = p;
    if (!c->committed) return;
    [c->cb waitUntilCompleted];
    wait_handler(c);
  }
}

static void metal_commands_free(void *p) {
  @autoreleasepool {
    metal_commands *c = p;
    if (c->enc) {  // discarded before commit: Metal asserts on an encoder released while open
      [c->enc endEncoding];
      [c->enc release];
    }
    if (c->committed) wait_handler(c);  // the policy may retire as soon as `done` ran
    [c->cb release];
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
  }
}

static const mc_driver metal_driver = {
    "metal", MC_DRIVER_ABI_VERSION, metal_open, metal_close, metal_buffer_new, metal_buffer_free,
    metal_library_new, metal_library_free, metal_pipeline_new, metal_pipeline_free,
    metal_commands_new, metal_set_pipeline, metal_set_buffer, metal_set_bytes, metal_dispatch, metal_barrier,
    metal_commit, metal_wait, metal_commands_free,
};

const mc_driver *mc_metal_driver(void) { return &metal_driver; }

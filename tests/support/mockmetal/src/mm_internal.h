// mm_internal.h -- shared declarations of the mock Metal framework (not an API).
#pragma once
#include <stdint.h>

#include "mockmetal.h"
#include "mslsim_abi.h"

#define MM_MAX_BUFFERS 31
#define MM_MAX_CONSTANTS 64
#define MM_MAX_BYTES 4096
#define MM_MAX_THREADS 1024
#define MM_COUNT(var, d) __atomic_add_fetch(&(var), (d), __ATOMIC_RELAXED)

#ifdef __cplusplus
extern "C" {
#endif

// mm_support.c
extern long mm_live, mm_validation, mm_commits, mm_kernel_runs, mm_pipeline_builds, mm_compiler_runs, mm_barriers;
extern unsigned mm_workers;
void mm_validation_failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int mm_take_injection(int *counter);  // 1 when an injected failure is due
extern int mm_fail_allocations, mm_fail_command_buffers, mm_fail_compiles;

// Heap copy / release of a block (GNUstep 1.28's _Block_copy does not copy clang's blocks).
void *mm_block_copy(const void *block);
void mm_block_release(void *block);

// Live buffers by serial number (a freed buffer's address may be reused; its serial is not).
void mm_registry_add(uint64_t serial);
void mm_registry_remove(uint64_t serial);
int mm_registry_contains(uint64_t serial);

// Compiles MSL source to a simulator library (cached by source hash): a dlopen handle, or NULL
// with the compiler's diagnostics in `error`.
void *mm_compile(const char *source, char *error, size_t error_len);

// Declarations read from the library's mslsim_module_info() JSON.
typedef struct mm_constant_decl {
  char name[64];
  char type[16];  // MSL scalar type: bool, int, uint, float, half, ...
  uint32_t index;
} mm_constant_decl;
int mm_module_constants(void *so, mm_constant_decl *out, int max);
int mm_module_kernels(void *so, char names[][128], int max);
// Bytes of an MSL scalar type, and whether a MTLDataType value (as NSUInteger) matches it.
size_t mm_type_width(const char *msl_type);
int mm_type_matches(const char *msl_type, unsigned long mtl_data_type);

#ifdef __cplusplus
}
#endif

#ifdef __OBJC__
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

NSError *mm_error(NSString *domain, NSInteger code, NSString *message);  // autoreleased, as Metal's

// Every mock object counts itself (mockmetal_live_objects).
@interface MMObject : NSObject
@end

@interface MMBuffer : MMObject <MTLBuffer> {
 @public
  id<MTLDevice> _device;
  void *_bytes;
  NSUInteger _length;
  uint64_t _serial;
}
@end

@interface MMLibrary : MMObject <MTLLibrary> {
 @public
  void *_so;
  NSArray *_names;
  mm_constant_decl _constants[MM_MAX_CONSTANTS];
  int _n_constants;
}
@end

@interface MMFunction : MMObject <MTLFunction> {
 @public
  NSString *_name;
  MMLibrary *_library;
  mslsim_launcher _launch;
  uint32_t _n_constants;                            // slots 0.._n_constants-1
  const void *_constant_ptrs[MM_MAX_CONSTANTS];     // NULL: not set
  uint64_t _constant_values[MM_MAX_CONSTANTS];
}
@end

@interface MMPipeline : MMObject <MTLComputePipelineState> {
 @public
  MMFunction *_function;
}
@end

// MTLFunctionConstantValues and MTLCompileOptions are classes in Metal. With the GCC runtime's
// fragile ivars a subclass cannot add storage to a class declared without ivars in Metal.h, so
// each is a tiny class cluster: +alloc of the public class returns the private subclass.
typedef struct mm_constant_value {
  char name[64];  // "" = by index
  uint32_t index;
  unsigned long type;
  uint64_t value;
} mm_constant_value;

@interface MMFunctionConstantValues : MTLFunctionConstantValues {
 @public
  mm_constant_value _values[MM_MAX_CONSTANTS];
  int _n;
}
@end

@interface MMCompileOptions : MTLCompileOptions {
 @public
  BOOL _fast;
  MTLLanguageVersion _language;
}
@end
#endif

// mm_objects.m -- mock Metal: device, buffers, libraries, functions, pipelines, option classes.
// Objective-C, manual retain/release, GCC runtime + GNUstep Base.
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "mm_internal.h"

NSString *const MTLLibraryErrorDomain = @"MTLLibraryErrorDomain";
NSString *const MTLCommandBufferErrorDomain = @"MTLCommandBufferErrorDomain";

NSError *mm_error(NSString *domain, NSInteger code, NSString *message) {
  NSDictionary *info = [NSDictionary dictionaryWithObject:message forKey:NSLocalizedDescriptionKey];
  return [NSError errorWithDomain:domain code:code userInfo:info];
}

@implementation MMObject
+ (id)allocWithZone:(NSZone *)zone {
  id o = [super allocWithZone:zone];
  if (o) MM_COUNT(mm_live, 1);
  return o;
}
- (void)dealloc {
  MM_COUNT(mm_live, -1);
  [super dealloc];
}
@end

// ------------------------------------------------------------------------------ buffer
@implementation MMBuffer
- (id<MTLDevice>)device { return _device; }
- (NSUInteger)length { return _length; }
- (void *)contents { return _bytes; }
- (void)dealloc {
  mm_registry_remove(_serial);
  free(_bytes);
  [(id)_device release];
  [super dealloc];
}
@end

// ------------------------------------------------------------- function constant values
@implementation MTLFunctionConstantValues
+ (id)allocWithZone:(NSZone *)zone {
  if (self == [MTLFunctionConstantValues class]) return [MMFunctionConstantValues allocWithZone:zone];
  return [super allocWithZone:zone];
}
- (void)setConstantValue:(const void *)value type:(MTLDataType)type atIndex:(NSUInteger)index {
  (void)value, (void)type, (void)index;
}
- (void)setConstantValue:(const void *)value type:(MTLDataType)type withName:(NSString *)name {
  (void)value, (void)type, (void)name;
}
- (id)copyWithZone:(NSZone *)zone {
  (void)zone;
  return [self retain];
}
@end

@implementation MMFunctionConstantValues
+ (id)allocWithZone:(NSZone *)zone {
  id o = [super allocWithZone:zone];
  if (o) MM_COUNT(mm_live, 1);
  return o;
}
- (void)set:(const void *)value type:(MTLDataType)type index:(NSUInteger)index name:(NSString *)name {
  size_t width = type == MTLDataTypeBool || type == MTLDataTypeChar || type == MTLDataTypeUChar ? 1
                 : type == MTLDataTypeHalf || type == MTLDataTypeShort || type == MTLDataTypeUShort ? 2
                 : type == MTLDataTypeLong || type == MTLDataTypeULong ? 8 : 4;
  if (_n == MM_MAX_CONSTANTS) {
    mm_validation_failed("setConstantValue: more than %d constants", MM_MAX_CONSTANTS);
    return;
  }
  mm_constant_value *v = &_values[_n++];
  memset(v, 0, sizeof *v);
  if (name) snprintf(v->name, sizeof v->name, "%s", [name UTF8String]);
  v->index = (uint32_t)index;
  v->type = type;
  memcpy(&v->value, value, width);
}
- (void)setConstantValue:(const void *)value type:(MTLDataType)type atIndex:(NSUInteger)index {
  [self set:value type:type index:index name:nil];
}
- (void)setConstantValue:(const void *)value type:(MTLDataType)type withName:(NSString *)name {
  [self set:value type:type index:0 name:name];
}
- (void)dealloc {
  MM_COUNT(mm_live, -1);
  [super dealloc];
}
@end

// ----------------------------------------------------------------------- compile options
@implementation MTLCompileOptions
+ (id)allocWithZone:(NSZone *)zone {
  if (self == [MTLCompileOptions class]) return [MMCompileOptions allocWithZone:zone];
  return [super allocWithZone:zone];
}
- (BOOL)fastMathEnabled { return YES; }
- (void)setFastMathEnabled:(BOOL)v { (void)v; }
- (MTLLanguageVersion)languageVersion { return MTLLanguageVersion3_1; }
- (void)setLanguageVersion:(MTLLanguageVersion)v { (void)v; }
- (id)copyWithZone:(NSZone *)zone {
  (void)zone;
  return [self retain];
}
@end

@implementation MMCompileOptions
+ (id)allocWithZone:(NSZone *)zone {
  id o = [super allocWithZone:zone];
  if (o) MM_COUNT(mm_live, 1);
  return o;
}
- (id)init {
  if ((self = [super init])) {
    _fast = YES;  // Metal's default: fast math on
    _language = MTLLanguageVersion3_1;
  }
  return self;
}
- (BOOL)fastMathEnabled { return _fast; }
- (void)setFastMathEnabled:(BOOL)v { _fast = v; }
- (MTLLanguageVersion)languageVersion { return _language; }
- (void)setLanguageVersion:(MTLLanguageVersion)v { _language = v; }
- (void)dealloc {
  MM_COUNT(mm_live, -1);
  [super dealloc];
}
@end

// --------------------------------------------------------- library, function, pipeline
@implementation MMFunction
- (NSString *)name { return _name; }
- (void)dealloc {
  [_name release];
  [_library release];
  [super dealloc];
}
@end

@implementation MMLibrary
- (NSArray<NSString *> *)functionNames { return _names; }

- (MMFunction *)functionNamed:(NSString *)name {
  if (![_names containsObject:name]) return nil;  // Metal: nil for an unknown name
  NSString *symbol = [@"mslsim_kernel_" stringByAppendingString:name];
  mslsim_launcher launch = (mslsim_launcher)dlsym(_so, [symbol UTF8String]);
  if (!launch) return nil;
  MMFunction *f = [[MMFunction alloc] init];
  f->_name = [name copy];
  f->_library = [self retain];
  f->_launch = launch;
  return f;
}

- (id<MTLFunction>)newFunctionWithName:(NSString *)name {
  return [self functionNamed:name];
}

// Resolves each value to its [[function_constant(i)]] slot, checking the declared type as Metal does.
- (id<MTLFunction>)newFunctionWithName:(NSString *)name
                        constantValues:(MTLFunctionConstantValues *)constantValues
                                 error:(NSError **)error {
  MMFunction *f = [self functionNamed:name];
  if (!f) {
    if (error)
      *error = mm_error(MTLLibraryErrorDomain, MTLLibraryErrorFunctionNotFound,
                        [NSString stringWithFormat:@"Function %@ was not found in the library", name]);
    return nil;
  }
  MMFunctionConstantValues *values = (MMFunctionConstantValues *)constantValues;
  NSString *failure = nil;
  for (int i = 0; values && i < values->_n && !failure; ++i) {
    const mm_constant_value *v = &values->_values[i];
    const mm_constant_decl *decl = NULL;
    for (int j = 0; j < _n_constants && !decl; ++j)
      if (v->name[0] ? strcmp(_constants[j].name, v->name) == 0 : _constants[j].index == v->index) decl = &_constants[j];
    if (!decl) continue;  // Metal ignores values for constants the function does not declare
    if (!mm_type_matches(decl->type, v->type)) {
      failure = [NSString stringWithFormat:@"Function constant '%s' has type %s but the value has MTLDataType %lu",
                                           decl->name, decl->type, v->type];
      break;
    }
    f->_constant_values[decl->index] = v->value;
    f->_constant_ptrs[decl->index] = &f->_constant_values[decl->index];
    if (decl->index + 1 > f->_n_constants) f->_n_constants = decl->index + 1;
  }
  if (failure) {
    [f release];
    if (error) *error = mm_error(MTLLibraryErrorDomain, MTLLibraryErrorCompileFailure, failure);
    return nil;
  }
  return f;
}

- (void)dealloc {
  [_names release];
  if (_so) dlclose(_so);
  [super dealloc];
}
@end

@implementation MMPipeline
- (NSUInteger)maxTotalThreadsPerThreadgroup { return MM_MAX_THREADS; }
- (NSUInteger)threadExecutionWidth { return 32; }
- (void)dealloc {
  [_function release];
  [super dealloc];
}
@end

// ------------------------------------------------------------------------------ device
@interface MMDevice : MMObject <MTLDevice>
@end

id<MTLCommandQueue> mm_new_command_queue(id<MTLDevice> device);  // mm_commands.m

@implementation MMDevice
- (NSString *)name { return @"mockmetal (MSL simulator on the CPU)"; }
- (BOOL)hasUnifiedMemory { return YES; }
- (uint64_t)recommendedMaxWorkingSetSize { return (uint64_t)8 << 30; }
- (MTLSize)maxThreadsPerThreadgroup { return MTLSizeMake(MM_MAX_THREADS, MM_MAX_THREADS, MM_MAX_THREADS); }
- (id<MTLCommandQueue>)newCommandQueue { return mm_new_command_queue(self); }

- (id<MTLBuffer>)newBufferWithLength:(NSUInteger)length options:(MTLResourceOptions)options {
  static uint64_t serial;
  if (options & MTLResourceStorageModePrivate) mm_validation_failed("mock supports shared storage only");
  if (length == 0) {
    mm_validation_failed("newBufferWithLength: length 0");
    return nil;
  }
  if (mm_take_injection(&mm_fail_allocations)) return nil;
  void *p = NULL;
  if (posix_memalign(&p, 16384, length) != 0) return nil;  // Apple GPU page alignment
  memset(p, 0, length);
  MMBuffer *b = [[MMBuffer alloc] init];
  b->_device = [self retain];
  b->_bytes = p;
  b->_length = length;
  b->_serial = __atomic_add_fetch(&serial, 1, __ATOMIC_RELAXED);
  mm_registry_add(b->_serial);
  return b;
}

- (id<MTLLibrary>)newLibraryWithSource:(NSString *)source
                               options:(MTLCompileOptions *)options
                                 error:(NSError **)error {
  (void)options;
  char message[8192];
  void *so = mm_compile([source UTF8String], message, sizeof message);
  if (!so) {
    if (error)
      *error = mm_error(MTLLibraryErrorDomain, MTLLibraryErrorCompileFailure,
                        [@"Compilation failed: \n\n" stringByAppendingString:[NSString stringWithUTF8String:message]]);
    return nil;
  }
  char names[256][128];
  int n = mm_module_kernels(so, names, 256);
  NSMutableArray *list = [NSMutableArray arrayWithCapacity:(NSUInteger)n];
  for (int i = 0; i < n; ++i) [list addObject:[NSString stringWithUTF8String:names[i]]];
  MMLibrary *lib = [[MMLibrary alloc] init];
  lib->_so = so;
  lib->_names = [list copy];
  lib->_n_constants = mm_module_constants(so, lib->_constants, MM_MAX_CONSTANTS);
  return lib;
}

- (id<MTLComputePipelineState>)newComputePipelineStateWithFunction:(id<MTLFunction>)function error:(NSError **)error {
  if (![(id)function isKindOfClass:[MMFunction class]]) {
    if (error) *error = mm_error(MTLLibraryErrorDomain, MTLLibraryErrorInternal, @"not a function of this device");
    return nil;
  }
  MM_COUNT(mm_pipeline_builds, 1);
  MMPipeline *p = [[MMPipeline alloc] init];
  p->_function = [(MMFunction *)function retain];
  return p;
}
@end

id<MTLDevice> MTLCreateSystemDefaultDevice(void) { return [[MMDevice alloc] init]; }

/* objc/blocks_runtime.h -- what GNUstep Base's headers include under -fblocks. Debian's GCC
 * libobjc does not ship it; GNUstep Base itself exports _Block_copy/_Block_release. */
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
void *_Block_copy(const void *);
void _Block_release(const void *);
#ifdef __cplusplus
}
#endif
#ifndef Block_copy
#define Block_copy(x) ((__typeof(x))_Block_copy((const void *)(x)))
#define Block_release(x) _Block_release((const void *)(x))
#endif

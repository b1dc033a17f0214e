/* mc_kernel_args.h -- kernel-argument structs shared by the host C code and the shaders.
 *
 * Included by every .metal file in shaders/ and by the native C code (plain C99): one definition
 * of each layout, so host and shader cannot disagree. Only fixed-width integers, float and
 * fixed-size arrays: their size and alignment are the same in MSL and in C on 64-bit targets.
 * Every struct is passed by value with setBytes (all are < 4 KiB).
 *
 * Kernel names
 * ------------
 * Every kernel's host name is  <family>_<variant>_<dtype>  (MC_KERNEL_NAME below; the host
 * builds the same string with MC_KERNEL_NAME_FORMAT). family = the .metal file's op family;
 * variant = op and/or path, lowercase letters, digits and '_'; dtype = one suffix of the table
 * below, naming the *input* dtype (comparisons write bool, argmax writes u32, a cast names its
 * source dtype in the variant and its destination as the dtype):
 *
 *   f32 float   f16 half   bf16 bfloat   i32 int   i64 long   u32 uint   u8 uchar
 *   i8 char     i16 short  bool bool
 *
 * e.g. unary_exp_f16, binary_add_strided_f32, binary_lt_i32, copy_contig_from_f16_f32,
 * reduce_sum_f32, softmax_looped_bf16, matmul_tiled_f32.
 */
#ifndef MC_KERNEL_ARGS_H
#define MC_KERNEL_ARGS_H

#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

#define MC_KERNEL_NAME_FORMAT "%s_%s_%s" /* family, variant, dtype suffix */
#define MC_MAX_DIMS 8                     /* rank limit of the strided kernels */
#define MC_MAX_STRIDED_INPUTS 3           /* where() has three inputs */
#define MC_SIMD_WIDTH 32
#define MC_ROW_BLOCK_MAX 4096             /* softmax/rmsnorm: rows up to this use the _block kernels */
#define MC_ROW_VALUES_PER_THREAD 4        /* _block kernels: 4 values per thread, in registers */
#define MC_MATMUL_TILE 32                 /* matmul_tiled: 32x32 output tile per threadgroup ... */
#define MC_MATMUL_TILE_K 16               /* ... stepping K by 16, with 16x16 = 256 threads */

/* Contiguous elementwise kernels (unary, binary, ternary, copy "contig" paths): one thread per
 * element, dispatchThreads(n). */
typedef struct mc_contig_args {
  int64_t n; /* number of elements */
} mc_contig_args;

/* Strided / broadcast elementwise kernels: one thread per output element, dispatchThreads(n).
 * Element (i0, ..., i_{ndim-1}) of input k is at in_offset[k] + sum_d i_d * in_strides[k][d]
 * (element units; stride 0 broadcasts). The output is contiguous except for copy_strided,
 * which also honours out_strides / out_offset. Dimensions past ndim are ignored. */
typedef struct mc_strided_args {
  int64_t n;    /* number of output elements = product of shape */
  int32_t ndim; /* 1..MC_MAX_DIMS */
  int32_t reserved;
  int64_t shape[MC_MAX_DIMS];
  int64_t in_strides[MC_MAX_STRIDED_INPUTS][MC_MAX_DIMS];
  int64_t in_offset[MC_MAX_STRIDED_INPUTS];
  int64_t out_strides[MC_MAX_DIMS];
  int64_t out_offset;
} mc_strided_args;

/* Row kernels (reduce, softmax, rmsnorm) work on a contiguous (rows, n) view, one threadgroup
 * per row: dispatchThreadgroups(rows). */
typedef struct mc_row_args {
  int64_t rows;
  int64_t n;     /* elements per row */
  float eps;     /* rmsnorm only */
  float reserved;
} mc_row_args;

/* Batched matmul C[b] = A[b] @ B[b]: A is (M, K), B is (K, N), C is (M, N) contiguous.
 * Element (i, k) of A[b] is at b * a_batch_stride + i * a_row_stride + k * a_col_stride, so a
 * transposed operand needs no copy; a batch stride of 0 broadcasts. Dispatch
 * threadgroups (ceil(N / 32), ceil(M / 32), batch) of (16, 16, 1) threads. */
typedef struct mc_matmul_args {
  int32_t M, N, K, batch;
  int64_t a_batch_stride, a_row_stride, a_col_stride;
  int64_t b_batch_stride, b_row_stride, b_col_stride;
  int64_t c_batch_stride; /* C rows are N apart */
} mc_matmul_args;

#ifdef __METAL_VERSION__
/* Shader side of the naming rule: MC_KERNEL_NAME(unary, exp, f32) -> "unary_exp_f32". */
#define MC_KERNEL_NAME(family, variant, dtype) #family "_" #variant "_" #dtype
/* MLX-style explicit instantiation under a host name. */
#define MC_INSTANTIATE(name, ...) \
  template [[host_name(name)]] [[kernel]] decltype(__VA_ARGS__) __VA_ARGS__;
#endif

#endif /* MC_KERNEL_ARGS_H */

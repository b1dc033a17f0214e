/* Prints the layout of every struct of shaders/mc_kernel_args.h as the host C compiler sees it,
 * one "struct.field offset size" line each; test_toolchain.py compares it with the NumPy
 * mirrors in _helpers.py. */
#include <stddef.h>
#include <stdio.h>

#include "mc_kernel_args.h"

#define FIELD(s, f) printf(#s "." #f " %zu %zu\n", offsetof(s, f), sizeof(((s *)0)->f))
#define SIZE(s) printf(#s " 0 %zu\n", sizeof(s))

int main(void) {
  SIZE(mc_contig_args); FIELD(mc_contig_args, n);
  SIZE(mc_strided_args); FIELD(mc_strided_args, n); FIELD(mc_strided_args, ndim);
  FIELD(mc_strided_args, shape); FIELD(mc_strided_args, in_strides); FIELD(mc_strided_args, in_offset);
  FIELD(mc_strided_args, out_strides); FIELD(mc_strided_args, out_offset);
  SIZE(mc_row_args); FIELD(mc_row_args, rows); FIELD(mc_row_args, n); FIELD(mc_row_args, eps);
  SIZE(mc_matmul_args); FIELD(mc_matmul_args, M); FIELD(mc_matmul_args, N); FIELD(mc_matmul_args, K);
  FIELD(mc_matmul_args, batch); FIELD(mc_matmul_args, a_batch_stride); FIELD(mc_matmul_args, a_row_stride);
  FIELD(mc_matmul_args, a_col_stride); FIELD(mc_matmul_args, b_batch_stride);
  FIELD(mc_matmul_args, b_row_stride); FIELD(mc_matmul_args, b_col_stride);
  FIELD(mc_matmul_args, c_batch_stride);
  return 0;
}

// ternary.metal -- where: out = cond ? a : b.
//
// Kernels (dtype = the dtype of a, b and out; cond is bool):
//   ternary_where_<dtype>          contiguous cond, a, b, out:
//                                  buffers (cond, a, b, out, mc_contig_args), dispatchThreads(n)
//   ternary_where_strided_<dtype>  cond, a, b strided / broadcast (in_strides[0..2]), out
//                                  contiguous: buffers (cond, a, b, out, mc_strided_args)
// dtypes: f32 f16 bf16 i32 i64 u32 u8 bool
#include "mc_utils.h"

template <typename T>
[[kernel]] void ternary_where_contig(device const bool* cond [[buffer(0)]],
                                     device const T* a [[buffer(1)]],
                                     device const T* b [[buffer(2)]],
                                     device T* out [[buffer(3)]],
                                     constant mc_contig_args& args [[buffer(4)]],
                                     uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  out[gid] = cond[gid] ? a[gid] : b[gid];
}

template <typename T>
[[kernel]] void ternary_where_strided(device const bool* cond [[buffer(0)]],
                                      device const T* a [[buffer(1)]],
                                      device const T* b [[buffer(2)]],
                                      device T* out [[buffer(3)]],
                                      constant mc_strided_args& args [[buffer(4)]],
                                      uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  const int64_t ic = args.in_offset[0] + mc_strided_offset(gid, args.shape, args.in_strides[0], args.ndim);
  const int64_t ia = args.in_offset[1] + mc_strided_offset(gid, args.shape, args.in_strides[1], args.ndim);
  const int64_t ib = args.in_offset[2] + mc_strided_offset(gid, args.shape, args.in_strides[2], args.ndim);
  out[gid] = cond[ic] ? a[ia] : b[ib];
}

#define MC_WHERE(T, dt)                                                                  \
  MC_INSTANTIATE(MC_KERNEL_NAME(ternary, where, dt), ternary_where_contig<T>)           \
  MC_INSTANTIATE(MC_KERNEL_NAME(ternary, where_strided, dt), ternary_where_strided<T>)

MC_WHERE(float, f32)
MC_WHERE(half, f16)
MC_WHERE(bfloat, bf16)
MC_WHERE(int, i32)
MC_WHERE(long, i64)
MC_WHERE(uint, u32)
MC_WHERE(uchar, u8)
MC_WHERE(bool, bool)

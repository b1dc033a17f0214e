// copy.metal -- copies with a dtype cast and/or a change of layout.
//
// Kernels (the variant names the source dtype, the dtype suffix the destination):
//   copy_contig_from_<src>_<dst>   contiguous -> contiguous cast:
//                                  buffers (in, out, mc_contig_args), dispatchThreads(n)
//   copy_strided_from_<src>_<dst>  strided -> strided (in_strides[0]/in_offset[0] and
//                                  out_strides/out_offset), e.g. a transpose into a contiguous
//                                  buffer: buffers (in, out, mc_strided_args), dispatchThreads(n)
// Every pair of f32 f16 bf16 i32 i64 u32 u8 i8 i16 bool. Casts follow C: float -> int truncates
// toward zero (out-of-range values are undefined, as on the GPU), x -> bool is x != 0,
// int -> narrower int wraps.
#include "mc_utils.h"

template <typename S, typename D>
[[kernel]] void copy_contig(device const S* in [[buffer(0)]],
                            device D* out [[buffer(1)]],
                            constant mc_contig_args& args [[buffer(2)]],
                            uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  out[gid] = static_cast<D>(in[gid]);
}

template <typename S, typename D>
[[kernel]] void copy_strided(device const S* in [[buffer(0)]],
                             device D* out [[buffer(1)]],
                             constant mc_strided_args& args [[buffer(2)]],
                             uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  const int64_t src = args.in_offset[0] + mc_strided_offset(gid, args.shape, args.in_strides[0], args.ndim);
  const int64_t dst = args.out_offset + mc_strided_offset(gid, args.shape, args.out_strides, args.ndim);
  out[dst] = static_cast<D>(in[src]);
}

#define MC_COPY(S, sdt, D, ddt)                                                               \
  MC_INSTANTIATE(MC_KERNEL_NAME(copy, contig_from_##sdt, ddt), copy_contig<S, D>)            \
  MC_INSTANTIATE(MC_KERNEL_NAME(copy, strided_from_##sdt, ddt), copy_strided<S, D>)

#define MC_COPY_FROM(S, sdt)       \
  MC_COPY(S, sdt, float, f32)      \
  MC_COPY(S, sdt, half, f16)       \
  MC_COPY(S, sdt, bfloat, bf16)    \
  MC_COPY(S, sdt, int, i32)        \
  MC_COPY(S, sdt, long, i64)       \
  MC_COPY(S, sdt, uint, u32)       \
  MC_COPY(S, sdt, uchar, u8)       \
  MC_COPY(S, sdt, char, i8)        \
  MC_COPY(S, sdt, short, i16)      \
  MC_COPY(S, sdt, bool, bool)

MC_COPY_FROM(float, f32)
MC_COPY_FROM(half, f16)
MC_COPY_FROM(bfloat, bf16)
MC_COPY_FROM(int, i32)
MC_COPY_FROM(long, i64)
MC_COPY_FROM(uint, u32)
MC_COPY_FROM(uchar, u8)
MC_COPY_FROM(char, i8)
MC_COPY_FROM(short, i16)
MC_COPY_FROM(bool, bool)

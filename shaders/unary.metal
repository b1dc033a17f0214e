// unary.metal -- elementwise y = op(x).
//
// Kernels (see mc_kernel_args.h for the naming rule):
//   unary_<op>_<dtype>          contiguous x, y: buffers (x, y, mc_contig_args), dispatchThreads(n)
//   unary_<op>_strided_<dtype>  strided/broadcast x (in_strides[0], in_offset[0]), contiguous y:
//                               buffers (x, y, mc_strided_args), dispatchThreads(n)
// Float ops (f32 f16 bf16): neg abs sign square sqrt rsqrt reciprocal exp log sin cos tanh
//   sigmoid relu silu gelu gelu_tanh floor ceil. They compute in float and round once.
// Integer ops (i32 i64): neg abs sign square.  logical_not: bool.
#include "mc_utils.h"
#include "mc_elementwise_ops.h"


template <typename T, typename Op>
[[kernel]] void unary_contig(device const T* x [[buffer(0)]],
                             device T* y [[buffer(1)]],
                             constant mc_contig_args& args [[buffer(2)]],
                             uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  y[gid] = static_cast<T>(Op()(x[gid]));
}

template <typename T, typename Op>
[[kernel]] void unary_strided(device const T* x [[buffer(0)]],
                              device T* y [[buffer(1)]],
                              constant mc_strided_args& args [[buffer(2)]],
                              uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  const int64_t src = args.in_offset[0] + mc_strided_offset(gid, args.shape, args.in_strides[0], args.ndim);
  y[gid] = static_cast<T>(Op()(x[src]));
}

#define MC_UNARY(op, Op, T, dt)                                                 \
  MC_INSTANTIATE(MC_KERNEL_NAME(unary, op, dt), unary_contig<T, Op>)           \
  MC_INSTANTIATE(MC_KERNEL_NAME(unary, op##_strided, dt), unary_strided<T, Op>)

#define MC_UNARY_FLOATS(op, Op) \
  MC_UNARY(op, Op, float, f32)  \
  MC_UNARY(op, Op, half, f16)   \
  MC_UNARY(op, Op, bfloat, bf16)

#define MC_UNARY_INTS(op, Op) \
  MC_UNARY(op, Op, int, i32)  \
  MC_UNARY(op, Op, long, i64)

MC_UNARY_FLOATS(neg, Neg)
MC_UNARY_FLOATS(abs, Abs)
MC_UNARY_FLOATS(sign, Sign)
MC_UNARY_FLOATS(square, Square)
MC_UNARY_FLOATS(sqrt, Sqrt)
MC_UNARY_FLOATS(rsqrt, Rsqrt)
MC_UNARY_FLOATS(reciprocal, Reciprocal)
MC_UNARY_FLOATS(exp, Exp)
MC_UNARY_FLOATS(log, Log)
MC_UNARY_FLOATS(sin, Sin)
MC_UNARY_FLOATS(cos, Cos)
MC_UNARY_FLOATS(tanh, Tanh)
MC_UNARY_FLOATS(sigmoid, Sigmoid)
MC_UNARY_FLOATS(relu, Relu)
MC_UNARY_FLOATS(silu, Silu)
MC_UNARY_FLOATS(gelu, Gelu)
MC_UNARY_FLOATS(gelu_tanh, GeluTanh)
MC_UNARY_FLOATS(floor, Floor)
MC_UNARY_FLOATS(ceil, Ceil)

MC_UNARY_INTS(neg, Neg)
MC_UNARY_INTS(abs, Abs)
MC_UNARY_INTS(sign, Sign)
MC_UNARY_INTS(square, Square)

MC_UNARY(logical_not, LogicalNot, bool, bool)

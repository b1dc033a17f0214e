// binary.metal -- elementwise c = op(a, b).
//
// Kernels (see mc_kernel_args.h for the naming rule; dtype = the inputs' dtype):
//   binary_<op>_<dtype>          contiguous a, b, c of n elements:
//                                buffers (a, b, c, mc_contig_args), dispatchThreads(n)
//   binary_<op>_strided_<dtype>  a and b strided / broadcast (in_strides[0], in_strides[1]),
//                                c contiguous: buffers (a, b, c, mc_strided_args), dispatchThreads(n)
// Arithmetic (c has the inputs' dtype):
//   add sub mul div max min pow   f32 f16 bf16 (computed in float, rounded once)
//   add sub mul max min           i32 i64 u32 (wrapping, as NumPy)
// Comparisons (c is bool): eq ne lt le gt ge   f32 f16 bf16 i32 i64 u32
// max/min propagate NaN from either operand, as NumPy's maximum/minimum (not Metal's fmax/fmin).
#include "mc_utils.h"
#include "mc_elementwise_ops.h"

struct Eq { template <typename T> bool operator()(T a, T b) const { return a == b; } };
struct Ne { template <typename T> bool operator()(T a, T b) const { return a != b; } };
struct Lt { template <typename T> bool operator()(T a, T b) const { return a < b; } };
struct Le { template <typename T> bool operator()(T a, T b) const { return a <= b; } };
struct Gt { template <typename T> bool operator()(T a, T b) const { return a > b; } };
struct Ge { template <typename T> bool operator()(T a, T b) const { return a >= b; } };

// U is the output type: T for arithmetic, bool for comparisons.
template <typename T, typename U, typename Op>
[[kernel]] void binary_contig(device const T* a [[buffer(0)]],
                              device const T* b [[buffer(1)]],
                              device U* c [[buffer(2)]],
                              constant mc_contig_args& args [[buffer(3)]],
                              uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  c[gid] = static_cast<U>(Op()(a[gid], b[gid]));
}

template <typename T, typename U, typename Op>
[[kernel]] void binary_strided(device const T* a [[buffer(0)]],
                               device const T* b [[buffer(1)]],
                               device U* c [[buffer(2)]],
                               constant mc_strided_args& args [[buffer(3)]],
                               uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  const int64_t ia = args.in_offset[0] + mc_strided_offset(gid, args.shape, args.in_strides[0], args.ndim);
  const int64_t ib = args.in_offset[1] + mc_strided_offset(gid, args.shape, args.in_strides[1], args.ndim);
  c[gid] = static_cast<U>(Op()(a[ia], b[ib]));
}

#define MC_BINARY(op, Op, T, U, dt)                                                     \
  MC_INSTANTIATE(MC_KERNEL_NAME(binary, op, dt), binary_contig<T, U, Op>)              \
  MC_INSTANTIATE(MC_KERNEL_NAME(binary, op##_strided, dt), binary_strided<T, U, Op>)

#define MC_BINARY_FLOATS(op, Op)      \
  MC_BINARY(op, Op, float, float, f32) \
  MC_BINARY(op, Op, half, half, f16)   \
  MC_BINARY(op, Op, bfloat, bfloat, bf16)

#define MC_BINARY_INTS(op, Op)     \
  MC_BINARY(op, Op, int, int, i32) \
  MC_BINARY(op, Op, long, long, i64) \
  MC_BINARY(op, Op, uint, uint, u32)

#define MC_COMPARE(op, Op)                \
  MC_BINARY(op, Op, float, bool, f32)     \
  MC_BINARY(op, Op, half, bool, f16)      \
  MC_BINARY(op, Op, bfloat, bool, bf16)   \
  MC_BINARY(op, Op, int, bool, i32)       \
  MC_BINARY(op, Op, long, bool, i64)      \
  MC_BINARY(op, Op, uint, bool, u32)

MC_BINARY_FLOATS(add, FAdd)
MC_BINARY_FLOATS(sub, FSub)
MC_BINARY_FLOATS(mul, FMul)
MC_BINARY_FLOATS(div, Div)
MC_BINARY_FLOATS(max, FMax)
MC_BINARY_FLOATS(min, FMin)
MC_BINARY_FLOATS(pow, Pow)

MC_BINARY_INTS(add, Add)
MC_BINARY_INTS(sub, Sub)
MC_BINARY_INTS(mul, Mul)
MC_BINARY_INTS(max, Max)
MC_BINARY_INTS(min, Min)

MC_COMPARE(eq, Eq)
MC_COMPARE(ne, Ne)
MC_COMPARE(lt, Lt)
MC_COMPARE(le, Le)
MC_COMPARE(gt, Gt)
MC_COMPARE(ge, Ge)

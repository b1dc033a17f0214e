// program.metal -- a fused elementwise region in one dispatch: y = f(in0, ..., in23).
//
// Kernels: program_run_<dtype> (f32 f16 bf16), buffers (in0 .. in23, y, mc_program_args),
// dispatchThreads(n). Unused input bindings must still be bound (any buffer; never read).
//
// The executor turns a connected set of float elementwise nodes with one output shape (inputs
// may broadcast) into a small register program (mc_program.h); this one kernel runs any
// such program, so a new region structure compiles nothing: a 20-op chain is one dispatch and
// one pass over memory. Each thread loads the elements it needs, computes in float registers
// (the functors of mc_elementwise_ops.h, the same as unary.metal/binary.metal) and rounds once.
// The opcode numbers are shared with the host (metalcandle/_fusion.pyx REGION_OPCODES; a test
// compares the two).
#include "mc_program.h"

template <typename T>
[[kernel]] void program_run(
    device const uchar* in0 [[buffer(0)]], device const uchar* in1 [[buffer(1)]],
    device const uchar* in2 [[buffer(2)]], device const uchar* in3 [[buffer(3)]],
    device const uchar* in4 [[buffer(4)]], device const uchar* in5 [[buffer(5)]],
    device const uchar* in6 [[buffer(6)]], device const uchar* in7 [[buffer(7)]],
    device const uchar* in8 [[buffer(8)]], device const uchar* in9 [[buffer(9)]],
    device const uchar* in10 [[buffer(10)]], device const uchar* in11 [[buffer(11)]],
    device const uchar* in12 [[buffer(12)]], device const uchar* in13 [[buffer(13)]],
    device const uchar* in14 [[buffer(14)]], device const uchar* in15 [[buffer(15)]],
    device const uchar* in16 [[buffer(16)]], device const uchar* in17 [[buffer(17)]],
    device const uchar* in18 [[buffer(18)]], device const uchar* in19 [[buffer(19)]],
    device const uchar* in20 [[buffer(20)]], device const uchar* in21 [[buffer(21)]],
    device const uchar* in22 [[buffer(22)]], device const uchar* in23 [[buffer(23)]],
    device T* y [[buffer(24)]],
    constant mc_program_args& args [[buffer(25)]],
    uint gid [[thread_position_in_grid]]) {
  if (gid >= args.n) {
    return;
  }
  device const uchar* ins[MC_PROGRAM_MAX_INPUTS] = {
      in0, in1, in2, in3, in4, in5, in6, in7, in8, in9, in10, in11,
      in12, in13, in14, in15, in16, in17, in18, in19, in20, in21, in22, in23};
  float r[MC_PROGRAM_REGS];
  int dst = 0;
  for (int pc = 0; pc < args.n_code; ++pc) {
    const uint8_t op = args.code[pc][0];
    dst = args.code[pc][1];
    const int a = args.code[pc][2], b = args.code[pc][3], c = args.code[pc][4];
    float v = 0.0f;
    switch (op) {
      case MC_OP_LOAD: {
        const int64_t off = args.contiguous ? int64_t(gid)
            : mc_strided_offset(gid, args.shape, args.strides[a], args.ndim);
        v = mc_program_load<T>(ins[a], off, (args.in_bool >> a) & 1u);
        break;
      }
      case MC_OP_CONST: v = args.consts[a]; break;
      case MC_OP_NEG: v = Neg()(r[a]); break;
      case MC_OP_ABS: v = Abs()(r[a]); break;
      case MC_OP_SIGN: v = Sign()(r[a]); break;
      case MC_OP_SQUARE: v = Square()(r[a]); break;
      case MC_OP_SQRT: v = Sqrt()(r[a]); break;
      case MC_OP_RSQRT: v = Rsqrt()(r[a]); break;
      case MC_OP_RECIPROCAL: v = Reciprocal()(r[a]); break;
      case MC_OP_EXP: v = Exp()(r[a]); break;
      case MC_OP_LOG: v = Log()(r[a]); break;
      case MC_OP_SIN: v = Sin()(r[a]); break;
      case MC_OP_COS: v = Cos()(r[a]); break;
      case MC_OP_TANH: v = Tanh()(r[a]); break;
      case MC_OP_SIGMOID: v = Sigmoid()(r[a]); break;
      case MC_OP_RELU: v = Relu()(r[a]); break;
      case MC_OP_SILU: v = Silu()(r[a]); break;
      case MC_OP_GELU: v = Gelu()(r[a]); break;
      case MC_OP_GELU_APPROX: v = GeluTanh()(r[a]); break;
      case MC_OP_FLOOR: v = Floor()(r[a]); break;
      case MC_OP_CEIL: v = Ceil()(r[a]); break;
      case MC_OP_ADD: v = FAdd()(r[a], r[b]); break;
      case MC_OP_SUB: v = FSub()(r[a], r[b]); break;
      case MC_OP_MUL: v = FMul()(r[a], r[b]); break;
      case MC_OP_DIV: v = Div()(r[a], r[b]); break;
      case MC_OP_MAX: v = FMax()(r[a], r[b]); break;
      case MC_OP_MIN: v = FMin()(r[a], r[b]); break;
      case MC_OP_POW: v = Pow()(r[a], r[b]); break;
      case MC_OP_WHERE: v = r[a] != 0.0f ? r[b] : r[c]; break;
      default: v = NAN; break;   // the host never emits other opcodes
    }
    r[dst] = v;
  }
  y[gid] = static_cast<T>(r[dst]);
}

MC_INSTANTIATE(MC_KERNEL_NAME(program, run, f32), program_run<float>)
MC_INSTANTIATE(MC_KERNEL_NAME(program, run, f16), program_run<half>)
MC_INSTANTIATE(MC_KERNEL_NAME(program, run, bf16), program_run<bfloat>)

// mc_program.h -- the register program of a fused elementwise region: its argument struct,
// opcodes and element loader, shared by the interpreter kernel (program.metal) and the kernels
// generated per region structure (metalcandle/backends/metal_codegen.py). The host packs the
// struct in metal_backend.py (_PROGRAM_ARGS); tests/sim/test_program.py checks the opcodes.
#ifndef MC_PROGRAM_H
#define MC_PROGRAM_H
#include "mc_utils.h"
#include "mc_elementwise_ops.h"

#define MC_PROGRAM_MAX_INPUTS 24
#define MC_PROGRAM_MAX_CODE 96
#define MC_PROGRAM_MAX_CONSTS 32
#define MC_PROGRAM_REGS 32

// One instruction: op, dst register, operands a, b, c (registers; for LOAD a = input index,
// for CONST a = constant index), 3 bytes padding.
typedef struct mc_program_args {
  int64_t n;                     // output elements
  int32_t ndim;                  // 1..MC_MAX_DIMS
  int32_t n_inputs;
  int32_t n_code;                // instructions; the last one's dst register is the output
  int32_t contiguous;            // every input is a full-shape contiguous array: index = gid
  int64_t shape[MC_MAX_DIMS];
  int64_t strides[MC_PROGRAM_MAX_INPUTS][MC_MAX_DIMS];  // element strides, 0 broadcasts
  uint32_t in_bool;              // bit k: input k is bool (one byte per element)
  float consts[MC_PROGRAM_MAX_CONSTS];
  uint8_t code[MC_PROGRAM_MAX_CODE][8];
  uint32_t reserved;
} mc_program_args;

enum {
  MC_OP_LOAD = 0, MC_OP_CONST = 1,
  MC_OP_NEG = 2, MC_OP_ABS = 3, MC_OP_SIGN = 4, MC_OP_SQUARE = 5, MC_OP_SQRT = 6,
  MC_OP_RSQRT = 7, MC_OP_RECIPROCAL = 8, MC_OP_EXP = 9, MC_OP_LOG = 10, MC_OP_SIN = 11,
  MC_OP_COS = 12, MC_OP_TANH = 13, MC_OP_SIGMOID = 14, MC_OP_RELU = 15, MC_OP_SILU = 16,
  MC_OP_GELU = 17, MC_OP_GELU_APPROX = 18, MC_OP_FLOOR = 19, MC_OP_CEIL = 20,
  MC_OP_ADD = 21, MC_OP_SUB = 22, MC_OP_MUL = 23, MC_OP_DIV = 24, MC_OP_MAX = 25,
  MC_OP_MIN = 26, MC_OP_POW = 27, MC_OP_WHERE = 28,
};

template <typename T>
inline float mc_program_load(device const uchar* p, int64_t off, bool is_bool) {
  return is_bool ? (p[off] != 0 ? 1.0f : 0.0f) : float(((device const T*)p)[off]);
}

#endif  // MC_PROGRAM_H

"""Optional generated Metal kernels for elementwise regions: one MSL kernel per region structure.

The default runs every region with the shipped interpreter kernel (``program_run_<dt>``,
shaders/program.metal): nothing to compile at run time. With ``mc.metal.set_region_codegen(True)``
each region *structure* (its program, dtype and which inputs are bool) gets straight-line MSL of
its own, compiled once per process and cached; the constants still travel in the argument buffer,
so a changed scalar reuses the kernel. The generated code calls the same functors
(mc_elementwise_ops.h) and takes the same argument struct (mc_program.h) as the interpreter, so the
two compute the same values. Which is faster on a real GPU is a question only a Mac can answer
(docs/fusion.md); a failed compile falls back to the interpreter.
"""
import hashlib
import os

from metalcandle import _fusion

# opcode -> MSL expression over registers a, b, c (the cases of program.metal's switch)
_UNARY = {"negative": "Neg", "abs": "Abs", "sign": "Sign", "square": "Square", "sqrt": "Sqrt",
          "rsqrt": "Rsqrt", "reciprocal": "Reciprocal", "exp": "Exp", "log": "Log", "sin": "Sin",
          "cos": "Cos", "tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "silu": "Silu",
          "gelu": "Gelu", "gelu_approx": "GeluTanh", "floor": "Floor", "ceil": "Ceil"}
_BINARY = {"add": "FAdd", "subtract": "FSub", "multiply": "FMul", "divide": "Div",
           "maximum": "FMax", "minimum": "FMin", "power": "Pow"}
_MSL_TYPE = {"f32": "float", "f16": "half", "bf16": "bfloat"}


def _expressions():
    ex = {}
    for name, code in _fusion.REGION_OPCODES.items():
        if name in _UNARY:
            ex[code] = f"{_UNARY[name]}()(r{{a}})"
        elif name in _BINARY:
            ex[code] = f"{_BINARY[name]}()(r{{a}}, r{{b}})"
        else:   # where
            ex[code] = "r{a} != 0.0f ? r{b} : r{c}"
    return ex


_EXPR = _expressions()


def kernel_name(code, suffix, in_bool, n_inputs):
    key = b"%s|%d|%d|" % (suffix.encode(), in_bool, n_inputs) + code
    return "region_" + hashlib.sha1(key).hexdigest()[:20]


def kernel_source(name, code, suffix, in_bool, n_inputs):
    """MSL of one region kernel: buffers in0..in{n-1}, y, mc_program_args; dispatchThreads(n)."""
    T = _MSL_TYPE[suffix]
    params = [f"device const {'uchar' if in_bool >> k & 1 else T}* in{k} [[buffer({k})]]"
              for k in range(n_inputs)]
    params += [f"device {T}* y [[buffer({n_inputs})]]",
               f"constant mc_program_args& args [[buffer({n_inputs + 1})]]",
               "uint gid [[thread_position_in_grid]]"]
    body = ["  if (gid >= args.n) {", "    return;", "  }"]
    regs = sorted({code[pc + 1] for pc in range(0, len(code), 8)})
    body.append("  float " + ", ".join(f"r{r} = 0.0f" for r in regs) + ";")
    dst = 0
    for pc in range(0, len(code), 8):
        op, dst, a, b, c = code[pc:pc + 5]
        if op == _fusion.RC_LOAD:
            off = (f"(args.contiguous ? int64_t(gid) : "
                   f"mc_strided_offset(gid, args.shape, args.strides[{a}], args.ndim))")
            v = f"(in{a}[{off}] != 0 ? 1.0f : 0.0f)" if in_bool >> a & 1 else f"float(in{a}[{off}])"
        elif op == _fusion.RC_CONST:
            v = f"args.consts[{a}]"
        else:
            v = _EXPR[op].format(a=a, b=b, c=c)
        body.append(f"  r{dst} = {v};")
    body.append(f"  y[gid] = static_cast<{T}>(r{dst});")
    return ('#include "mc_program.h"\n\n'
            f"kernel void {name}(\n    " + ",\n    ".join(params) + ") {\n"
            + "\n".join(body) + "\n}\n")


class RegionKernels:
    """The generated kernels of one device: name per structure, compiled on first use."""

    def __init__(self, dev, shader_dir):
        self.dev = dev
        self.shader_dir = shader_dir
        self.ready = set()
        self.failed = set()
        self.compiled = 0

    def get(self, code, suffix, in_bool, n_inputs):
        """The kernel name for this structure, or None (compile failed: use the interpreter)."""
        name = kernel_name(code, suffix, in_bool, n_inputs)
        if name in self.ready:
            return name
        if name in self.failed:
            return None
        from metalcandle._metal import shader_source
        from metalcandle.errors import ShaderCompileError
        # mc_program.h with its own includes inlined, then the kernel (no include path in Metal)
        head = shader_source(os.path.join(self.shader_dir, "mc_program.h"))
        src = kernel_source(name, code, suffix, in_bool, n_inputs)
        src = head + src.replace('#include "mc_program.h"\n', "")
        try:
            self.dev.load_library(src, name + ".metal")
        except ShaderCompileError:
            self.failed.add(name)
            return None
        self.ready.add(name)
        self.compiled += 1
        return name

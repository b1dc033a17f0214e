"""shaders/program.metal (the fused elementwise-region kernel) in the simulator: programs run by
the kernel equal the NumPy interpreter of the same program (backends/np_region.py) and a float64
reference; the opcode table matches the host's."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest

from ._helpers import FLOATS, SHADER_DIR, as_f64, dtype_of, poisoned, random_array

pytestmark = pytest.mark.sim
SHADERS = ["program"]

MAX_INPUTS, MAX_DIMS = 24, 8
ARGS = struct.Struct(f"<q4i{MAX_DIMS}q{MAX_INPUTS * MAX_DIMS}qI32f768sI")
# MSL enum name -> graph op name (REGION_OPCODES keys)
MSL_NAMES = {"NEG": "negative", "ABS": "abs", "SIGN": "sign", "SQUARE": "square", "SQRT": "sqrt",
             "RSQRT": "rsqrt", "RECIPROCAL": "reciprocal", "EXP": "exp", "LOG": "log",
             "SIN": "sin", "COS": "cos", "TANH": "tanh", "SIGMOID": "sigmoid", "RELU": "relu",
             "SILU": "silu", "GELU": "gelu", "GELU_APPROX": "gelu_approx", "FLOOR": "floor",
             "CEIL": "ceil", "ADD": "add", "SUB": "subtract", "MUL": "multiply", "DIV": "divide",
             "MAX": "maximum", "MIN": "minimum", "POW": "power", "WHERE": "where"}
SUFFIX_CODE = {"f16": 7, "bf16": 8, "f32": 9}     # dtype codes of the graph (DT_* enum)


def test_opcodes_match_the_host_table():
    from metalcandle import _fusion
    src = (SHADER_DIR / "mc_program.h").read_text()
    enum = {m[0]: int(m[1]) for m in re.findall(r"MC_OP_(\w+) = (\d+)", src)}
    assert enum.pop("LOAD") == _fusion.RC_LOAD and enum.pop("CONST") == _fusion.RC_CONST
    assert {MSL_NAMES[k]: v for k, v in enum.items()} == _fusion.REGION_OPCODES


class Node:
    """The attributes of an OP_REGION node the interpreter reads."""

    def __init__(self, code, consts, shape, suffix):
        self._aux = (bytes(code), tuple(consts))
        self.shape = tuple(shape)
        self._dtype_code = SUFFIX_CODE[suffix]


def op(name):
    from metalcandle import _fusion
    return _fusion.REGION_OPCODES[name]


def assemble(instrs):
    return b"".join(bytes([o, d, a, b, c, 0, 0, 0]) for o, d, a, b, c in
                    [(i + (0, 0, 0))[:5] for i in instrs])


def pack_args(suffix, code, consts, shape, ins):
    """mc_program_args of the program over inputs ``ins`` broadcast to ``shape``."""
    n = int(np.prod(shape))
    strides, in_bool = [], 0
    for k, a in enumerate(ins):
        in_bool |= (a.dtype == np.bool_) << k
        strides += [s // a.itemsize for s in np.broadcast_to(a, shape).strides]
        strides += [0] * (MAX_DIMS - len(shape))
    strides += [0] * (MAX_INPUTS * MAX_DIMS - len(strides))
    consts32 = np.asarray(consts, np.float64).astype(dtype_of(suffix)).astype(np.float32)
    contig = all(a.shape == tuple(shape) for a in ins)
    args = ARGS.pack(n, len(shape), len(ins), len(code) // 8, int(contig),
                     *(list(shape) + [0] * (MAX_DIMS - len(shape))), *strides, in_bool,
                     *(list(consts32) + [0.0] * (32 - len(consts))), code, 0)
    return np.frombuffer(args, np.uint8).copy()


def run_kernel(shaders, suffix, code, consts, shape, ins):
    n = int(np.prod(shape))
    out = poisoned(shape, dtype_of(suffix))
    bufs = list(ins) + [ins[0]] * (MAX_INPUTS - len(ins))
    shaders["program"].kernel(f"program_run_{suffix}")(
        *bufs, out, pack_args(suffix, code, consts, shape, ins), threads=n, threadgroup=64)
    return out


def interpret(code, consts, shape, suffix, ins):
    from metalcandle.backends import numpy_backend
    from metalcandle import _graph
    impl = numpy_backend.IMPLS[_graph.op_names.index("elementwise_region")]
    return impl(Node(code, consts, shape, suffix), ins, None)


@pytest.mark.parametrize("suffix", FLOATS)
def test_broadcast_program_with_where_and_constants(shaders, rng, suffix):
    # y = where(c, exp(a * 0.5) + b, tanh(b) - 2.0 / a); a (5, 7), b (7,), c (5, 1) bool
    shape = (5, 7)
    a = random_array(rng, shape, suffix, 0.5, 2.0)
    b = random_array(rng, (7,), suffix)
    c = rng.random((5, 1)) < 0.5
    code = assemble([
        (0, 0, 0), (1, 1, 0), (op("multiply"), 0, 0, 1), (op("exp"), 0, 0),
        (0, 1, 1), (op("add"), 2, 0, 1), (op("tanh"), 3, 1), (1, 4, 1), (0, 5, 0),
        (op("divide"), 4, 4, 5), (op("subtract"), 3, 3, 4), (0, 6, 2),
        (op("where"), 0, 6, 2, 3)])
    consts = (0.5, 2.0)
    out = run_kernel(shaders, suffix, code, consts, shape, [a, b, c])
    expect = interpret(code, consts, shape, suffix, [a, b, c])
    a64, b64 = as_f64(a), as_f64(b)
    ref = np.where(c, np.exp(a64 * 0.5) + b64, np.tanh(b64) - 2.0 / a64)
    tol = {"f32": 2e-6, "f16": 2e-3, "bf16": 1.6e-2}[suffix]
    np.testing.assert_allclose(as_f64(out), ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(as_f64(out), as_f64(expect), rtol=tol, atol=tol)


def test_every_opcode_against_the_interpreter(shaders, rng):
    from metalcandle import _fusion
    shape = (3, 41)
    x = random_array(rng, shape, "f32", 0.2, 2.5)
    y = random_array(rng, shape, "f32", -2.0, 2.0)
    for name, code_ in sorted(_fusion.REGION_OPCODES.items()):
        if name == "where":
            instrs = [(0, 0, 0), (0, 1, 1), (code_, 2, 1, 0, 1)]    # where(y != 0, x, y)
        elif name in ("add", "subtract", "multiply", "divide", "maximum", "minimum", "power"):
            instrs = [(0, 0, 0), (0, 1, 1), (code_, 2, 0, 1)]
        else:
            instrs = [(0, 0, 0), (code_, 1, 0), (0, 2, 1), (op("add"), 3, 1, 2)]
        code = assemble(instrs)
        out = run_kernel(shaders, "f32", code, (), shape, [x, y])
        expect = interpret(code, (), shape, "f32", [x, y])
        np.testing.assert_allclose(out, expect, rtol=3e-6, atol=1e-6, err_msg=name)


def test_generated_kernel_equals_the_interpreter_for_every_opcode(rng, tmp_path):
    # backends/metal_codegen.py: the straight-line kernel of one program using every opcode
    from metalcandle import _fusion
    from metalcandle.backends import metal_codegen
    from tests.support import mslsim
    shape = (4, 37)
    x = random_array(rng, shape, "f32", 0.2, 2.5)
    y = random_array(rng, (37,), "f32", -2.0, 2.0)
    c = rng.random((4, 1)) < 0.5
    instrs = [(0, 0, 0), (0, 1, 1), (1, 5, 1)]               # r0 = x, r1 = y, r5 = 0
    for name, code_ in sorted(_fusion.REGION_OPCODES.items()):
        if name == "where":
            instrs += [(0, 3, 2), (code_, 2, 3, 0, 1)]
        elif name in ("add", "subtract", "multiply", "divide", "maximum", "minimum", "power"):
            instrs += [(code_, 2, 0, 1)]
        else:
            instrs += [(code_, 2, 0)]
        instrs += [(1, 3, 0), (op("multiply"), 2, 2, 3), (op("add"), 5, 5, 2)]  # r5 += k * f(x, y)
    code = assemble(instrs)
    consts = (0.125, 0.0)
    in_bool = 0b100
    name = metal_codegen.kernel_name(code, "f32", in_bool, 3)
    for h in SHADER_DIR.glob("*.h"):
        (tmp_path / h.name).write_text(h.read_text())
    src = tmp_path / f"{name}.metal"
    src.write_text(metal_codegen.kernel_source(name, code, "f32", in_bool, 3))
    kernel = mslsim.compile_file(src).kernel(name)
    n = int(np.prod(shape))
    out = poisoned(shape, np.float32)
    kernel(x, y, c, out, pack_args("f32", code, consts, shape, [x, y, c]), threads=n,
           threadgroup=64)
    expect = interpret(code, consts, shape, "f32", [x, y, c])
    np.testing.assert_allclose(out, expect, rtol=3e-6, atol=1e-6)

"""NumPy interpreter of an elementwise-region program (OP_REGION; see _fusion_regions.pxi and
shaders/program.metal): the Metal backend's fallback and the oracle the kernel is tested against.

Like the kernel, it loads every input as float32, computes every instruction in float32 and rounds
to the node's dtype once at the end.
"""
import numpy as np

from metalcandle import _fusion
from metalcandle.backends.np_dtypes import NP

_F32 = np.float32


def _unary_table(unary):
    f = {"negative": np.negative, "abs": np.abs, "sign": np.sign, "square": np.square,
         "sqrt": np.sqrt, "reciprocal": np.reciprocal, "exp": np.exp, "log": np.log,
         "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "floor": np.floor, "ceil": np.ceil}
    for name in ("rsqrt", "sigmoid", "relu", "silu", "gelu", "gelu_approx"):
        f[name] = unary[name]
    return f


def _binary_table():
    return {"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
            "divide": np.true_divide, "maximum": np.maximum, "minimum": np.minimum,
            "power": np.power}


def region_consts(node):
    """The program's constants as the unfused ops see them: rounded to the node's dtype first."""
    consts = node._aux[1]
    return np.asarray(consts, dtype=np.float64).astype(NP[node._dtype_code]).astype(_F32)


def make_impl(unary):
    ops = {}
    un, bi = _unary_table(unary), _binary_table()
    for name, code in _fusion.REGION_OPCODES.items():
        ops[code] = (1, un[name]) if name in un else (2, bi[name]) if name in bi else (3, None)

    def impl(node, ins, out):
        code = node._aux[0]
        consts = region_consts(node)
        shape = node.shape
        regs = {}
        dst = 0
        for pc in range(0, len(code), 8):
            op, dst, a, b, c = code[pc:pc + 5]
            if op == _fusion.RC_LOAD:
                v = np.asarray(ins[a]).astype(_F32)
            elif op == _fusion.RC_CONST:
                v = consts[a]
            else:
                arity, fn = ops[op]
                if arity == 1:
                    x = np.asarray(regs[a], dtype=_F32)
                    v = fn(x.reshape(1)).reshape(()) if x.ndim == 0 else fn(x)
                elif arity == 2:
                    v = fn(regs[a], regs[b])
                else:
                    v = np.where(regs[a] != 0, regs[b], regs[c])
            regs[dst] = np.asarray(v, dtype=_F32)
        r = np.broadcast_to(regs[dst], shape)
        dt = NP[node._dtype_code]
        if out is not None:
            np.copyto(out, r, casting="unsafe")
            return out
        return r.astype(dt)
    return impl

"""NumPy implementations of every primitive: the CPU path, the fallback and the test oracle.

Each entry of ``IMPLS`` is ``impl(node, inputs, out) -> ndarray``: ``inputs`` are the input buffers,
``out`` is either None or a dying input buffer of the output's shape and dtype that the executor
donates (write into it). Half types compute and accumulate in float32.
"""
import math
import warnings

import numpy as np

from metalcandle import _graph as g
from metalcandle.backends.np_dtypes import NP, COMPUTE, BF16, up
from metalcandle.backends import np_ops, np_region

_OPS = {name: i for i, name in enumerate(g.op_names)}
IMPLS = [None] * len(g.op_names)


def _reg(name):
    def deco(fn):
        IMPLS[_OPS[name]] = fn
        return fn
    return deco


def _finish(r, node, out):
    # Cast a computed result to the node's storage dtype, into the donated buffer when given.
    dt = NP[node._dtype_code]
    if out is not None:
        if r is not out:
            np.copyto(out, r, casting="unsafe")
        return out
    return r if r.dtype == dt else r.astype(dt)


# ---------------------------------------------------------------- binary elementwise
_BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.true_divide,
    "floor_divide": np.floor_divide, "remainder": np.remainder, "power": np.power,
    "maximum": np.maximum, "minimum": np.minimum, "equal": np.equal, "not_equal": np.not_equal,
    "less": np.less, "less_equal": np.less_equal, "greater": np.greater,
    "greater_equal": np.greater_equal, "logical_and": np.logical_and,
    "logical_or": np.logical_or,
}
F_SCALAR, F_REFLECTED = 1, 2


def _make_binary(uf):
    def impl(node, ins, out):
        ct = COMPUTE[node._aux]
        a = ins[0]
        if a.dtype != ct:
            a = a.astype(ct)
        flags = node._flags
        if flags & F_SCALAR:
            b = ct.type(node._scalar)
            if flags & F_REFLECTED:
                a, b = b, a
        else:
            b = ins[1]
            if b.dtype != ct:
                b = b.astype(ct)
        if out is not None and out.dtype == ct:
            return uf(a, b, out=out)
        return _finish(uf(a, b), node, out)
    return impl


for _name, _uf in _BINARY.items():
    IMPLS[_OPS[_name]] = _make_binary(_uf)


# ---------------------------------------------------------------- unary elementwise
def _sigmoid(x, out=None):
    r = np.negative(x, out=out)
    np.exp(r, out=r)
    r += 1
    return np.reciprocal(r, out=r)


def _rsqrt(x, out=None):
    r = np.sqrt(x, out=out)
    return np.reciprocal(r, out=r)


_ERF_C = [2 / math.sqrt(math.pi) * c for c in (1, -1 / 3, 1 / 10, -1 / 42, 1 / 216, -1 / 1320,
                                               1 / 9360, -1 / 75600)]


def _erf(x, out=None):
    if x.dtype == np.float64:
        r = np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)
    else:
        # float64 evaluation: a Taylor series near 0 (tiny relative error) and Abramowitz-Stegun
        # 7.1.26 elsewhere (abs error < 1.5e-7 where |erf| > 0.5): exact to float32 rounding.
        z = x.astype(np.float64)
        az = np.abs(z)
        z2 = z * z
        small = np.zeros_like(z)
        for c in reversed(_ERF_C):
            small *= z2
            small += c
        small *= z
        t = 1.0 / (1.0 + 0.3275911 * az)
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                        + t * 1.061405429))))
        big = np.copysign(1.0 - poly * np.exp(-z2), z)
        r = np.where(az < 0.5, small, big)
    if out is not None:
        np.copyto(out, r, casting="unsafe")
        return out
    return r.astype(x.dtype)


def _gelu(x, out=None):
    r = _erf(x * (1 / math.sqrt(2)))
    r += 1
    r *= x
    r *= 0.5
    if out is not None:
        np.copyto(out, r, casting="unsafe")
        return out
    return r


def _gelu_tanh(x, out=None):
    r = x * x
    r *= 0.044715 * x
    r += x
    r *= math.sqrt(2 / math.pi)
    np.tanh(r, out=r)
    r += 1
    r *= x
    r *= 0.5
    if out is not None:
        np.copyto(out, r, casting="unsafe")
        return out
    return r


def _silu(x, out=None):
    s = _sigmoid(x)
    return np.multiply(x, s, out=out if out is not None else s)


def _relu(x, out=None):
    return np.maximum(x, x.dtype.type(0), out=out)


def _half_in_f32(fn):
    """float16 composites (several roundings per element) compute in float32, round once."""
    def f(x, out=None):
        if x.dtype != np.float16:
            return fn(x, out=out)
        r = fn(x.astype(np.float32))
        if out is not None:
            np.copyto(out, r, casting="unsafe")
            return out
        return r.astype(np.float16)
    return f


def _int_identity(fn):
    def f(x, out=None):
        if x.dtype.kind in "biu":
            if out is not None:
                np.copyto(out, x)
                return out
            return x.copy()
        return fn(x, out=out)
    return f


_UNARY = {
    "negative": np.negative, "abs": np.abs, "sign": np.sign, "exp": np.exp, "log": np.log,
    "log1p": np.log1p, "expm1": np.expm1, "sqrt": np.sqrt, "rsqrt": _half_in_f32(_rsqrt), "square": np.square,
    "reciprocal": np.reciprocal, "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
    "sigmoid": _half_in_f32(_sigmoid), "relu": _relu, "gelu": _half_in_f32(_gelu),
    "gelu_approx": _half_in_f32(_gelu_tanh), "silu": _half_in_f32(_silu),
    "erf": _erf, "floor": _int_identity(np.floor), "ceil": _int_identity(np.ceil),
    "round": _int_identity(np.rint), "logical_not": np.logical_not,
}


def _make_unary(fn):
    def impl(node, ins, out):
        x = ins[0]
        ct = COMPUTE[node._aux]
        if x.dtype != ct:
            x = x.astype(ct)
        if x.ndim == 0:
            # NumPy gives scalars for 0-d inputs, which out= chains cannot write into.
            x = x.reshape(1)
            return _finish(fn(x), node, None).reshape(())
        if out is not None and out.dtype == ct:
            return fn(x, out=out)
        return _finish(fn(x), node, out)
    return impl


for _name, _fn in _UNARY.items():
    IMPLS[_OPS[_name]] = _make_unary(_fn)


@_reg("astype")
def _astype(node, ins, out):
    return ins[0].astype(NP[node._dtype_code])


@_reg("where")
def _where(node, ins, out):
    c, a, b = ins
    ct = NP[node._aux]
    if a.dtype != ct:
        a = a.astype(ct)
    if b.dtype != ct:
        b = b.astype(ct)
    if c.dtype != np.bool_:
        c = c.astype(np.bool_)
    r = np.where(c, a, b)
    if out is not None:
        np.copyto(out, r)
        return out
    return r


# ---------------------------------------------------------------- reductions
def _acc(x, node):
    """(input in its compute type, accumulator dtype) for sum-like reductions."""
    x = up(x)
    k = x.dtype.kind
    if k in "biu":
        return x, np.int64 if node._op in (_OPS["sum"], _OPS["prod"]) else np.float32
    return x, x.dtype


def _quiet(fn, *args, **kw):
    # NumPy warns (not an errstate matter) for empty means and ddof >= n; results are NaN, as IEEE.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kw)


def _reduce_with(fn):
    def impl(node, ins, out):
        x, acc = _acc(ins[0], node)
        if x.size == 0:
            r = _quiet(fn, x, axis=node._aux, dtype=acc, keepdims=bool(node._flags & 4))
            return np.asarray(r).astype(NP[node._dtype_code], copy=False)
        r = fn(x, axis=node._aux, dtype=acc, keepdims=bool(node._flags & 4))
        return np.asarray(r).astype(NP[node._dtype_code], copy=False)
    return impl


IMPLS[_OPS["sum"]] = _reduce_with(np.sum)
IMPLS[_OPS["prod"]] = _reduce_with(np.prod)
IMPLS[_OPS["mean"]] = _reduce_with(np.mean)


def _var_like(fn):
    def impl(node, ins, out):
        x, acc = _acc(ins[0], node)
        r = _quiet(fn, x, axis=node._aux, dtype=acc, ddof=node._scalar,
                   keepdims=bool(node._flags & 4))
        return np.asarray(r).astype(NP[node._dtype_code], copy=False)
    return impl


IMPLS[_OPS["var"]] = _var_like(np.var)
IMPLS[_OPS["std"]] = _var_like(np.std)


def _minmax(fn):
    def impl(node, ins, out):
        x = ins[0]
        if x.dtype == NP[BF16]:
            x = x.astype(np.float32)
        r = fn(x, axis=node._aux, keepdims=bool(node._flags & 4))
        return np.asarray(r).astype(NP[node._dtype_code], copy=False)
    return impl


IMPLS[_OPS["max"]] = _minmax(np.max)
IMPLS[_OPS["min"]] = _minmax(np.min)
IMPLS[_OPS["all"]] = _minmax(np.all)
IMPLS[_OPS["any"]] = _minmax(np.any)


def _arg(fn):
    def impl(node, ins, out):
        x = up(ins[0])
        r = fn(x, axis=node._aux, keepdims=bool(node._flags & 4))
        return np.asarray(r).astype(np.int64, copy=False)
    return impl


IMPLS[_OPS["argmax"]] = _arg(np.argmax)
IMPLS[_OPS["argmin"]] = _arg(np.argmin)


@_reg("logsumexp")
def _logsumexp(node, ins, out):
    x = up(ins[0])
    if x.dtype.kind in "biu":
        x = x.astype(np.float32)
    axes = node._aux
    keep = bool(node._flags & 4)
    if x.size == 0:
        r = np.log(np.sum(np.exp(x), axis=axes, keepdims=keep))
        return np.asarray(r).astype(NP[node._dtype_code], copy=False)
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype, copy=False)
    e = np.exp(x - m)
    r = np.log(np.sum(e, axis=axes, keepdims=True))
    r += m
    if not keep:
        r = np.squeeze(r, axis=axes)
    return np.asarray(r).astype(NP[node._dtype_code], copy=False)


# ---------------------------------------------------------------- linear algebra
@_reg("matmul")
def _matmul(node, ins, out):
    a, b = ins
    ct = COMPUTE[node._aux]
    if ct.kind == "f" and ct.itemsize == 2:
        ct = np.dtype(np.float32)   # no half BLAS in NumPy; accumulate in float32
    if a.dtype != ct:
        a = a.astype(ct)
    if b.dtype != ct:
        b = b.astype(ct)
    return _finish(np.matmul(a, b), node, None)


np_ops.register(IMPLS, _OPS)
IMPLS[_OPS["elementwise_region"]] = np_region.make_impl(_UNARY)

_missing = [g.op_names[i] for i, f in enumerate(IMPLS) if f is None]
if _missing:
    raise ImportError(f"metalcandle numpy backend: no implementation for {_missing}")

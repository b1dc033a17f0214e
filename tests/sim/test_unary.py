"""shaders/unary.metal against NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ._helpers import (FLOATS, as_f64, assert_close, contig_args, element_offset, element_strides, poisoned,
                       random_array, strided_args)

pytestmark = pytest.mark.sim
SHADERS = ["unary"]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


# op -> (NumPy reference on float64, input range, avoid zero)
FLOAT_OPS = {
    "neg": (np.negative, (-3, 3), False),
    "abs": (np.abs, (-3, 3), False),
    "sign": (np.sign, (-3, 3), False),
    "square": (np.square, (-3, 3), False),
    "sqrt": (np.sqrt, (0.05, 9), False),
    "rsqrt": (lambda x: 1 / np.sqrt(x), (0.05, 9), False),
    "reciprocal": (np.reciprocal, (-3, 3), True),
    "exp": (np.exp, (-4, 4), False),
    "log": (np.log, (0.05, 9), False),
    "sin": (np.sin, (-6, 6), False),
    "cos": (np.cos, (-6, 6), False),
    "tanh": (np.tanh, (-4, 4), False),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), (-8, 8), False),
    "relu": (lambda x: np.maximum(x, 0), (-3, 3), False),
    "silu": (lambda x: x / (1 + np.exp(-x)), (-8, 8), False),
    "gelu": (_gelu, (-6, 6), False),
    "gelu_tanh": (lambda x: 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))), (-6, 6), False),
    "floor": (np.floor, (-5, 5), False),
    "ceil": (np.ceil, (-5, 5), False),
}
INT_OPS = {"neg": np.negative, "abs": np.abs, "sign": np.sign, "square": np.square}


def _run_contig(shaders, name, x, out):
    shaders["unary"].kernel(name)(x, out, contig_args(x.size), threads=x.size, threadgroup=256)


def _reference(op, x, suffix):
    ref = FLOAT_OPS[op][0](as_f64(x))
    return ref.astype(x.dtype) if op in ("floor", "ceil", "sign") else ref


@pytest.mark.parametrize("suffix", FLOATS)
@pytest.mark.parametrize("op", sorted(FLOAT_OPS))
def test_float_op_contiguous(shaders, rng, op, suffix):
    _, (lo, hi), avoid_zero = FLOAT_OPS[op]
    x = random_array(rng, 1000, suffix, lo, hi, avoid_zero)  # 1000: not a multiple of 256
    out = poisoned(x.shape, x.dtype)
    _run_contig(shaders, f"unary_{op}_{suffix}", x, out)
    assert_close(out, _reference(op, x, suffix), suffix, what=op)


@pytest.mark.parametrize("suffix", FLOATS)
@pytest.mark.parametrize("op", ["exp", "gelu", "rsqrt", "neg"])
def test_float_op_strided_transposed(shaders, rng, op, suffix):
    _, (lo, hi), avoid_zero = FLOAT_OPS[op]
    base = random_array(rng, (13, 3, 17), suffix, lo, hi, avoid_zero)
    x = base.transpose(2, 0, 1)[:, :, 1]  # a (17, 13) view with element strides (1, 51), offset 17
    out = poisoned(x.shape, x.dtype)
    args = strided_args(x.shape, [element_strides(x)], [element_offset(x, base)])
    shaders["unary"].kernel(f"unary_{op}_strided_{suffix}")(base, out, args, threads=x.size, threadgroup=64)
    assert_close(out, _reference(op, x, suffix), suffix, what=op)


@pytest.mark.parametrize("suffix", ["i32", "i64"])
@pytest.mark.parametrize("op", sorted(INT_OPS))
def test_int_op(shaders, rng, op, suffix):
    x = random_array(rng, 777, suffix, -1000, 1000)
    out = poisoned(x.shape, x.dtype)
    _run_contig(shaders, f"unary_{op}_{suffix}", x, out)
    assert_close(out, INT_OPS[op](x), suffix, what=op)
    b = random_array(rng, (5, 9), suffix, -1000, 1000)
    v = b.T
    out2 = poisoned(v.shape, v.dtype)
    shaders["unary"].kernel(f"unary_{op}_strided_{suffix}")(
        b, out2, strided_args(v.shape, [element_strides(v)]), threads=v.size, threadgroup=32)
    assert_close(out2, INT_OPS[op](v), suffix, what=op)


def test_logical_not(shaders, rng):
    x = random_array(rng, 300, "bool")
    out = poisoned(x.shape, np.bool_)
    _run_contig(shaders, "unary_logical_not_bool", x, out)
    assert_close(out, ~x, "bool")


@pytest.mark.parametrize("suffix", FLOATS)
def test_single_element(shaders, rng, suffix):
    x = random_array(rng, 1, suffix, 0.5, 2)
    out = poisoned(1, x.dtype)
    _run_contig(shaders, f"unary_exp_{suffix}", x, out)
    assert_close(out, np.exp(as_f64(x)), suffix)

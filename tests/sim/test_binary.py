"""shaders/binary.metal and shaders/ternary.metal against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from ._helpers import (FLOATS, as_f64, assert_close, broadcast_strides, contig_args, element_offset,
                       element_strides, poisoned, random_array, strided_args)

pytestmark = pytest.mark.sim
SHADERS = ["binary", "ternary"]

FLOAT_OPS = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "max": np.maximum, "min": np.minimum, "pow": np.power,
}
INT_OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "max": np.maximum, "min": np.minimum}
COMPARE_OPS = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
               "gt": np.greater, "ge": np.greater_equal}
INTS = ("i32", "i64", "u32")


def _operands(rng, op, shape_a, shape_b, suffix):
    if op == "pow":
        return random_array(rng, shape_a, suffix, 0.1, 3), random_array(rng, shape_b, suffix, -2, 2)
    if op == "div":
        return random_array(rng, shape_a, suffix), random_array(rng, shape_b, suffix, avoid_zero=True)
    if suffix in INTS:
        lo = 0 if suffix == "u32" else -1000
        return random_array(rng, shape_a, suffix, lo, 1000), random_array(rng, shape_b, suffix, lo, 1000)
    return random_array(rng, shape_a, suffix), random_array(rng, shape_b, suffix)


def _reference(fn, a, b, suffix):
    if suffix in FLOATS:
        return fn(as_f64(a), as_f64(b))
    with np.errstate(over="ignore"):
        return fn(a, b)  # integer ops wrap as NumPy's do


def _run(shaders, name, a, b, out, shape=None, a_view=None, b_view=None):
    if shape is None:
        shaders["binary"].kernel(name)(a, b, out, contig_args(out.size), threads=out.size, threadgroup=256)
        return
    args = strided_args(shape, [element_strides(a_view), element_strides(b_view)],
                        [element_offset(a_view, a), element_offset(b_view, b)])
    shaders["binary"].kernel(name)(a, b, out, args, threads=out.size, threadgroup=128)


@pytest.mark.parametrize("suffix", FLOATS)
@pytest.mark.parametrize("op", sorted(FLOAT_OPS))
def test_float_op(shaders, rng, op, suffix):
    a, b = _operands(rng, op, 1001, 1001, suffix)
    out = poisoned(a.shape, a.dtype)
    _run(shaders, f"binary_{op}_{suffix}", a, b, out)
    assert_close(out, _reference(FLOAT_OPS[op], a, b, suffix), suffix, what=op)


@pytest.mark.parametrize("suffix", FLOATS)
@pytest.mark.parametrize("op", sorted(FLOAT_OPS))
def test_float_op_broadcast(shaders, rng, op, suffix):
    a, b = _operands(rng, op, (5, 1, 7), (6, 1), suffix)
    shape = (5, 6, 7)
    av, bv = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
    out = poisoned(shape, a.dtype)
    args = strided_args(shape, [broadcast_strides(a, shape), broadcast_strides(b, shape)])
    shaders["binary"].kernel(f"binary_{op}_strided_{suffix}")(a, b, out, args, threads=out.size, threadgroup=64)
    assert_close(out, _reference(FLOAT_OPS[op], av, bv, suffix), suffix, what=op)


@pytest.mark.parametrize("suffix", INTS)
@pytest.mark.parametrize("op", sorted(INT_OPS))
def test_int_op(shaders, rng, op, suffix):
    a, b = _operands(rng, op, 999, 999, suffix)
    out = poisoned(a.shape, a.dtype)
    _run(shaders, f"binary_{op}_{suffix}", a, b, out)
    assert_close(out, _reference(INT_OPS[op], a, b, suffix), suffix, what=op)
    # transposed a against a row-broadcast b
    a2, b2 = _operands(rng, op, (9, 4), (1, 9), suffix)
    av, bv = a2.T, np.broadcast_to(b2, (4, 9))
    out2 = poisoned((4, 9), a.dtype)
    _run(shaders, f"binary_{op}_strided_{suffix}", a2, b2, out2, (4, 9), av, bv)
    assert_close(out2, _reference(INT_OPS[op], av, bv, suffix), suffix, what=op)


@pytest.mark.parametrize("suffix", FLOATS + INTS)
@pytest.mark.parametrize("op", sorted(COMPARE_OPS))
def test_compare(shaders, rng, op, suffix):
    a, b = _operands(rng, "add", 500, 500, suffix)
    b[::3] = a[::3]  # equal pairs too
    out = poisoned(a.shape, np.bool_)
    _run(shaders, f"binary_{op}_{suffix}", a, b, out)
    assert_close(out, COMPARE_OPS[op](as_f64(a), as_f64(b)), "bool", what=op)
    a2, b2 = _operands(rng, "add", (3, 1), (1, 5), suffix)
    shape = (3, 5)
    out2 = poisoned(shape, np.bool_)
    _run(shaders, f"binary_{op}_strided_{suffix}", a2, b2, out2, shape,
         np.broadcast_to(a2, shape), np.broadcast_to(b2, shape))
    assert_close(out2, COMPARE_OPS[op](as_f64(a2), as_f64(b2)), "bool", what=op)


@pytest.mark.parametrize("suffix", ["f32", "f16"])
def test_single_element(shaders, rng, suffix):
    a, b = _operands(rng, "add", 1, 1, suffix)
    out = poisoned(1, a.dtype)
    _run(shaders, f"binary_mul_{suffix}", a, b, out)
    assert_close(out, as_f64(a) * as_f64(b), suffix)


@pytest.mark.parametrize("suffix", ["f32", "f16", "bf16", "i32", "i64", "u32", "u8", "bool"])
def test_where(shaders, rng, suffix):
    lo = 0 if suffix in ("u32", "u8", "bool") else -100
    cond = random_array(rng, 700, "bool")
    a, b = random_array(rng, 700, suffix, lo, 100), random_array(rng, 700, suffix, lo, 100)
    out = poisoned(a.shape, a.dtype)
    shaders["ternary"].kernel(f"ternary_where_{suffix}")(cond, a, b, out, contig_args(a.size),
                                                          threads=a.size, threadgroup=256)
    assert_close(out, np.where(cond, a, b), suffix)
    # broadcast: cond (4, 1, 6), a (5, 1) transposed view, b scalar
    shape = (4, 5, 6)
    cond2 = random_array(rng, (4, 1, 6), "bool")
    a_base = random_array(rng, (1, 5), suffix, lo, 100)
    a2 = a_base.T
    b2 = random_array(rng, (1,), suffix, lo, 100)
    args = strided_args(shape, [broadcast_strides(cond2, shape), broadcast_strides(a2, shape),
                                broadcast_strides(b2, shape)])
    out2 = poisoned(shape, a.dtype)
    shaders["ternary"].kernel(f"ternary_where_strided_{suffix}")(cond2, a_base, b2, out2, args,
                                                                 threads=out2.size, threadgroup=32)
    assert_close(out2, np.where(cond2, a2, b2), suffix)

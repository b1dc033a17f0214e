"""Row kernels against NumPy: shaders/reduce.metal, softmax.metal, rmsnorm.metal."""

from __future__ import annotations

import numpy as np
import pytest

from ._helpers import (FLOATS, TOLERANCE, as_f64, poisoned, random_array, row_args, run_both_orders,
                       threads_for_block)

pytestmark = pytest.mark.sim
SHADERS = ["reduce", "softmax", "rmsnorm"]

# (rows, n, threads per group): 1 element, n below / not a multiple of the group, n > 4096.
REDUCE_SHAPES = [(1, 1, 32), (3, 1000, 256), (2, 5000, 1024), (5, 77, 64)]
FLOAT_REDUCTIONS = {"sum": np.sum, "max": np.max, "min": np.min, "mean": np.mean,
                    "argmax": np.argmax, "argmin": np.argmin}
INT_REDUCTIONS = {"sum": np.sum, "max": np.max, "min": np.min, "argmax": np.argmax, "argmin": np.argmin}


def _check_reduction(op, out, x, suffix):
    x64 = as_f64(x)
    if op.startswith("arg"):
        assert out.dtype == np.uint32
        np.testing.assert_array_equal(out, FLOAT_REDUCTIONS[op](x64, axis=1), err_msg=op)
        return
    expected = FLOAT_REDUCTIONS[op](x64, axis=1)
    if suffix == "i32":
        np.testing.assert_array_equal(out, expected.astype(np.int32), err_msg=op)
        return
    rtol, atol = TOLERANCE[suffix]
    if op in ("sum", "mean"):  # float accumulation: the error grows with the row's magnitude
        atol += 2e-7 * float(np.abs(x64).sum(axis=1).max()) / (x.shape[1] if op == "mean" else 1)
    np.testing.assert_allclose(as_f64(out), expected, rtol=rtol, atol=atol, err_msg=op)


@pytest.mark.parametrize("rows,n,threads", REDUCE_SHAPES)
@pytest.mark.parametrize("suffix", FLOATS)
@pytest.mark.parametrize("op", sorted(FLOAT_REDUCTIONS))
def test_reduce_float(shaders, rng, op, suffix, rows, n, threads):
    x = random_array(rng, (rows, n), suffix, -4, 4)
    out = poisoned(rows, np.uint32 if op.startswith("arg") else x.dtype)
    run_both_orders(shaders["reduce"].kernel(f"reduce_{op}_{suffix}"), x, out, row_args(rows, n), out_index=1,
                    grid=rows, threadgroup=threads)
    _check_reduction(op, out, x, suffix)


@pytest.mark.parametrize("rows,n,threads", REDUCE_SHAPES)
@pytest.mark.parametrize("op", sorted(INT_REDUCTIONS))
def test_reduce_int(shaders, rng, op, rows, n, threads):
    x = random_array(rng, (rows, n), "i32", -50, 50)  # many ties: argmax must pick the first
    out = poisoned(rows, np.uint32 if op.startswith("arg") else np.int32)
    run_both_orders(shaders["reduce"].kernel(f"reduce_{op}_i32"), x, out, row_args(rows, n), out_index=1,
                    grid=rows, threadgroup=threads)
    _check_reduction(op, out, x, "i32")


def _softmax(x):
    x = as_f64(x)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _rmsnorm(x, w, eps):
    x = as_f64(x)
    y = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps)
    return y * as_f64(w) if w is not None else y


ROW_TOLERANCE = {"f32": (1e-5, 1e-7), "f16": (5e-3, 1e-4), "bf16": (2e-2, 1e-3)}
BLOCK_SHAPES = [(2, 1), (3, 7), (4, 1000), (2, 4096)]
LOOPED_SHAPES = [(2, 4097, 1024), (2, 10000, 256), (3, 100, 64)]


@pytest.mark.parametrize("rows,n", BLOCK_SHAPES)
@pytest.mark.parametrize("suffix", FLOATS)
def test_softmax_block(shaders, rng, suffix, rows, n):
    x = random_array(rng, (rows, n), suffix, -6, 6)
    out = poisoned(x.shape, x.dtype)
    run_both_orders(shaders["softmax"].kernel(f"softmax_block_{suffix}"), x, out, row_args(rows, n), out_index=1,
                    grid=rows, threadgroup=threads_for_block(n))
    rtol, atol = ROW_TOLERANCE[suffix]
    np.testing.assert_allclose(as_f64(out), _softmax(x), rtol=rtol, atol=atol)


@pytest.mark.parametrize("rows,n,threads", LOOPED_SHAPES)
@pytest.mark.parametrize("suffix", FLOATS)
def test_softmax_looped(shaders, rng, suffix, rows, n, threads):
    x = random_array(rng, (rows, n), suffix, -6, 6)
    x[0, n // 2] = 30.0  # a large value far from the first chunk: the running max must rescale
    out = poisoned(x.shape, x.dtype)
    run_both_orders(shaders["softmax"].kernel(f"softmax_looped_{suffix}"), x, out, row_args(rows, n), out_index=1,
                    grid=rows, threadgroup=threads)
    rtol, atol = ROW_TOLERANCE[suffix]
    np.testing.assert_allclose(as_f64(out), _softmax(x), rtol=rtol, atol=atol)


def _run_rmsnorm(shaders, variant, x, w, threads, eps=1e-5):
    rows, n = x.shape
    out = poisoned(x.shape, x.dtype)
    suffix = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}.get(x.dtype, "bf16")
    kernel = shaders["rmsnorm"].kernel(f"rmsnorm_{variant}_{suffix}", constants={"mc_has_weight": w is not None})
    run_both_orders(kernel, x, w, out, row_args(rows, n, eps), out_index=2, grid=rows, threadgroup=threads)
    rtol, _ = ROW_TOLERANCE[suffix]
    np.testing.assert_allclose(as_f64(out), _rmsnorm(x, w, eps), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("has_weight", [True, False])
@pytest.mark.parametrize("rows,n", BLOCK_SHAPES)
@pytest.mark.parametrize("suffix", FLOATS)
def test_rmsnorm_block(shaders, rng, suffix, rows, n, has_weight):
    x = random_array(rng, (rows, n), suffix)
    w = random_array(rng, n, suffix, 0.5, 2) if has_weight else None
    _run_rmsnorm(shaders, "block", x, w, threads_for_block(n))


@pytest.mark.parametrize("has_weight", [True, False])
@pytest.mark.parametrize("rows,n,threads", LOOPED_SHAPES)
@pytest.mark.parametrize("suffix", FLOATS)
def test_rmsnorm_looped(shaders, rng, suffix, rows, n, threads, has_weight):
    x = random_array(rng, (rows, n), suffix)
    w = random_array(rng, n, suffix, 0.5, 2) if has_weight else None
    _run_rmsnorm(shaders, "looped", x, w, threads)

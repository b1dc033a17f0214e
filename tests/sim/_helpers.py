"""Shared pieces of the simulator tests: dtypes, argument structs, tolerances, inputs, launches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

try:
    import ml_dtypes
    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # bf16 cases skip
    ml_dtypes = None
    BF16 = None

REPO = Path(__file__).resolve().parents[2]
SHADER_DIR = REPO / "shaders"
SELFTEST_DIR = Path(__file__).resolve().parent / "shaders"  # deliberately buggy / probe shaders
MAX_DIMS = 8

# The dtype suffixes of mc_kernel_args.h.
DTYPES = {
    "f32": np.dtype(np.float32), "f16": np.dtype(np.float16), "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64), "u32": np.dtype(np.uint32), "u8": np.dtype(np.uint8),
    "i8": np.dtype(np.int8), "i16": np.dtype(np.int16), "bool": np.dtype(np.bool_),
}
if BF16 is not None:
    DTYPES["bf16"] = BF16
FLOATS = ("f32", "f16", "bf16")

# Host-side mirrors of the structs in shaders/mc_kernel_args.h (test_layout checks them with a C
# compiler).
CONTIG_ARGS = np.dtype([("n", "<i8")])
STRIDED_ARGS = np.dtype([
    ("n", "<i8"), ("ndim", "<i4"), ("reserved", "<i4"), ("shape", "<i8", (MAX_DIMS,)),
    ("in_strides", "<i8", (3, MAX_DIMS)), ("in_offset", "<i8", (3,)),
    ("out_strides", "<i8", (MAX_DIMS,)), ("out_offset", "<i8"),
])
ROW_ARGS = np.dtype([("rows", "<i8"), ("n", "<i8"), ("eps", "<f4"), ("reserved", "<f4")])
MATMUL_ARGS = np.dtype([
    ("M", "<i4"), ("N", "<i4"), ("K", "<i4"), ("batch", "<i4"),
    ("a_batch_stride", "<i8"), ("a_row_stride", "<i8"), ("a_col_stride", "<i8"),
    ("b_batch_stride", "<i8"), ("b_row_stride", "<i8"), ("b_col_stride", "<i8"),
    ("c_batch_stride", "<i8"),
])

# (rtol, atol) per dtype for one rounding of a float-computed result.
TOLERANCE = {"f32": (1e-5, 1e-6), "f16": (5e-3, 5e-3), "bf16": (2e-2, 2e-2)}


def dtype_of(suffix: str) -> np.dtype:
    if suffix not in DTYPES:
        pytest.skip(f"{suffix} needs ml_dtypes")
    return DTYPES[suffix]


def contig_args(n: int) -> np.ndarray:
    a = np.zeros(1, CONTIG_ARGS)
    a["n"] = n
    return a


def element_strides(arr: np.ndarray) -> tuple[int, ...]:
    return tuple(s // arr.itemsize for s in arr.strides)


def element_offset(view: np.ndarray, base: np.ndarray) -> int:
    """Offset in elements of view's first element inside base's buffer."""
    return (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // base.itemsize


def strided_args(shape, in_strides=(), in_offsets=(), out_strides=None, out_offset=0) -> np.ndarray:
    """mc_strided_args for an output of `shape`; strides/offsets in elements."""
    a = np.zeros(1, STRIDED_ARGS)
    a["n"] = math.prod(shape)
    a["ndim"] = len(shape)
    a["shape"][0, :len(shape)] = shape
    for k, strides in enumerate(in_strides):
        a["in_strides"][0, k, :len(shape)] = strides
    for k, off in enumerate(in_offsets):
        a["in_offset"][0, k] = off
    if out_strides is not None:
        a["out_strides"][0, :len(shape)] = out_strides
    a["out_offset"] = out_offset
    return a


def broadcast_strides(arr: np.ndarray, shape) -> tuple[int, ...]:
    """Element strides that read `arr` broadcast to `shape` (0 on broadcast axes)."""
    view = np.broadcast_to(arr, shape)
    return element_strides(view)


def row_args(rows: int, n: int, eps: float = 0.0) -> np.ndarray:
    a = np.zeros(1, ROW_ARGS)
    a["rows"], a["n"], a["eps"] = rows, n, eps
    return a


def random_array(rng: np.random.Generator, shape, suffix: str, low: float = -3.0, high: float = 3.0,
                 avoid_zero: bool = False) -> np.ndarray:
    """Fresh random values of the dtype (never all zeros); ints are drawn in [low, high]."""
    dtype = dtype_of(suffix)
    if suffix == "bool":
        return rng.random(shape) < 0.5
    if suffix in FLOATS:
        x = rng.uniform(low, high, shape)
        if avoid_zero:
            x = np.where(np.abs(x) < 0.1, 0.1 + np.abs(x), x)
        return x.astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(int(low), info.min), min(int(high), info.max)
    x = rng.integers(lo, hi + 1, shape)
    if avoid_zero:
        x = np.where(x == 0, 1, x)
    return x.astype(dtype)


def poisoned(shape, dtype) -> np.ndarray:
    """An output buffer holding NaN (floats) or a sentinel (ints/bool): unwritten elements show."""
    dtype = np.dtype(dtype)
    out = np.empty(shape, dtype)
    if dtype.kind == "f" or dtype == BF16:
        out[...] = np.nan
    elif dtype.kind == "b":
        out.view(np.uint8)[...] = 0xA5  # neither True (1) nor False (0)
    else:
        out[...] = np.iinfo(dtype).max - 3
    return out


def as_f64(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64)


def assert_close(actual: np.ndarray, expected: np.ndarray, suffix: str, rtol=None, atol=None, what: str = ""):
    """Compare with the per-dtype tolerance (float ops) or exactly (ints, bool)."""
    if suffix in FLOATS:
        r, a = TOLERANCE[suffix]
        np.testing.assert_allclose(as_f64(actual), as_f64(expected), rtol=rtol if rtol is not None else r,
                                   atol=atol if atol is not None else a, err_msg=what)
    else:
        if actual.dtype == np.bool_:
            assert set(np.unique(actual.view(np.uint8))) <= {0, 1}, f"{what}: unwritten bool elements"
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def threads_for_block(n: int) -> int:
    """Threads per group of the softmax/rmsnorm _block kernels: n / 4 rounded up to 32."""
    per_thread = -(-n // 4)
    return min(1024, max(32, -(-per_thread // 32) * 32))


def run_both_orders(kernel, *buffers, out_index: int, **launch):
    """Run `kernel`, then again with the threads of each group resumed in reverse order into a
    fresh poisoned copy of the output buffers[out_index]; both runs must agree bit for bit
    (a threadgroup-memory race usually makes them differ). Returns the output."""
    out = buffers[out_index]
    kernel(*buffers, **launch)
    again = poisoned(out.shape, out.dtype)
    kernel(*buffers[:out_index], again, *buffers[out_index + 1:], reverse=True, **launch)
    np.testing.assert_array_equal(again.view(np.uint8), out.view(np.uint8),
                                  err_msg=f"{kernel.name}: results depend on the order threads run")
    return out

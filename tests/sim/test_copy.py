"""shaders/copy.metal against NumPy: casts between every dtype pair, strided copies."""

from __future__ import annotations

import numpy as np
import pytest

from ._helpers import (DTYPES, FLOATS, assert_close, contig_args, dtype_of, element_offset, element_strides,
                       poisoned, random_array, strided_args)

pytestmark = pytest.mark.sim
SHADERS = ["copy"]

ALL = ("f32", "f16", "bf16", "i32", "i64", "u32", "u8", "i8", "i16", "bool")


def _source(rng, shape, src):
    # Values every destination type holds, and whose float -> int truncation is defined.
    x = random_array(rng, shape, src, 0, 100) if src != "bool" else random_array(rng, shape, "bool")
    if src in FLOATS:
        x[::5] = 0  # exercise x -> bool on both sides of zero
    return x


def _expected(x, dst):
    if dst == "bool":
        return x.astype(np.float64) != 0
    return x.astype(np.float64).astype(dtype_of(dst)) if x.dtype != np.bool_ else x.astype(dtype_of(dst))


def _compare(out, x, dst):
    exp = _expected(x, dst)
    if dst in FLOATS:
        assert_close(out, exp, dst, rtol=0, atol=0)  # a cast is one rounding on both sides
    else:
        assert_close(out, exp, dst)


@pytest.mark.parametrize("dst", ALL)
@pytest.mark.parametrize("src", ALL)
def test_cast_contiguous(shaders, rng, src, dst):
    x = _source(rng, 333, src)
    out = poisoned(x.shape, dtype_of(dst))
    shaders["copy"].kernel(f"copy_contig_from_{src}_{dst}")(x, out, contig_args(x.size), threads=x.size,
                                                            threadgroup=128)
    _compare(out, x, dst)


@pytest.mark.parametrize("src,dst", [(s, s) for s in DTYPES] + [("f32", "f16"), ("f16", "f32"), ("bf16", "f32"),
                                                                 ("f32", "bf16"), ("i32", "f32"), ("f16", "i64")])
def test_transpose_copy(shaders, rng, src, dst):
    base = _source(rng, (7, 11, 3), src)
    view = base.transpose(1, 2, 0)  # (11, 3, 7)
    out = poisoned(view.shape, dtype_of(dst))
    args = strided_args(view.shape, [element_strides(view)], out_strides=element_strides(out))
    shaders["copy"].kernel(f"copy_strided_from_{src}_{dst}")(base, out, args, threads=view.size, threadgroup=64)
    _compare(out, view, dst)


@pytest.mark.parametrize("suffix", ["f32", "f16", "i32"])
def test_strided_into_strided(shaders, rng, suffix):
    """Copy a column slice into every other row of a bigger buffer: the rest stays untouched."""
    src = _source(rng, (6, 10), suffix)
    view = src[:, 3:8]
    dst = poisoned((12, 9), DTYPES[suffix])
    sentinel = dst.copy()
    target = dst[::2, 2:7]
    args = strided_args(view.shape, [element_strides(view)], [element_offset(view, src)],
                        out_strides=element_strides(target), out_offset=element_offset(target, dst))
    shaders["copy"].kernel(f"copy_strided_from_{suffix}_{suffix}")(src, dst, args, threads=view.size,
                                                                   threadgroup=32)
    np.testing.assert_array_equal(dst[::2, 2:7], view)
    mask = np.ones(dst.shape, bool)
    mask[::2, 2:7] = False
    np.testing.assert_array_equal(dst[mask].view(np.uint8), sentinel[mask].view(np.uint8))


def test_single_element(shaders, rng):
    x = _source(rng, 1, "f32")
    out = poisoned(1, np.float16)
    shaders["copy"].kernel("copy_contig_from_f32_f16")(x, out, contig_args(1), threads=1, threadgroup=1)
    _compare(out, x, "f16")

"""The C LoRA kernel (metalcandle._cpu_fused.lora) against float64 NumPy references.

The wrapper is called directly over ranks, widths that are not multiples of the vector
lanes, row counts that are not multiples of the 6-row tile, accumulate on/off, 1 and 2
threads, float32 and float16, on the best ISA and on the baseline ISA. Then mc.fast.lora /
mc.fast.lora_linear at a size that takes the C path, against the NumPy path. Inputs are fresh
random draws (never zeros); outputs are poisoned with NaN before each call.
"""

import numpy as np
import pytest

import metalcandle as mc
from metalcandle.backends import np_fused as NF

C = NF._load_native()
pytestmark = pytest.mark.skipif(C is None, reason="metalcandle._cpu_fused not built")

RANKS = [1, 3, 4, 8, 16, 17, 64]
WIDTHS = [1, 7, 13, 129]
ROWS = [1, 3, 5, 7, 64]
# Relative (to the output's largest magnitude) error allowed per storage dtype.
TOL = {np.float32: 2e-6, np.float16: 2e-3}


@pytest.fixture(params=["best", "baseline"])
def isa(request):
    C._set_baseline_only(request.param == "baseline")
    try:
        yield request.param
    finally:
        C._set_baseline_only(False)


def inputs(seed, rows, n_in, r, n_out, dtype=np.float32):
    g = np.random.default_rng(seed)
    x = g.standard_normal((rows, n_in)).astype(dtype)
    a = (g.standard_normal((n_in, r)) / np.sqrt(n_in)).astype(np.float32)
    b = (g.standard_normal((r, n_out)) / np.sqrt(r)).astype(np.float32)
    y0 = g.standard_normal((rows, n_out)).astype(dtype)
    return x, a, b, y0


def ref_lora(x, a, b, scale):
    return scale * (x.astype(np.float64) @ a.astype(np.float64)) @ b.astype(np.float64)


def check(y, ref, dtype):
    got = y.astype(np.float64)
    assert np.all(np.isfinite(got)), "unwritten (NaN) or non-finite outputs"
    err = np.max(np.abs(got - ref)) / max(1.0, np.max(np.abs(ref)))
    assert err < TOL[dtype], err


def run(x, a, b, y0, scale, accumulate, nthreads):
    y = y0.copy() if accumulate else np.full(y0.shape, np.nan, y0.dtype)
    assert C.lora(x, a, b, y, scale, accumulate, nthreads) is y
    ref = ref_lora(x, a, b, scale)
    if accumulate:
        ref = ref + y0.astype(np.float64)
    return y, ref


@pytest.mark.parametrize("r", RANKS)
@pytest.mark.parametrize("rows", ROWS)
def test_ranks_rows(isa, r, rows):
    for i, (n_in, n_out) in enumerate([(7, 13), (129, 1), (1, 129), (13, 7)]):
        x, a, b, y0 = inputs(1000 * r + 10 * rows + i, rows, n_in, r, n_out)
        for accumulate in (False, True):
            check(*run(x, a, b, y0, 0.75, accumulate, 1), np.float32)


@pytest.mark.parametrize("n_in", WIDTHS)
@pytest.mark.parametrize("n_out", WIDTHS)
def test_widths(isa, n_in, n_out):
    x, a, b, y0 = inputs(n_in * 1000 + n_out, 5, n_in, 8, n_out)
    check(*run(x, a, b, y0, 2.0, False, 1), np.float32)
    x, a, b, y0 = inputs(n_in * 1000 + n_out + 1, 3, n_in, 17, n_out)
    check(*run(x, a, b, y0, -0.5, True, 1), np.float32)


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("shape", [(257, 300, 16, 730), (1024, 129, 3, 1400), (30, 2049, 40, 1517)])
def test_threads(isa, accumulate, nthreads, shape):
    rows, n_in, r, n_out = shape
    # Past MC_CPU_LORA_PARALLEL_MIN multiply-adds, so nthreads=2 really starts a thread.
    assert rows * r * (n_in + n_out) >= 1 << 22
    x, a, b, y0 = inputs(sum(shape) + nthreads, *shape)
    check(*run(x, a, b, y0, 1.5, accumulate, nthreads), np.float32)


@pytest.mark.parametrize("n_out", [2045, 2048])
def test_streaming_stores(isa, n_out):
    # Outputs of LORA_STREAM_MIN elements and more bypass the caches where a row is 16-byte
    # aligned; an odd n_out mixes aligned and unaligned rows.
    rows = -(-C.LORA_STREAM_MIN // n_out) + 5
    x, a, b, y0 = inputs(n_out, rows, 16, 8, n_out)
    check(*run(x, a, b, y0, 0.5, False, 2), np.float32)


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("shape", [(5, 13, 3, 7), (64, 129, 16, 129), (600, 70, 17, 1000)])
def test_float16(isa, accumulate, shape):
    if not C.supports("e"):
        pytest.skip("float16 not compiled in")
    x, a, b, y0 = inputs(sum(shape), *shape, dtype=np.float16)
    y, ref = run(x, a, b, y0, 2.0, accumulate, 2)
    assert y.dtype == np.float16
    check(y, ref, np.float16)


def test_isas_agree():
    # The baseline (SSE2/NEON) and the dispatched (AVX2+FMA) copies differ by rounding only.
    x, a, b, _ = inputs(7, 37, 515, 17, 263)
    ys = []
    for base in (False, True):
        C._set_baseline_only(base)
        try:
            ys.append(C.lora(x, a, b, np.full((37, 263), np.nan, np.float32), 1.0))
        finally:
            C._set_baseline_only(False)
    np.testing.assert_allclose(ys[0], ys[1], rtol=1e-5, atol=1e-5)


def test_empty_and_errors():
    g = np.random.default_rng(3)
    a = np.empty((0, 4), np.float32)
    b = g.standard_normal((4, 5)).astype(np.float32)
    y = np.full((3, 5), np.nan, np.float32)
    C.lora(np.empty((3, 0), np.float32), a, b, y, 1.0)  # x @ a over an empty axis is 0
    assert np.all(y == 0)
    x, a, b, y0 = inputs(4, 4, 8, 4, 8)
    with pytest.raises(ValueError):
        C.lora(x, a, b, x, 1.0)  # y must not overlap x
    with pytest.raises(ValueError):
        C.lora(x, a, b[:, :7].copy(), y0, 1.0)  # b's columns != y's
    with pytest.raises(ValueError):
        C.lora(x, a[:, :0].copy(), b[:0].copy(), y0, 1.0)  # rank 0
    with pytest.raises(ValueError):
        C.lora(x, a.T, b, y0, 1.0)  # a not C-contiguous
    with pytest.raises(ValueError):
        C.lora(x, a, b, y0.astype(np.float64), 1.0)


# ---------------------------------------------------------------- through mc.fast

@pytest.fixture
def numpy_path():
    """Call fn() with the C kernels switched off (NumPy path)."""
    def call(fn):
        NF._C = None
        try:
            return fn()
        finally:
            NF._C = C
    return call


@pytest.fixture
def c_calls(monkeypatch):
    """Counts the calls of the C kernel (which still runs), with the CPU as the default device
    (a build with a metal device makes that the default)."""
    prev = mc.default_device()
    mc.set_default_device("cpu")
    calls = []
    real = C.lora

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)
    monkeypatch.setattr(C, "lora", spy)
    yield calls
    mc.set_default_device(prev)


# Shapes the C path takes (see np_fused._lora_c): float32 with tiny work or an output of
# LORA_STREAM_MIN elements or more, float16 at any size.
FAST_CASES = [(np.float32, (3, 5, 40), 4, 24), (np.float32, (2, 1024, 64), 16, 2048),
              (np.float16, (2, 96, 384), 16, 400)]


@pytest.mark.parametrize("dtype, shape, r, n_out", FAST_CASES)
def test_fast_lora(numpy_path, c_calls, dtype, shape, r, n_out):
    g = np.random.default_rng(11 + r)
    n_in = shape[-1]
    x = g.standard_normal(shape).astype(dtype)
    a = (g.standard_normal((n_in, r)) / np.sqrt(n_in)).astype(dtype)
    b = (g.standard_normal((r, n_out)) / np.sqrt(r)).astype(dtype)
    y = mc.fast.lora(mc.array(x), mc.array(a), mc.array(b), 2.0).numpy()
    rows = x.size // n_in
    assert c_calls == [(rows, n_in)]
    ref = numpy_path(lambda: NF.lora(x, a, b, 2.0))
    assert y.dtype == dtype and y.shape == shape[:-1] + (n_out,)
    tol = 1e-4 if dtype == np.float32 else 2e-3
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.max(np.abs(ref)))
    check(y, ref_lora(x, a, b, 2.0), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fast_lora_linear(numpy_path, c_calls, dtype, with_bias):
    g = np.random.default_rng(12 + with_bias)
    x = g.standard_normal((3, 50, 256)).astype(dtype)
    w = (g.standard_normal((256, 200)) / 16).astype(dtype)
    bias = g.standard_normal((200,)).astype(dtype) if with_bias else None
    a = (g.standard_normal((256, 8)) / 16).astype(dtype)
    b = (g.standard_normal((8, 200)) / 3).astype(dtype)
    y = mc.fast.lora_linear(mc.array(x), mc.array(w), None if bias is None else mc.array(bias),
                            mc.array(a), mc.array(b), 1.5).numpy()
    assert c_calls == [(150, 256)]
    ref = numpy_path(lambda: NF.lora_linear(x, w, bias, a, b, 1.5))
    assert y.dtype == dtype and y.shape == (3, 50, 200)
    tol = 1e-4 if dtype == np.float32 else 2e-3
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.max(np.abs(ref)))
    full = x.astype(np.float64) @ w.astype(np.float64) + ref_lora(x, a, b, 1.5)
    check(y, full if bias is None else full + bias, dtype)


def test_np_fused_out_strided_and_aliased():
    # Strided or x-aliasing out= take the NumPy path and are still fully written.
    x, a, b, _ = inputs(13, 40, 40, 8, 40)
    out = np.full((40, 40), np.nan, np.float32).T
    np.testing.assert_allclose(NF.lora(x, a, b, 2.0, out=out), ref_lora(x, a, b, 2.0),
                               rtol=1e-5, atol=1e-5)
    xc = x.copy()
    np.testing.assert_allclose(NF.lora(xc, a, b, 2.0, out=xc), ref_lora(x, a, b, 2.0),
                               rtol=1e-5, atol=1e-5)

"""CPU fused primitives (backends/np_fused.py) against float64 NumPy references.

Every case runs on the NumPy path and, when metalcandle._cpu_fused is built, on
the C path too (best ISA, and the baseline ISA).  Inputs are fresh random draws; out= buffers are poisoned with NaN.
"""

import importlib
import importlib.util
import pathlib

import numpy as np
import pytest

_SRC = pathlib.Path(__file__).resolve().parents[1] / "src/metalcandle/backends/np_fused.py"


def _load():
    try:
        return importlib.import_module("metalcandle.backends.np_fused")
    except ImportError:  # package not built: load the source file
        spec = importlib.util.spec_from_file_location("_mc_np_fused", _SRC)
        spec.loader.exec_module(mod := importlib.util.module_from_spec(spec))
        return mod


NF = _load()
_NATIVE = NF._load_native()

F32_ATOL = 1e-5
# Per-dtype tolerance (relative and absolute) against the float64 reference.
TOL = {np.float32: (1e-5, F32_ATOL), np.float16: (2e-3, 2e-3), "bfloat16": (1.6e-2, 1.6e-2)}


@pytest.fixture(params=["numpy", "native", "native-baseline"])
def nf(request):
    if request.param.startswith("native"):
        if _NATIVE is None:
            pytest.skip("metalcandle._cpu_fused not built")
        NF._C = _NATIVE
        # The baseline run checks the SSE2/NEON kernels on machines that also have AVX2.
        _NATIVE._set_baseline_only(request.param == "native-baseline")
    else:
        NF._C = None
    yield NF
    NF._C = _NATIVE
    if _NATIVE is not None:
        _NATIVE._set_baseline_only(False)


rng = np.random.default_rng


def randn(g, shape, scale=1.0, dtype=np.float32):
    return (g.standard_normal(shape) * scale).astype(dtype)


def poisoned(shape, dtype=np.float32):
    return np.full(shape, np.nan, dtype)  # unwritten elements show as NaN


def check_f32(y, ref):
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    assert (err := np.max(np.abs(y.astype(np.float64) - ref))) < F32_ATOL, err


def check(y, ref, key):
    rtol, atol = TOL[key]
    assert np.all(np.isfinite(y.astype(np.float64)))
    np.testing.assert_allclose(y.astype(np.float64), ref, rtol=rtol, atol=atol)


def bf16():
    return pytest.importorskip("ml_dtypes").bfloat16


# ---------------------------------------------------------------- references

def ref_softmax(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def ref_log_softmax(x, axis):
    x = x.astype(np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def ref_rms(x, w, eps):
    x = x.astype(np.float64)
    y = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return y if w is None else y * w.astype(np.float64)


def ref_layer_norm(x, w, b, eps):
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    if w is not None:
        y = y * w.astype(np.float64)
    if b is not None:
        y = y + b.astype(np.float64)
    return y


def ref_rope(x, dims, traditional, base, scale, offset):
    x = x.astype(np.float64)
    L = x.shape[-2]
    y = x.copy()
    for i in range(dims // 2):
        inv = base ** (-(2.0 * i) / dims)
        th = (np.arange(L) + offset) * scale * inv
        c, s = np.cos(th)[:, None], np.sin(th)[:, None]
        j, k = (2 * i, 2 * i + 1) if traditional else (i, i + dims // 2)
        a, b = x[..., j:j + 1], x[..., k:k + 1]
        y[..., j:j + 1] = a * c - b * s
        y[..., k:k + 1] = a * s + b * c
    return y


def ref_sdpa(q, k, v, scale, mask):
    q, k, v = (t.astype(np.float64) for t in (q, k, v))
    G = q.shape[1] // k.shape[1]
    k = np.repeat(k, G, axis=1)
    v = np.repeat(v, G, axis=1)
    s = scale * q @ k.swapaxes(-1, -2)
    Lq, Lk = s.shape[-2:]
    if isinstance(mask, str):
        mask = np.arange(Lk)[None, :] <= np.arange(Lq)[:, None] + (Lk - Lq)
    if mask is not None:
        mask = np.asarray(mask)
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    return ref_softmax(s, -1) @ v


def ref_lora(x, a, b, scale):
    return scale * (x.astype(np.float64) @ a.astype(np.float64)) @ b.astype(np.float64)


def lora_weights(g, n_in, r, n_out):
    return randn(g, (n_in, r), 0.1), randn(g, (r, n_out), 0.1)


# ---------------------------------------------------------------- LoRA suite

def test_lora_basic(nf):
    g = rng(1)
    x = randn(g, (1, 16))
    a, b = lora_weights(g, 16, 4, 16)
    check_f32(nf.lora(x, a, b, 8.0 / 4), ref_lora(x, a, b, 2.0))


def test_lora_batched(nf):
    g = rng(2)
    x = randn(g, (8, 64))
    a, b = lora_weights(g, 64, 8, 64)
    out = poisoned((8, 64))
    assert nf.lora(x, a, b, 16.0 / 8, out=out) is out
    check_f32(out, ref_lora(x, a, b, 2.0))


def test_lora_chain(nf):
    g = rng(3)
    x = randn(g, (4, 32))
    a1, b1 = lora_weights(g, 32, 4, 32)
    a2, b2 = lora_weights(g, 32, 4, 32)
    y = nf.lora(nf.lora(x, a1, b1, 2.0), a2, b2, 2.0)
    check_f32(y, ref_lora(ref_lora(x, a1, b1, 2.0), a2, b2, 2.0))


@pytest.mark.parametrize("rank", [2, 4, 8, 16])
def test_lora_ranks(nf, rank):
    g = rng(10 + rank)
    x = randn(g, (8, 64))
    a, b = lora_weights(g, 64, rank, 48)
    check_f32(nf.lora(x, a, b, 16.0 / rank), ref_lora(x, a, b, 16.0 / rank))


@pytest.mark.parametrize("shape", [(1, 10, 128), (4, 20, 128), (8, 5, 128)])
def test_lora_3d_shapes(nf, shape):
    g = rng(sum(shape))
    x = randn(g, shape)
    a, b = lora_weights(g, 128, 8, 128)
    y = nf.lora(x, a, b, 2.0)
    assert y.shape == shape
    check_f32(y, ref_lora(x, a, b, 2.0))


@pytest.mark.parametrize("with_bias", [False, True])
def test_lora_linear(nf, with_bias):
    g = rng(20 + with_bias)
    x = randn(g, (3, 7, 64))
    w = randn(g, (64, 96), 0.1)
    bias = randn(g, (96,)) if with_bias else None
    a, b = lora_weights(g, 64, 8, 96)
    out = poisoned((3, 7, 96))
    y = nf.lora_linear(x, w, bias, a, b, 2.0, out=out)
    ref = x.astype(np.float64) @ w + ref_lora(x, a, b, 2.0)
    if with_bias:
        ref = ref + bias
    assert y is out
    check_f32(y, ref)


def test_strided_out_everywhere(nf):
    # out= views that are not C-contiguous must still be fully written.
    g = rng(35)
    x = randn(g, (6, 40))
    a, b = lora_weights(g, 40, 4, 40)
    w, bias = randn(g, (40, 40), 0.1), randn(g, (40,))

    def strided():
        return poisoned((40, 6)).T

    check_f32(nf.lora(x, a, b, 2.0, out=strided()), ref_lora(x, a, b, 2.0))
    check_f32(nf.lora_linear(x, w, bias, a, b, 2.0, out=strided()),
              x.astype(np.float64) @ w + bias + ref_lora(x, a, b, 2.0))
    check_f32(nf.rms_norm(x, bias, 1e-5, out=strided()), ref_rms(x, bias, 1e-5))
    check_f32(nf.layer_norm(x, bias, bias, 1e-5, out=strided()),
              ref_layer_norm(x, bias, bias, 1e-5))
    check_f32(nf.log_softmax(x, 0, out=strided()), ref_log_softmax(x, 0))
    check_f32(nf.rope(x, 16, True, 100.0, 1.0, 2, out=strided()),
              ref_rope(x, 16, True, 100.0, 1.0, 2))


@pytest.mark.parametrize("half", ["f16", "bf16"])
def test_lora_half(nf, half):
    dt, key = (np.float16, np.float16) if half == "f16" else (bf16(), "bfloat16")
    g = rng(30)
    x = randn(g, (2, 9, 64), dtype=dt)
    a, b = randn(g, (64, 8), 0.1, dt), randn(g, (8, 64), 0.1, dt)
    w = randn(g, (64, 64), 0.1, dt)
    out = poisoned((2, 9, 64), dt)
    y = nf.lora(x, a, b, 2.0, out=out)
    assert y.dtype == dt
    check(y, ref_lora(x, a, b, 2.0), key)
    y2 = nf.lora_linear(x, w, None, a, b, 2.0)
    check(y2, x.astype(np.float64) @ w.astype(np.float64) + ref_lora(x, a, b, 2.0), key)


# ---------------------------------------------------------------- softmax suite

def test_softmax_1d(nf):
    x = randn(rng(40), (37,))
    check_f32(nf.softmax(x, 0), ref_softmax(x, 0))


def test_softmax_2d_rows_sum_to_one(nf):
    x = randn(rng(41), (16, 100), 3.0)
    y = nf.softmax(x, -1)
    check_f32(y, ref_softmax(x, -1))
    np.testing.assert_allclose(y.sum(-1, dtype=np.float64), 1.0, atol=1e-5)


def test_softmax_batched(nf):
    x = randn(rng(42), (2, 10, 64))
    out = poisoned(x.shape)
    assert nf.softmax(x, -1, out=out) is out
    check_f32(out, ref_softmax(x, -1))


@pytest.mark.parametrize("axis", [0, 1, 2, -2])
def test_softmax_axes(nf, axis):
    x = randn(rng(43), (6, 10, 64), 2.0)
    out = poisoned(x.shape)
    check_f32(nf.softmax(x, axis, out=out), ref_softmax(x, axis))


def test_softmax_large_values(nf):
    x = rng(44).uniform(100.0, 400.0, (8, 50)).astype(np.float32)
    y = nf.softmax(x, -1)
    check_f32(y, ref_softmax(x, -1))
    ly = nf.log_softmax(x, -1)
    assert np.all(np.isfinite(ly))
    np.testing.assert_allclose(ly, ref_log_softmax(x, -1), rtol=1e-6, atol=1e-4)


def test_softmax_then_scale(nf):
    x = randn(rng(45), (4, 33))
    y = nf.softmax(x, -1) * np.float32(2.5)
    check_f32(y, 2.5 * ref_softmax(x, -1))


@pytest.mark.parametrize("axis", [-1, 1])
def test_log_softmax(nf, axis):
    x = randn(rng(46), (5, 40, 17))
    out = poisoned(x.shape)
    check_f32(nf.log_softmax(x, axis, out=out), ref_log_softmax(x, axis))


def test_softmax_large_threaded(nf):
    # Big enough to take the multi-threaded C branch.
    x = randn(rng(47), (300, 1000), 4.0)
    out = poisoned(x.shape)
    check_f32(nf.softmax(x, -1, out=out), ref_softmax(x, -1))
    check_f32(nf.log_softmax(x, -1, out=out), ref_log_softmax(x, -1))


def test_softmax_strided_and_inplace(nf):
    g = rng(48)
    x = randn(g, (64, 48)).T  # non-contiguous rows
    check_f32(nf.softmax(x, -1), ref_softmax(x, -1))
    buf = randn(g, (12, 80))
    ref = ref_softmax(buf, -1)
    assert nf.softmax(buf, -1, out=buf) is buf
    check_f32(buf, ref)
    z = randn(g, (12, 80))
    out = poisoned((80, 12)).T  # strided out
    assert nf.softmax(z, -1, out=out) is out
    check_f32(out, ref_softmax(z, -1))


def test_softmax_exp_range_relative(nf):
    # Probabilities down to 1e-35: the exp kernel must be accurate in relative terms.
    t = np.linspace(0.0, 80.0, 4001)
    x = np.zeros((t.size, 24), np.float32)
    x[:, 1:] = -t[:, None].astype(np.float32) * rng(50).uniform(0.5, 1.0, 23).astype(np.float32)
    y = nf.softmax(x, -1).astype(np.float64)
    ref = ref_softmax(x, -1)
    assert np.max(np.abs(y - ref) / ref) < 2e-6


def test_softmax_inf_rows(nf):
    x = randn(rng(51), (3, 40))
    x[0, ::3] = -np.inf  # masked entries -> exactly 0
    x[1, :] = -np.inf  # fully masked: NaN, as NumPy's formula gives
    x[2, 5] = np.nan
    y = nf.softmax(x, -1)
    check_f32(y[:1], ref_softmax(x[:1], -1))
    assert np.all(y[0, ::3] == 0.0)
    assert np.all(np.isnan(y[1])) and np.all(np.isnan(y[2]))


@pytest.mark.parametrize("half", ["f16", "bf16"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_half(nf, half, axis):
    dt, key = (np.float16, np.float16) if half == "f16" else (bf16(), "bfloat16")
    x = randn(rng(49), (7, 300), 3.0, dt)
    out = poisoned(x.shape, dt)
    y = nf.softmax(x, axis, out=out)
    assert y is out and y.dtype == dt
    check(y, ref_softmax(x, axis), key)
    check(nf.log_softmax(x, axis), ref_log_softmax(x, axis), key)


def test_half_rows_threaded_blocks(nf):
    # float16 through the threaded C branch: rows claimed in blocks from a shared counter
    # (301 rows of 700: 23-row blocks and a partial last one), one scratch row per thread.
    g = rng(61)
    x, w = randn(g, (301, 700), 3.0, np.float16), randn(g, (700,))
    out = poisoned(x.shape, np.float16)
    assert nf.softmax(x, -1, out=out) is out
    check(out, ref_softmax(x, -1), np.float16)
    check(nf.rms_norm(x, w, 1e-5, out=poisoned(x.shape, np.float16)), ref_rms(x, w, 1e-5),
          np.float16)


# ---------------------------------------------------------------- RMSNorm / LayerNorm suite

def test_rms_norm_1d(nf):
    g = rng(50)
    x, w = randn(g, (64,)), randn(g, (64,))
    check_f32(nf.rms_norm(x, w, 1e-5), ref_rms(x, w, 1e-5))


def test_rms_norm_2d(nf):
    g = rng(51)
    x, w = randn(g, (4, 64)), randn(g, (64,))
    out = poisoned(x.shape)
    assert nf.rms_norm(x, w, 1e-5, out=out) is out
    check_f32(out, ref_rms(x, w, 1e-5))


def test_rms_norm_batched(nf):
    g = rng(52)
    x, w = randn(g, (2, 10, 128), 3.0), randn(g, (128,))
    check_f32(nf.rms_norm(x, w, 1e-6), ref_rms(x, w, 1e-6))


@pytest.mark.parametrize("eps", [1e-8, 1e-6, 1e-5, 1e-3, 0.1])
def test_rms_norm_eps(nf, eps):
    g = rng(53)
    x, w = randn(g, (6, 96), 0.2), randn(g, (96,))
    check_f32(nf.rms_norm(x, w, eps), ref_rms(x, w, eps))


def test_rms_norm_unit_rms(nf):
    x = randn(rng(54), (8, 256), 5.0)
    y = nf.rms_norm(x, None, 1e-6, out=poisoned(x.shape))
    check_f32(y, ref_rms(x, None, 1e-6))
    np.testing.assert_allclose(np.sqrt((y.astype(np.float64) ** 2).mean(-1)), 1.0, atol=1e-5)


def test_rms_norm_large_threaded(nf):
    g = rng(55)
    x, w = randn(g, (257, 1024)), randn(g, (1024,))
    out = poisoned(x.shape)
    check_f32(nf.rms_norm(x, w, 1e-5, out=out), ref_rms(x, w, 1e-5))
    check_f32(nf.rms_norm(x, None, 1e-5, out=x), ref_rms(randn(rng(55), (257, 1024)), None, 1e-5))


@pytest.mark.parametrize("half", ["f16", "bf16"])
def test_norms_half(nf, half):
    dt, key = (np.float16, np.float16) if half == "f16" else (bf16(), "bfloat16")
    g = rng(56)
    x, w, b = randn(g, (5, 3, 200), 2.0, dt), randn(g, (200,), 1.0, dt), randn(g, (200,), 1.0, dt)
    out = poisoned(x.shape, dt)
    assert nf.rms_norm(x, w, 1e-5, out=out) is out and out.dtype == dt
    check(out, ref_rms(x, w, 1e-5), key)
    check(nf.layer_norm(x, w, b, 1e-5), ref_layer_norm(x, w, b, 1e-5), key)


@pytest.mark.parametrize("affine", ["none", "weight", "both"])
def test_layer_norm(nf, affine):
    g = rng(57)
    # Offset mean: the two-pass variance must not cancel.
    x = randn(g, (3, 11, 160)) + np.float32(50.0)
    w = randn(g, (160,)) if affine != "none" else None
    b = randn(g, (160,)) if affine == "both" else None
    out = poisoned(x.shape)
    assert nf.layer_norm(x, w, b, 1e-5, out=out) is out
    check_f32(out, ref_layer_norm(x, w, b, 1e-5))


def test_layer_norm_large_threaded(nf):
    g = rng(58)
    x, w, b = randn(g, (300, 512)), randn(g, (512,)), randn(g, (512,))
    check_f32(nf.layer_norm(x, w, b, 1e-6, out=poisoned(x.shape)), ref_layer_norm(x, w, b, 1e-6))


# ---------------------------------------------------------------- RoPE

@pytest.mark.parametrize("traditional", [False, True])
@pytest.mark.parametrize("dims,offset,scale", [(64, 0, 1.0), (64, 17, 1.0), (32, 5, 0.5)])
def test_rope(nf, traditional, dims, offset, scale):
    x = randn(rng(60 + dims + offset), (2, 3, 12, 64))
    out = poisoned(x.shape)
    y = nf.rope(x, dims, traditional, 10000.0, scale, offset, out=out)
    assert y is out
    check_f32(y, ref_rope(x, dims, traditional, 10000.0, scale, offset))
    if dims < 64:
        assert np.array_equal(y[..., dims:], x[..., dims:])


def test_rope_inplace_and_half(nf):
    g = rng(61)
    x = randn(g, (4, 9, 32))
    ref = ref_rope(x, 24, False, 500.0, 1.0, 3)
    assert nf.rope(x, 24, False, 500.0, 1.0, 3, out=x) is x
    check_f32(x, ref)
    xh = randn(g, (4, 9, 32), dtype=np.float16)
    check(nf.rope(xh, 32, True, 10000.0, 1.0, 100), ref_rope(xh, 32, True, 10000.0, 1.0, 100),
          np.float16)

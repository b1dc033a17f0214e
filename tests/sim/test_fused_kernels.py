"""Fused-primitive kernels against float64 NumPy: shaders/layernorm.metal, lora.metal, rope.metal,
attention.metal and the log variant of softmax.metal. Outputs start poisoned (NaN), every launch
runs twice (threads in both orders, bit-identical results required)."""

from __future__ import annotations

import numpy as np
import pytest

from ._helpers import (FLOATS, MATMUL_ARGS, as_f64, poisoned, random_array, row_args,
                       run_both_orders, threads_for_block)

pytestmark = pytest.mark.sim
SHADERS = ["layernorm", "lora", "rope", "attention", "softmax", "matmul"]

# Host mirrors of the argument structs declared in the .metal files.
LORA_ARGS = np.dtype([("rows", "<i8"), ("n_in", "<i8"), ("rank", "<i8"), ("n_out", "<i8"),
                      ("scale", "<f4"), ("reserved", "<f4")])
ROPE_ARGS = np.dtype([("rows", "<i8"), ("L", "<i8"), ("D", "<i8"), ("dims", "<i8"), ("offset", "<i8")])
SDPA_ARGS = np.dtype([(f, "<i4") for f in ("B", "Hq", "Hkv", "Lq", "Lk", "D", "Dv")] +
                     [("scale", "<f4")] + [(f, "<i8", (4,)) for f in ("q", "k", "v", "m")])

# (rtol, atol) for O(1) outputs rounded once to the dtype.
TOL = {"f32": (1e-5, 1e-5), "f16": (5e-3, 5e-3), "bf16": (2e-2, 2e-2)}


def _close(actual, expected, suffix, scale=1.0):
    rtol, atol = TOL[suffix]
    np.testing.assert_allclose(as_f64(actual), expected, rtol=rtol, atol=atol * scale)


def _struct(dtype, **fields):
    a = np.zeros(1, dtype)
    for k, v in fields.items():
        a[k] = v
    return a


# ------------------------------------------------------------------ layer norm
def _layernorm(x, w, b, eps):
    x = as_f64(x)
    d = x - x.mean(axis=1, keepdims=True)
    y = d / np.sqrt((d * d).mean(axis=1, keepdims=True) + eps)
    if w is not None:
        y = y * as_f64(w)
    if b is not None:
        y = y + as_f64(b)
    return y


def _run_layernorm(shaders, variant, suffix, x, w, b, threads, eps=1e-5):
    rows, n = x.shape
    out = poisoned(x.shape, x.dtype)
    kernel = shaders["layernorm"].kernel(f"layernorm_{variant}_{suffix}",
                                         constants={"mc_has_weight": w is not None, "mc_has_bias": b is not None})
    run_both_orders(kernel, x, w, b, out, row_args(rows, n, eps), out_index=3, grid=rows, threadgroup=threads)
    _close(out, _layernorm(x, w, b, eps), suffix)


WB = [(True, True), (False, False), (True, False), (False, True)]


@pytest.mark.parametrize("has_w,has_b", WB)
@pytest.mark.parametrize("rows,n", [(2, 1), (3, 7), (4, 1000), (2, 4096)])
@pytest.mark.parametrize("suffix", FLOATS)
def test_layernorm_block(shaders, rng, suffix, rows, n, has_w, has_b):
    # values around 50: the mean must be removed without cancelling the variance
    x = random_array(rng, (rows, n), suffix, 47, 53)
    w = random_array(rng, n, suffix, 0.5, 2) if has_w else None
    b = random_array(rng, n, suffix, -1, 1) if has_b else None
    _run_layernorm(shaders, "block", suffix, x, w, b, threads_for_block(n))


@pytest.mark.parametrize("has_w,has_b", [(True, True), (False, False)])
@pytest.mark.parametrize("rows,n,threads", [(2, 4097, 1024), (2, 10000, 256), (3, 100, 64)])
@pytest.mark.parametrize("suffix", FLOATS)
def test_layernorm_looped(shaders, rng, suffix, rows, n, threads, has_w, has_b):
    x = random_array(rng, (rows, n), suffix, -3, 5)
    w = random_array(rng, n, suffix, 0.5, 2) if has_w else None
    b = random_array(rng, n, suffix, -1, 1) if has_b else None
    _run_layernorm(shaders, "looped", suffix, x, w, b, threads)


# ------------------------------------------------------------------ log_softmax
def _log_softmax(x):
    x = as_f64(x)
    d = x - x.max(axis=1, keepdims=True)
    return d - np.log(np.exp(d).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("variant,rows,n,threads", [("block", 2, 1, None), ("block", 3, 7, None),
                                                    ("block", 4, 1000, None), ("block", 2, 4096, None),
                                                    ("looped", 2, 4097, 1024), ("looped", 3, 10000, 256),
                                                    ("looped", 2, 100, 64)])
@pytest.mark.parametrize("suffix", FLOATS)
def test_log_softmax(shaders, rng, suffix, variant, rows, n, threads):
    x = random_array(rng, (rows, n), suffix, -6, 6)
    x[0, n // 2] = 20.0  # a large value away from the first chunk: the running max must rescale
    out = poisoned(x.shape, x.dtype)
    run_both_orders(shaders["softmax"].kernel(f"softmax_log_{variant}_{suffix}"), x, out, row_args(rows, n),
                    out_index=1, grid=rows, threadgroup=threads or threads_for_block(n))
    ref = _log_softmax(x)  # values down to about -30: relative tolerance on top of the absolute
    _close(out, ref, suffix, scale=1.0 if suffix == "f32" else 4.0)


# ------------------------------------------------------------------ rope
def _freq_table(dims, base, scale):
    f = scale * float(base) ** (-np.arange(0, dims, 2, dtype=np.float64) / dims)
    hi = f.astype(np.float32)
    lo = (f - hi).astype(np.float32)
    return np.stack([hi, lo], axis=1).reshape(-1).copy()


def _rope(x, dims, traditional, base, scale, offset):
    """x (rows, L, D) in float64, angles in float64."""
    x = as_f64(x)
    L = x.shape[-2]
    theta = np.outer((offset + np.arange(L)) * scale, base ** (-np.arange(0, dims, 2) / dims))
    c, s = np.cos(theta), np.sin(theta)
    out = x.copy()
    i1, i2 = (slice(0, dims, 2), slice(1, dims, 2)) if traditional else \
        (slice(0, dims // 2), slice(dims // 2, dims))
    out[..., i1] = x[..., i1] * c - x[..., i2] * s
    out[..., i2] = x[..., i1] * s + x[..., i2] * c
    return out


# (batch, L, D, dims, offset, base, scale, threads per group along the features)
ROPE_CASES = [(2, 5, 16, 16, 0, 10000.0, 1.0, 8), (3, 7, 24, 8, 3, 10000.0, 1.0, 16),
              (1, 40, 64, 64, 20000, 10000.0, 1.0, 32), (2, 9, 10, 6, 1, 500.0, 0.25, 4),
              (1, 3, 2, 2, 7, 10000.0, 2.0, 1)]


@pytest.mark.parametrize("case", ROPE_CASES, ids=lambda c: "x".join(map(str, c[:5])))
@pytest.mark.parametrize("traditional", [False, True])
@pytest.mark.parametrize("suffix", FLOATS)
def test_rope(shaders, rng, suffix, traditional, case):
    batch, L, D, dims, offset, base, scale, tg = case
    x = random_array(rng, (batch, L, D), suffix)
    out = poisoned(x.shape, x.dtype)
    args = _struct(ROPE_ARGS, rows=batch * L, L=L, D=D, dims=dims, offset=offset)
    cols = D - dims // 2
    name = f"rope_{'traditional' if traditional else 'split'}_{suffix}"
    run_both_orders(shaders["rope"].kernel(name), x, _freq_table(dims, base, scale), out, args, out_index=2,
                    threads=(cols, batch * L), threadgroup=(tg, 1))
    # positions * frequencies reach 2e4 rad: the hi/lo angles must keep float64's accuracy
    _close(out, _rope(x, dims, traditional, base, scale, offset), suffix)
    np.testing.assert_array_equal(out[..., dims:], x[..., dims:])  # the tail is copied bit for bit


# ------------------------------------------------------------------ LoRA
def _lora_args(rows, n_in, rank, n_out, scale):
    return _struct(LORA_ARGS, rows=rows, n_in=n_in, rank=rank, n_out=n_out, scale=scale)


def _run_lora(shaders, suffix, x, a, b, scale, w=None, bias=None, simdgroups=None):
    """The host's sequence: lora_down -> t, then lora_up (t @ b) or, with w, lora_linear (tiled
    x @ w + t @ b + bias) -> y. Returns (t, y)."""
    rows, n_in = x.shape
    rank, n_out = b.shape
    args = _lora_args(rows, n_in, rank, n_out, scale)
    t = poisoned((rows, rank), np.float32)
    run_both_orders(shaders["lora"].kernel(f"lora_down_{suffix}"), x, a, t, args, out_index=2, grid=rows,
                    threadgroup=32 * (simdgroups or min(8, rank)))
    y = poisoned((rows, n_out), x.dtype)
    if w is not None:
        margs = _struct(MATMUL_ARGS, M=rows, N=n_out, K=n_in, batch=1, a_row_stride=n_in, a_col_stride=1,
                        b_row_stride=n_out, b_col_stride=1, c_batch_stride=rows * n_out)
        fused = shaders["lora"].kernel(f"lora_linear_{suffix}", constants={"mc_has_bias": bias is not None})
        run_both_orders(fused, x, w, t, b, bias, y, margs, args, out_index=5,
                        grid=(-(-n_out // 32), -(-rows // 32), 1), threadgroup=(16, 16))
        return t, y
    up = shaders["lora"].kernel(f"lora_up_{suffix}", constants={"mc_has_bias": bias is not None})
    up(t, b, bias, y, args, threads=(n_out, rows), threadgroup=(min(64, n_out), 1))
    return t, y


# (rows, n_in, rank, n_out, simdgroups of lora_down)
LORA_CASES = [(1, 16, 4, 16, 4), (37, 64, 8, 50, 8), (5, 300, 16, 7, 3), (3, 33, 1, 5, 1),
              (20, 128, 40, 96, 8), (2, 5, 3, 130, 2)]


@pytest.mark.parametrize("case", LORA_CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("suffix", FLOATS)
def test_lora(shaders, rng, suffix, case):
    rows, n_in, rank, n_out, sg = case
    x = random_array(rng, (rows, n_in), suffix, -1, 1)
    a = random_array(rng, (n_in, rank), suffix, -1, 1)
    b = random_array(rng, (rank, n_out), suffix, -1, 1)
    scale = 2.0 / rank
    t, y = _run_lora(shaders, suffix, x, a, b, scale, simdgroups=sg)
    t_ref = scale * (as_f64(x) @ as_f64(a))
    mag = np.sqrt(n_in) * scale  # float accumulation of n_in O(1) products
    np.testing.assert_allclose(t, t_ref, rtol=1e-5, atol=1e-6 * mag)
    _close(y, t_ref @ as_f64(b), suffix, scale=mag * np.sqrt(rank))


# (rows, n_in, rank, n_out): tiles cut at every edge, K not a multiple of 16, rank 1 and 17
LORA_LINEAR_CASES = [(21, 70, 8, 45), (33, 16, 1, 32), (1, 5, 17, 70), (40, 33, 4, 1)]


@pytest.mark.parametrize("case", LORA_LINEAR_CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("suffix", FLOATS)
def test_lora_linear(shaders, rng, suffix, has_bias, case):
    rows, n_in, rank, n_out = case
    x = random_array(rng, (rows, n_in), suffix, -1, 1)
    w = random_array(rng, (n_in, n_out), suffix, -0.2, 0.2)
    a = random_array(rng, (n_in, rank), suffix, -0.2, 0.2)
    b = random_array(rng, (rank, n_out), suffix, -1, 1)
    bias = random_array(rng, n_out, suffix, -1, 1) if has_bias else None
    _, y = _run_lora(shaders, suffix, x, a, b, 0.5, w=w, bias=bias)
    ref = as_f64(x) @ as_f64(w) + 0.5 * (as_f64(x) @ as_f64(a)) @ as_f64(b)
    if has_bias:
        ref = ref + as_f64(bias)
    # one rounding to the dtype, at the end (x @ w stays in the float accumulators)
    _close(y, ref, suffix)


def test_lora_up_reads_only_the_intermediate(shaders, rng):
    """x @ a is computed once: lora_up binds neither x nor a (it reads the (rows, rank) t and b),
    so destroying x and a after lora_down leaves the result unchanged."""
    info = {k["name"]: k for k in shaders["lora"].info["kernels"]}
    up_buffers = [p["name"] for p in info["lora_up_f32"]["params"] if p["binding"] == "buffer"]
    down_buffers = [p["name"] for p in info["lora_down_f32"]["params"] if p["binding"] == "buffer"]
    assert up_buffers == ["t", "b", "bias", "y", "args"]
    assert down_buffers == ["x", "a", "t", "args"]
    rows, n_in, rank, n_out = 9, 96, 4, 300
    x = random_array(rng, (rows, n_in), "f32", -1, 1)
    a = random_array(rng, (n_in, rank), "f32", -1, 1)
    b = random_array(rng, (rank, n_out), "f32", -1, 1)
    args = _lora_args(rows, n_in, rank, n_out, 0.5)
    ref = 0.5 * (as_f64(x) @ as_f64(a)) @ as_f64(b)
    t = poisoned((rows, rank), np.float32)
    shaders["lora"].kernel("lora_down_f32")(x, a, t, args, grid=rows, threadgroup=128)
    x[...] = np.nan
    a[...] = np.nan
    y = poisoned((rows, n_out), np.float32)
    shaders["lora"].kernel("lora_up_f32", constants={"mc_has_bias": False})(
        t, b, None, y, args, threads=(n_out, rows), threadgroup=(64, 1))
    _close(y, ref, "f32", scale=10.0)


# ------------------------------------------------------------------ attention
def _sdpa(q, k, v, scale, keep=None, add=None, causal=False):
    """float64 reference with np_fused's semantics: hidden keys score the dtype minimum."""
    q, k, v = as_f64(q), as_f64(k), as_f64(v)
    G = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, G, axis=1), np.repeat(v, G, axis=1)
    s = (q * scale) @ k.swapaxes(-1, -2)
    Lq, Lk = s.shape[-2:]
    if causal:
        keep = np.arange(Lk)[None, :] <= np.arange(Lq)[:, None] + (Lk - Lq)
    if keep is not None:
        s = np.where(keep, s, np.finfo(np.float64).min)
    if add is not None:
        s = s + as_f64(add)
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return (e / e.sum(-1, keepdims=True)) @ v


def _estrides(view):
    return [st // view.itemsize for st in view.strides]


def _run_sdpa(shaders, suffix, q, k, v, scale, simdgroups, keep=None, add=None, causal=False,
              bufs=None):
    """q, k, v are views (any strides) of the C-contiguous arrays in bufs (default: themselves)."""
    B, Hq, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    mask = keep if keep is not None else add
    m_strides = _estrides(np.broadcast_to(mask, (B, Hq, Lq, Lk))) if mask is not None else [0] * 4
    args = _struct(SDPA_ARGS, B=B, Hq=Hq, Hkv=Hkv, Lq=Lq, Lk=Lk, D=D, Dv=Dv, scale=scale,
                   q=_estrides(q), k=_estrides(k), v=_estrides(v), m=m_strides)
    out = poisoned((B, Hq, Lq, Dv), q.dtype)
    kernel = shaders["attention"].kernel(f"attention_sdpa_{suffix}", constants={
        "mc_causal": causal, "mc_bool_mask": keep is not None, "mc_add_mask": add is not None})
    qb, kb, vb = bufs or (q, k, v)
    mbuf = None if mask is None else np.ascontiguousarray(mask)
    run_both_orders(kernel, qb, kb, vb, mbuf if keep is not None else None, mbuf if add is not None else None,
                    out, args, out_index=5, grid=(Lq, Hq, B), threadgroup=32 * simdgroups)
    return out


# (B, Hq, Hkv, Lq, Lk, D, Dv, simdgroups)
SDPA_SHAPES = [(1, 1, 1, 1, 1, 8, 8, 1), (2, 4, 2, 5, 7, 8, 8, 4), (1, 8, 2, 3, 100, 64, 32, 4),
               (2, 2, 2, 9, 33, 40, 72, 3), (1, 2, 1, 4, 3, 256, 256, 8), (1, 3, 3, 6, 70, 33, 1, 2)]


@pytest.mark.parametrize("shape", SDPA_SHAPES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("mask", ["none", "causal", "bool", "additive"])
@pytest.mark.parametrize("suffix", FLOATS)
def test_sdpa(shaders, rng, suffix, mask, shape):
    B, Hq, Hkv, Lq, Lk, D, Dv, sg = shape
    q = random_array(rng, (B, Hq, Lq, D), suffix, -1, 1)
    k = random_array(rng, (B, Hkv, Lk, D), suffix, -1, 1)
    v = random_array(rng, (B, Hkv, Lk, Dv), suffix)
    scale = D ** -0.5
    keep = add = None
    if mask == "bool":
        keep = rng.random((Lq, Lk)) > 0.4           # broadcast over batch and heads
        keep[0, :] = False                           # a row that sees nothing: the mean of v
    elif mask == "additive":
        add = random_array(rng, (B, 1, 1, Lk), suffix, -2, 2)  # broadcast over heads and rows
    out = _run_sdpa(shaders, suffix, q, k, v, scale, sg, keep=keep, add=add, causal=mask == "causal")
    _close(out, _sdpa(q, k, v, scale, keep=keep, add=add, causal=mask == "causal"), suffix)


@pytest.mark.parametrize("suffix", ["f32", "f16"])
def test_sdpa_strided_inputs_and_causal_with_more_queries_than_keys(shaders, rng, suffix):
    """q, k, v read in place from (B, L, H, D) buffers; Lq > Lk leaves the first rows no key."""
    B, Hq, Hkv, Lq, Lk, D = 2, 4, 1, 6, 4, 16
    qb = random_array(rng, (B, Lq, Hq, D), suffix, -1, 1)
    kb = random_array(rng, (B, Lk, Hkv, D), suffix, -1, 1)
    vb = random_array(rng, (B, Lk, Hkv, D), suffix)
    q, k, v = (t.transpose(0, 2, 1, 3) for t in (qb, kb, vb))
    out = _run_sdpa(shaders, suffix, q, k, v, 0.25, 2, causal=True, bufs=(qb, kb, vb))
    _close(out, _sdpa(q, k, v, 0.25, causal=True), suffix)
    np.testing.assert_allclose(as_f64(out[:, :, 0]), np.broadcast_to(as_f64(v).mean(2), (B, Hq, D)),
                               rtol=TOL[suffix][0], atol=TOL[suffix][1])


def test_sdpa_additive_minus_infinity(shaders, rng):
    """-inf in an additive mask weighs 0 wherever it is (also on a simdgroup's first key)."""
    B, H, Lq, Lk, D = 1, 2, 3, 10, 8
    q, k, v = (random_array(rng, s, "f32") for s in ((B, H, Lq, D), (B, H, Lk, D), (B, H, Lk, D)))
    add = random_array(rng, (Lq, Lk), "f32", -1, 1)
    add[:, :4] = -np.inf
    out = _run_sdpa(shaders, "f32", q, k, v, 0.3, 4, add=add)
    _close(out, _sdpa(q, k, v, 0.3, add=add), "f32")


def test_dtype_table_covers_the_instantiations(shaders):
    """Every fused family is instantiated for f32, f16 and bf16 under the naming rule."""
    expected = {"layernorm": ["block", "looped"], "lora": ["down", "up"], "rope": ["traditional", "split"],
                "attention": ["sdpa"], "softmax": ["block", "looped", "log_block", "log_looped"]}
    for family, variants in expected.items():
        names = set(shaders[family].kernel_names)
        for variant in variants:
            for suffix in FLOATS:
                assert f"{family}_{variant}_{suffix}" in names

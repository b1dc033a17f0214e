"""Fused primitives through the graph API and the automatic rewriting of hand-written composites.

The predecessor's (metal-candle) LoRA / softmax / RMSNorm suites, kept: float32 inputs, max abs
difference < 1e-5 against a float64 NumPy reference, on every device, through both the fused API
and the composite a user writes by hand (which the executor rewrites into the fused primitive).
"""
import numpy as np
import pytest

import metalcandle as mc
from metalcandle.errors import ShapeError, AxisError
from fused_refs import (f32, lora_weights, ref_lora, ref_softmax, ref_rms, ref_ln, check,
                        lora_composite, softmax_composite, rms_composite, ln_composite)


def rewrites(kind):
    return mc._executor_stats()["fusion_" + kind]


# ------------------------------------------------------------------ LoRA
LORA_CASES = [((1, 16), 4, 16, 8.0 / 4), ((8, 64), 8, 64, 2.0), ((1, 10, 128), 8, 128, 2.0),
              ((4, 20, 128), 8, 128, 2.0), ((8, 5, 128), 8, 128, 2.0)] + \
             [((4, 64), r, 64, 16.0 / r) for r in (2, 4, 8, 16)]


@pytest.mark.parametrize("xshape,rank,out,scale", LORA_CASES)
@pytest.mark.parametrize("form", ["fused", "composite", "reflected", "scaled-intermediate"])
def test_lora(device, rng, xshape, rank, out, scale, form):
    x = f32(rng, *xshape)
    a, b = lora_weights(rng, xshape[-1], rank, out)
    X, A, B = mc.array(x), mc.array(a), mc.array(b)
    before = rewrites("lora")
    if form == "fused":
        y = mc.fast.lora(X, A, B, scale)
    elif form == "composite":
        y = lora_composite(X, A, B, scale)
    elif form == "reflected":
        y = scale * ((X @ A) @ B)
    else:
        y = ((X @ A) * scale) @ B
    check(y, ref_lora(x, a, b, scale))
    if form != "fused":
        assert rewrites("lora") == before + 1


def test_lora_two_layers_chained_one_eval(device, rng):
    x = f32(rng, 4, 32)
    a1, b1 = lora_weights(rng, 32, 4, 32)
    a2, b2 = lora_weights(rng, 32, 4, 32)
    X = mc.array(x)
    h = X @ mc.array(np.eye(32, dtype=np.float32)) + lora_composite(X, mc.array(a1), mc.array(b1), 2.0)
    y = h + lora_composite(h, mc.array(a2), mc.array(b2), 2.0)
    mc.eval(y)
    H = x.astype(np.float64) + ref_lora(x, a1, b1, 2.0)
    check(y, H + ref_lora(H, a2, b2, 2.0))


def test_lora_linear(device, rng):
    x, w, bias = f32(rng, 3, 7, 32), f32(rng, 32, 24), f32(rng, 24)
    a, b = lora_weights(rng, 32, 4, 24)
    y = mc.fast.lora_linear(mc.array(x), mc.array(w), mc.array(bias), mc.array(a), mc.array(b), 0.5)
    check(y, x.astype(np.float64) @ w + bias + ref_lora(x, a, b, 0.5), 1e-4)


def test_lora_intermediate_held_by_user_is_not_fused_away(device, rng):
    x = f32(rng, 4, 16)
    a, b = lora_weights(rng, 16, 4, 8)
    h = mc.array(x) @ mc.array(a)        # the user keeps h: it must be computed and kept
    y = (h @ mc.array(b)) * 3.0
    mc.eval(y)
    assert h.is_evaluated
    check(h, x.astype(np.float64) @ a)
    check(y, ref_lora(x, a, b, 3.0))


# ------------------------------------------------------------------ softmax
@pytest.mark.parametrize("shape,axis", [((64,), -1), ((4, 64), -1), ((2, 10, 64), -1),
                                        ((2, 10, 64), 0), ((2, 10, 64), 1), ((2, 10, 64), 2)])
@pytest.mark.parametrize("form", ["fused", "composite"])
def test_softmax(device, rng, shape, axis, form):
    x = f32(rng, *shape)
    before = rewrites("softmax")
    y = mc.softmax(mc.array(x), axis) if form == "fused" else softmax_composite(mc.array(x), axis)
    check(y, ref_softmax(x, axis))
    assert np.allclose(np.asarray(y).sum(axis), 1.0, atol=1e-5)
    if form == "composite":
        assert rewrites("softmax") == before + 1


def test_softmax_large_values_stable(device, rng):
    x = rng.uniform(100, 400, (4, 64)).astype(np.float32)
    for y in (mc.softmax(mc.array(x)), softmax_composite(mc.array(x))):
        v = np.asarray(y)
        assert np.all(np.isfinite(v))
        check(y, ref_softmax(x))


def test_softmax_then_scale_and_log_softmax(device, rng):
    x = f32(rng, 3, 40)
    check(mc.softmax(mc.array(x)) * 2.5, 2.5 * ref_softmax(x))
    check(mc.log_softmax(mc.array(x)), np.log(ref_softmax(x)))


# ------------------------------------------------------------------ RMSNorm / LayerNorm
@pytest.mark.parametrize("shape", [(64,), (4, 64), (2, 10, 128)])
@pytest.mark.parametrize("eps", [1e-5, 1e-6, 1e-3])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("form", ["fused", "composite"])
def test_rms_norm(device, rng, shape, eps, weighted, form):
    x = f32(rng, *shape)
    w = f32(rng, shape[-1]) if weighted else None
    W = mc.array(w) if weighted else None
    before = rewrites("rms_norm")
    y = mc.fast.rms_norm(mc.array(x), W, eps) if form == "fused" else rms_composite(mc.array(x), W, eps)
    check(y, ref_rms(x, w, eps))
    if form == "composite":
        assert rewrites("rms_norm") == before + 1
    if not weighted:   # normalised rows have RMS ~ 1
        assert np.allclose(np.sqrt((np.asarray(y, np.float64) ** 2).mean(-1)), 1.0, atol=1e-3)


def test_rms_norm_then_scale_and_after_matmul(device, rng):
    x, m, w = f32(rng, 4, 32), f32(rng, 32, 64), f32(rng, 64)
    check(mc.fast.rms_norm(mc.array(x) @ mc.array(m), mc.array(w), 1e-5) * 0.5,
          0.5 * ref_rms(x.astype(np.float64) @ m, w, 1e-5))
    check(rms_composite(mc.array(x) @ mc.array(m), mc.array(w), 1e-5),
          ref_rms(x.astype(np.float64) @ m, w, 1e-5))


@pytest.mark.parametrize("form", ["fused", "composite"])
def test_layer_norm(device, rng, form):
    x, w, b = f32(rng, 2, 10, 128), f32(rng, 128), f32(rng, 128)
    X, W, B = mc.array(x), mc.array(w), mc.array(b)
    before = rewrites("layer_norm")
    y = mc.fast.layer_norm(X, W, B, 1e-5) if form == "fused" else ln_composite(X, W, B, 1e-5)
    check(y, ref_ln(x, w, b, 1e-5))
    if form == "composite":
        assert rewrites("layer_norm") == before + 1


def test_fusion_switch_off_gives_same_answer(device, rng):
    x = f32(rng, 4, 32)
    mc.set_fusion(False)
    try:
        before = mc._executor_stats()["fusion_rewrites"]
        y = softmax_composite(mc.array(x))
        check(y, ref_softmax(x))
        assert mc._executor_stats()["fusion_rewrites"] == before
    finally:
        mc.set_fusion(True)


def test_pattern_near_misses_compute_as_written(device, rng):
    # Shapes the norm/softmax matchers look at (a 1-D bias or weight after a non-binary node)
    # must fall through to the written ops, not trip the matcher.
    x, b = f32(rng, 3, 8), f32(rng, 8)
    X, B = mc.array(x), mc.array(b)
    x64, b64 = x.astype(np.float64), b.astype(np.float64)
    cases = [
        (mc.exp(X) + B, np.exp(x64) + b64),
        (mc.tanh(X) * B, np.tanh(x64) * b64),
        (mc.sqrt(mc.abs(X)) * B + B, np.sqrt(np.abs(x64)) * b64 + b64),
        (X / mc.exp(X) + B, x64 / np.exp(x64) + b64),
        ((X * 2.0) * B, (x64 * 2.0) * b64),
    ]
    for y, ref in cases:
        np.testing.assert_allclose(y.numpy(), ref, rtol=2e-6, atol=2e-6)
    # pattern parts evaluated earlier have dropped their inputs: the matchers must not look inside
    e = mc.exp(X - mc.max(X, axis=-1, keepdims=True))
    s = mc.sum(e, axis=-1, keepdims=True)
    mc.eval(s)
    np.testing.assert_allclose((e / s).numpy(), ref_softmax(x), rtol=2e-6, atol=1e-7)


# ------------------------------------------------------------------ rope / attention
def ref_rope(x, dims, traditional, base, scale, offset):
    x = x.astype(np.float64)
    L = x.shape[-2]
    pos = (offset + np.arange(L)) * scale
    inv = base ** (-np.arange(0, dims, 2) / dims)
    th = pos[:, None] * inv[None, :]
    c, s = np.cos(th), np.sin(th)
    out = x.copy()
    if traditional:
        x1, x2 = x[..., 0:dims:2], x[..., 1:dims:2]
        out[..., 0:dims:2] = x1 * c - x2 * s
        out[..., 1:dims:2] = x1 * s + x2 * c
    else:
        h = dims // 2
        x1, x2 = x[..., :h], x[..., h:dims]
        out[..., :h] = x1 * c - x2 * s
        out[..., h:dims] = x1 * s + x2 * c
    return out


@pytest.mark.parametrize("traditional", [False, True])
@pytest.mark.parametrize("dims,offset", [(16, 0), (8, 3)])
def test_rope(device, rng, traditional, dims, offset):
    x = f32(rng, 2, 3, 5, 16)
    y = mc.fast.rope(mc.array(x), dims, traditional=traditional, base=10000.0, scale=1.0, offset=offset)
    check(y, ref_rope(x, dims, traditional, 10000.0, 1.0, offset), 1e-4)


@pytest.mark.parametrize("mask", [None, "causal", "bool", "additive"])
def test_sdpa_gqa(device, rng, mask):
    q, k, v = f32(rng, 2, 4, 5, 8), f32(rng, 2, 2, 7, 8), f32(rng, 2, 2, 7, 8)
    scale = 8 ** -0.5
    kk, vv = np.repeat(k, 2, axis=1).astype(np.float64), np.repeat(v, 2, axis=1).astype(np.float64)
    s = q.astype(np.float64) @ kk.transpose(0, 1, 3, 2) * scale
    m = None
    if mask == "causal":
        keep = np.arange(7)[None, :] <= np.arange(5)[:, None] + 2
        s = np.where(keep, s, -np.inf)
        m = "causal"
    elif mask == "bool":
        keep = rng.random((5, 7)) > 0.3
        keep[:, 0] = True
        s = np.where(keep, s, -np.inf)
        m = mc.array(keep)
    elif mask == "additive":
        add = f32(rng, 1, 1, 5, 7)
        s = s + add
        m = mc.array(add)
    ref = ref_softmax(s) @ vv
    y = mc.fast.scaled_dot_product_attention(mc.array(q), mc.array(k), mc.array(v), scale=scale, mask=m)
    check(y, ref, 1e-5)


# ------------------------------------------------------------------ build-time errors
def test_fused_errors_at_build_time():
    x = mc.ones((2, 8))
    with pytest.raises(ShapeError, match="lora"):
        mc.fast.lora(x, mc.ones((7, 2)), mc.ones((2, 4)), 1.0)
    with pytest.raises(ShapeError, match="lora"):
        mc.fast.lora(x, mc.ones((8, 2)), mc.ones((3, 4)), 1.0)
    with pytest.raises(ShapeError, match="rms_norm"):
        mc.fast.rms_norm(x, mc.ones((7,)), 1e-5)
    with pytest.raises(ValueError, match="eps"):
        mc.fast.rms_norm(x, None, -1.0)
    with pytest.raises(AxisError, match="softmax"):
        mc.softmax(x, axis=2)
    with pytest.raises(ValueError, match="rope"):
        mc.fast.rope(x, 3)
    with pytest.raises(ValueError, match="rope"):
        mc.fast.rope(x, 10)
    with pytest.raises(ShapeError, match="multiple"):
        mc.fast.scaled_dot_product_attention(mc.ones((1, 3, 2, 4)), mc.ones((1, 2, 2, 4)),
                                             mc.ones((1, 2, 2, 4)), scale=1.0)
    with pytest.raises(ShapeError, match="head dims"):
        mc.fast.scaled_dot_product_attention(mc.ones((1, 2, 2, 4)), mc.ones((1, 2, 2, 5)),
                                             mc.ones((1, 2, 2, 5)), scale=1.0)
    assert x.tolist() == [[1.0] * 8] * 2     # what was built before still works

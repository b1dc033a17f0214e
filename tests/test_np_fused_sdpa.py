"""CPU scaled_dot_product_attention (backends/np_fused.py) against float64 NumPy references, on
the NumPy path and the C path (its softmax rows) as in test_np_fused.py, whose fixture and helpers
it shares. Inputs are fresh random draws; out= buffers are poisoned with NaN.
"""
import numpy as np
import pytest

from test_np_fused import nf, randn, poisoned, check_f32, check, ref_sdpa, rng  # noqa: F401


# ---------------------------------------------------------------- attention

def _qkv(g, B, Hq, Hkv, Lq, Lk, D, dtype=np.float32):
    return (randn(g, (B, Hq, Lq, D), 1.0, dtype), randn(g, (B, Hkv, Lk, D), 1.0, dtype),
            randn(g, (B, Hkv, Lk, D), 1.0, dtype))


@pytest.mark.parametrize("Hq,Hkv", [(4, 4), (8, 2), (6, 1)])
def test_sdpa_gqa(nf, Hq, Hkv):
    q, k, v = _qkv(rng(70 + Hq + Hkv), 2, Hq, Hkv, 9, 13, 32)
    out = poisoned((2, Hq, 9, 32))
    y = nf.scaled_dot_product_attention(q, k, v, 32 ** -0.5, None, out=out)
    assert y is out
    check_f32(y, ref_sdpa(q, k, v, 32 ** -0.5, None))


@pytest.mark.parametrize("Lq,Lk", [(7, 7), (3, 11), (1, 20)])
def test_sdpa_causal(nf, Lq, Lk):
    q, k, v = _qkv(rng(80 + Lq), 1, 8, 2, Lq, Lk, 16)
    y = nf.scaled_dot_product_attention(q, k, v, 0.25, "causal")
    check_f32(y, ref_sdpa(q, k, v, 0.25, "causal"))


def test_sdpa_bool_mask(nf):
    g = rng(90)
    q, k, v = _qkv(g, 2, 4, 2, 6, 10, 16)
    mask = g.random((2, 1, 6, 10)) < 0.6
    mask[..., 0] = True  # no fully masked row
    y = nf.scaled_dot_product_attention(q, k, v, 0.25, mask, out=poisoned((2, 4, 6, 16)))
    check_f32(y, ref_sdpa(q, k, v, 0.25, mask))
    m2 = g.random((6, 10)) < 0.5
    m2[:, 3] = True
    check_f32(nf.scaled_dot_product_attention(q, k, v, 0.25, m2), ref_sdpa(q, k, v, 0.25, m2))


def test_sdpa_additive_mask(nf):
    g = rng(91)
    q, k, v = _qkv(g, 2, 6, 3, 5, 8, 16)
    mask = randn(g, (1, 6, 5, 8), 2.0)
    check_f32(nf.scaled_dot_product_attention(q, k, v, 0.25, mask), ref_sdpa(q, k, v, 0.25, mask))


def test_sdpa_long_chunks(nf):
    # Enough rows to split the query axis into several score blocks.
    g = rng(92)
    q, k, v = _qkv(g, 1, 4, 2, 500, 700, 16)
    y = nf.scaled_dot_product_attention(q, k, v, 0.25, "causal")
    check_f32(y, ref_sdpa(q, k, v, 0.25, "causal"))


def test_sdpa_half(nf):
    q, k, v = _qkv(rng(93), 1, 4, 2, 5, 9, 16, np.float16)
    y = nf.scaled_dot_product_attention(q, k, v, 0.25, "causal", out=poisoned((1, 4, 5, 16),
                                                                           np.float16))
    assert y.dtype == np.float16
    check(y, ref_sdpa(q, k, v, 0.25, "causal"), np.float16)

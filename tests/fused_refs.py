"""float64 NumPy references of the fused primitives, the composites users write by hand, and the
predecessor's criterion (max abs difference < 1e-5 for float32 inputs): shared by the fused-op
suites of every device (tests/test_fused.py, tests/test_metal_fused.py)."""
import numpy as np

import metalcandle as mc

TOL = 1e-5


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def lora_weights(rng, n_in, rank, out):
    # Realistic LoRA scales (a ~ 1/sqrt(in), b ~ 1/sqrt(rank)) keep outputs O(1), so the
    # predecessor's absolute 1e-5 criterion measures the kernel, not float32 rounding of big values.
    return f32(rng, n_in, rank) / np.sqrt(n_in), f32(rng, rank, out) / np.sqrt(rank)


def ref_lora(x, a, b, s):
    return s * (x.astype(np.float64) @ a) @ b


def ref_softmax(x, axis=-1):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def ref_rms(x, w, eps):
    x = x.astype(np.float64)
    r = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return r * w if w is not None else r


def ref_ln(x, w, b, eps):
    x = x.astype(np.float64)
    r = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    r = r * w if w is not None else r
    return r + b if b is not None else r


def check(t, ref, tol=TOL):
    """Max abs difference below tol (the predecessor's criterion), shapes equal."""
    got = np.asarray(t).astype(np.float64)
    assert got.shape == ref.shape
    err = np.max(np.abs(got - ref)) if got.size else 0.0
    assert err < tol, err


# ------------------------------------------------------------------ composites as users write them
def lora_composite(x, a, b, s):
    return (x @ a) @ b * s


def softmax_composite(x, axis=-1):
    m = x.max(axis, keepdims=True)
    e = mc.exp(x - m)
    return e / e.sum(axis, keepdims=True)


def rms_composite(x, w, eps):
    r = x * mc.rsqrt(mc.mean(x * x, -1, keepdims=True) + eps)
    return r * w if w is not None else r


def ln_composite(x, w, b, eps):
    mu = mc.mean(x, -1, keepdims=True)
    return (x - mu) * mc.rsqrt(mc.var(x, -1, keepdims=True) + eps) * w + b

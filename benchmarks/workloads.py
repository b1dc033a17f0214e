"""The graphs the cases time, written once against a peer adapter (see peers.py)."""
import numpy as np

CHAIN_C = -2.0   # y <- exp(0.5*y + c) converges (to ~0.16) instead of overflowing
MLP_OPS = 18
MLP_DIM = 64
MLP_BATCH = 8


def rand(shape, seed=0, dtype=np.float32):
    """Fresh standard-normal data (never zeros: a zero input can hide work a library skips)."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32).astype(dtype)


def chain(p, x, c, n):
    """``n`` elementwise ops on ``x``: multiply by a scalar, add a tensor, exp, repeated."""
    exp = p.exp
    y = x
    for i in range(n):
        k = i % 3
        if k == 0:
            y = y * 0.5
        elif k == 1:
            y = y + c
        else:
            y = exp(y)
    return y


def chain_inputs(p, size, seed=0):
    x = p.asarray(np.abs(rand(size, seed)))
    c = p.asarray(np.full(size, CHAIN_C, np.float32))
    return x, c


def mlp_inputs(p, seed=1):
    d, b = MLP_DIM, MLP_BATCH
    s = 1.0 / d ** 0.5   # a Python float: a NumPy float64 scalar would promote to float64
    return (p.asarray(rand((b, d), seed)), p.asarray(rand((d, d), seed + 1) * s),
            p.asarray(rand((d,), seed + 2) * 0.1), p.asarray(rand((d, d), seed + 3) * s),
            p.asarray(rand((d,), seed + 4) * 0.1), p.asarray(1 + 0.1 * rand((d,), seed + 5)))


def mlp_step(p, x, w1, b1, w2, b2, g):
    """One 18-op MLP block: two linear layers, relu/silu, softmax-like and rms-norm-like tails."""
    h = x @ w1                                   # 1
    h = h + b1                                   # 2
    h = p.relu(h)                                # 3
    h = h @ w2                                   # 4
    h = h + b2                                   # 5
    h = p.silu(h)                                # 6
    m = p.max(h, -1, keepdims=True)              # 7
    e = p.exp(h - m)                             # 8, 9
    s = p.sum(e, -1, keepdims=True)              # 10
    h = e / s                                    # 11
    ms = p.mean(h * h, -1, keepdims=True)        # 12, 13
    r = p.rsqrt(ms + 1e-5)                       # 14, 15
    h = h * r                                    # 16
    h = h * g                                    # 17
    return h + x                                 # 18

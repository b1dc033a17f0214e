"""NumPy implementations of layout, creation and random primitives (views where NumPy gives them)."""
import numpy as np

from metalcandle.backends.np_dtypes import NP

_MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
STREAM = 0xD1B54A32D192ED03


def register(impls, ops):
    def reg(name, fn):
        impls[ops[name]] = fn

    reg("reshape", lambda n, ins, out: ins[0].reshape(n.shape))
    reg("transpose", lambda n, ins, out: ins[0].transpose(n._aux))
    reg("broadcast_to", lambda n, ins, out: np.broadcast_to(ins[0], n.shape))
    reg("getitem", lambda n, ins, out: ins[0][n._aux])
    reg("concatenate", _concat)
    reg("take", lambda n, ins, out: np.take(ins[0], ins[1], axis=n._aux))
    reg("take_along_axis", lambda n, ins, out: np.take_along_axis(ins[0], ins[1], axis=n._aux))
    reg("constant", _constant)
    reg("full", lambda n, ins, out: np.full(n.shape, n._scalar, dtype=NP[n._dtype_code]))
    reg("arange", _arange)
    reg("linspace", _linspace)
    reg("eye", _eye)
    reg("random", _random)
    for name in ("softmax", "log_softmax", "rms_norm", "layer_norm", "rope",
                 "scaled_dot_product_attention", "lora", "lora_linear"):
        reg(name, _fused(name))


def _constant(node, ins, out):
    raise RuntimeError("constant: a leaf has no inputs to compute from")  # never pending


def _concat(node, ins, out):
    dt = NP[node._dtype_code]
    return np.concatenate([a if a.dtype == dt else a.astype(dt) for a in ins], axis=node._aux)


def _arange(node, ins, out):
    start, step = node._aux
    n = node.size
    dt = NP[node._dtype_code]
    if dt.kind in "iu" and isinstance(start, int) and isinstance(step, int):
        return (start + step * np.arange(n, dtype=np.int64)).astype(dt)
    return (start + step * np.arange(n, dtype=np.float64)).astype(dt)


def _linspace(node, ins, out):
    start, stop = node._aux
    return np.linspace(start, stop, node.size, dtype=np.float64).astype(NP[node._dtype_code])


def _eye(node, ins, out):
    n, m = node.shape
    return np.eye(n, m, node._aux, dtype=NP[node._dtype_code])


def bits(key, counter, n):
    """SplitMix64 outputs for a (key, counter) stream: element i gets
    mix(base + (i + 1) * GAMMA). The same integer recipe runs on every backend."""
    base = np.uint64((key * GAMMA + counter * STREAM) & _MASK)
    x = (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GAMMA)) + base
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _random(node, ins, out):
    kind, key, counter, a, b = node._aux
    n = node.size
    dt = NP[node._dtype_code]
    x = bits(key, counter, n)
    if kind == "uniform":
        if dt == np.float64:
            u = (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        else:
            u = (x >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
        r = a + (b - a) * u
    elif kind == "normal":
        u1 = ((x >> np.uint64(32)).astype(np.float64) + 1.0) * 2.0 ** -32     # (0, 1]
        u2 = (x & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0 ** -32      # [0, 1)
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        r = a + b * z
    elif kind == "randint":
        u = (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        r = a + np.floor(u * (b - a)).astype(np.int64)
    elif kind == "bernoulli":
        u = (x >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
        r = u < a
    else:
        raise ValueError(f"random: unknown distribution {kind!r}")
    return np.asarray(r).astype(dt, copy=False).reshape(node.shape)


def _fused(name):
    def impl(node, ins, out):
        from metalcandle.backends import np_fused_glue
        return np_fused_glue.run(name, node, ins, out)
    return impl

"""Fused transformer ops: LoRA, softmax, RMSNorm at a decode-like and a prefill-like size.

metalcandle runs its fused primitives (``mc.softmax``, ``mc.fast.rms_norm``, ``mc.fast.lora``).
Peers use their own fused op where they have one (``mx.fast.rms_norm``, ``torch.softmax``, ...) and
the composite form otherwise; the JSON records which path each library took. Each case is also reported as a multiple of the
memory-bandwidth floor: a plain copy of ``x`` (read x, write an output of the same size), which is
the least traffic any implementation of these ops needs.
"""
import functools

from benchmarks.harness import Case, loop_ns
from benchmarks.workloads import rand

LORA = (("lora x(1,128,512) r8", (1, 128, 512), 8), ("lora x(4,512,4096) r16", (4, 512, 4096), 16))
SOFTMAX = (("softmax (2,10,64)", (2, 10, 64)), ("softmax (8,32,256,256)", (8, 32, 256, 256)))
RMSNORM = (("rms_norm (2,10,128)", (2, 10, 128)), ("rms_norm (8,1024,4096)", (8, 1024, 4096)))
BIG = 1 << 20   # elements; at or above this a case is "large" (one iteration per sample)
SCALE = 2.0
EPS = 1e-5


@functools.lru_cache(maxsize=3)
def _data(shape, seed):
    # Shared by every library of one case (each converts it to its own array).
    return rand(shape, seed)


def _size(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _resolve(p, op, args):
    """The op to time: the peer's fused op where it has one, else its composite form (peers.py
    says which; metalcandle always uses its fused primitive). A failing op fails the case."""
    fn = getattr(p, op)
    p.sync(fn(*args))
    return fn


def _timed(p, fn, args, k):
    sync = p.sync
    return loop_ns(lambda: sync(fn(*args)), k)


def _make(op, shape, extra, k):
    def make(p):
        x = p.asarray(_data(shape, 11))
        args = (x,) + tuple(e(p) for e in extra)
        return _timed(p, _resolve(p, op, args), args, k)
    return make


def _lora_args(n_in, r):
    # a ~ N(0, 1/n_in), b ~ N(0, 1/r): the output keeps the scale of x.
    a = lambda p: p.asarray(_data((n_in, r), 12) * (1.0 / n_in ** 0.5))  # noqa: E731
    b = lambda p: p.asarray(_data((r, n_in), 13) * (1.0 / r ** 0.5))    # noqa: E731
    return (a, b, lambda p: SCALE)


def _rms_args(d):
    return (lambda p: p.asarray(1 + 0.1 * _data((d,), 14)), lambda p: EPS)


def cases(quick):
    out = []

    def add(name, op, shape, extra):
        big = _size(shape) >= BIG
        if quick and big:
            return   # --quick keeps to the decode-like sizes
        if big:
            reps, k = (12, 2), 1
        else:
            reps, k = (30, 5), (20 if quick else 200)   # k: upper bound, see loop_ns
        out.append(Case("fused", name, _make(op, shape, extra, k), per=1, unit="time",
                        reps=reps, warmup=(2, 1), bytes_floor=_size(shape) * 4))

    for name, shape, r in LORA:
        add(name, "lora", shape, _lora_args(shape[-1], r))
    for name, shape in SOFTMAX:
        add(name, "softmax", shape, (lambda p: -1,))
    for name, shape in RMSNORM:
        add(name, "rms_norm", shape, _rms_args(shape[-1]))
    return out

"""Random numbers from a counter-based generator: reproducible from the seed on every backend.

Each call takes the next counter of the global key (or uses ``key=`` if given) and records
``(key, counter)`` in the node; element ``i`` is a SplitMix64 hash of ``key``, ``counter`` and ``i``,
so the values do not depend on the device, on evaluation order or on what else is in the graph.

>>> import metalcandle as mc
>>> mc.random.seed(0); a = mc.random.normal((3,))
>>> mc.random.seed(0); b = mc.random.normal((3,))
>>> (a == b).all().item()
True
"""
import os as _os

from metalcandle import _graph as _g
from metalcandle._graph import float32, int32
from metalcandle.errors import ArgumentError, ArgumentTypeError

__all__ = ["seed", "normal", "uniform", "randint", "bernoulli"]

_RANDOM = _g.op_names.index("random")
_state = {"key": None, "counter": 0}


def seed(s):
    """Seed the global generator (an int)."""
    if not isinstance(s, int):
        raise ArgumentTypeError(f"seed: expected an int, got {type(s).__name__}")
    _state["key"] = s & ((1 << 64) - 1)
    _state["counter"] = 0


def _next(key):
    if key is not None:
        if not isinstance(key, int):
            raise ArgumentTypeError(f"random: key must be an int, got {type(key).__name__}")
        return key & ((1 << 64) - 1), 0
    if _state["key"] is None:
        _state["key"] = int.from_bytes(_os.urandom(8), "little")
    _state["counter"] += 1
    return _state["key"], _state["counter"]


def _float_dtype(dtype, opname):
    d = _g.to_dtype(dtype, opname)
    if d.kind != "f":
        raise _g_errors().DTypeError(f"{opname}: dtype must be floating, got {d.name}")
    return d


def _g_errors():
    from metalcandle import errors
    return errors


def uniform(low=0.0, high=1.0, shape=(), dtype=float32, key=None):
    """Uniform samples in ``[low, high)``.

    >>> import metalcandle as mc
    >>> x = mc.random.uniform(shape=(1000,), key=1)
    >>> bool(((x >= 0) & (x < 1)).all())
    True
    """
    d = _float_dtype(dtype, "uniform")
    k, c = _next(key)
    return _g._node(_RANDOM, d, shape, aux=("uniform", k, c, float(low), float(high)))


def normal(shape=(), dtype=float32, loc=0.0, scale=1.0, key=None):
    """Normal samples with mean ``loc`` and standard deviation ``scale`` (Box-Muller)."""
    d = _float_dtype(dtype, "normal")
    k, c = _next(key)
    return _g._node(_RANDOM, d, shape, aux=("normal", k, c, float(loc), float(scale)))


def randint(low, high, shape=(), dtype=int32, key=None):
    """Integers in ``[low, high)``."""
    d = _g.to_dtype(dtype, "randint")
    if d.kind not in "iu":
        raise _g_errors().DTypeError(f"randint: dtype must be an integer type, got {d.name}")
    if not (isinstance(low, int) and isinstance(high, int)):
        raise ArgumentTypeError("randint: low and high must be ints")
    if high <= low:
        raise ArgumentError(f"randint: high ({high}) must be greater than low ({low})")
    k, c = _next(key)
    return _g._node(_RANDOM, d, shape, aux=("randint", k, c, low, high))


def bernoulli(p=0.5, shape=(), key=None):
    """Booleans that are True with probability ``p`` (a number in [0, 1]).

    >>> import metalcandle as mc
    >>> mc.random.bernoulli(1.0, (3,)).tolist()
    [True, True, True]
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ArgumentError(f"bernoulli: p must be a probability in [0, 1], got {p!r}")
    k, c = _next(key)
    return _g._node(_RANDOM, _g.bool_, shape, aux=("bernoulli", k, c, float(p), 0.0))

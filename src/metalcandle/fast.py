"""Fused transformer primitives: one pass over memory each (one kernel on Metal).

Every function validates shapes, dtypes and parameters when it is called (the graph is built), and
returns a lazy tensor like any other op. The executor also rewrites the hand-written composite
forms into these primitives (see docs/fusion.md), so ``x * mc.rsqrt(mc.mean(x * x, -1, keepdims=True)
+ eps) * w`` runs as ``rms_norm``.

>>> import metalcandle as mc
>>> x = mc.random.normal((2, 8), key=0)
>>> y = mc.fast.rms_norm(x, mc.ones((8,)), 1e-5)
>>> round(float(mc.sqrt(mc.mean(y * y, axis=-1))[0].item()), 3)
1.0
"""
import math as _math

from metalcandle import _graph as _g
from metalcandle._graph import Tensor
from metalcandle.creation import _convert
from metalcandle.errors import ShapeError, DTypeError, AxisError, ArgumentError, ArgumentTypeError

__all__ = ["rms_norm", "layer_norm", "rope", "scaled_dot_product_attention", "lora",
           "lora_linear", "softmax", "log_softmax"]

_OP = {name: i for i, name in enumerate(_g.op_names)}


def _t(x, op):
    return x if type(x) is Tensor else _convert(x, op)


def _desc(t):
    return f"{t.shape} {t.dtype.name}"


def _float_dtype(op, *ts):
    d = _g.result_type(*[t for t in ts if t is not None])
    if d.kind != "f":
        d = _g.float32
    return d


def _eps(op, eps):
    if not isinstance(eps, (int, float)) or isinstance(eps, bool):
        raise ArgumentTypeError(f"{op}: eps must be a number, got {eps!r}")
    if not eps >= 0 or _math.isinf(eps):
        raise ArgumentError(f"{op}: eps must be finite and >= 0, got {eps}")
    return float(eps)


def _scale(op, s):
    if isinstance(s, bool) or not isinstance(s, (int, float)):
        raise ArgumentTypeError(f"{op}: scale must be a Python number, got {type(s).__name__}")
    return float(s)


def softmax(x, axis=-1):
    """Softmax along ``axis`` computed stably (max subtracted); integer inputs give float32.

    >>> import metalcandle as mc
    >>> [round(v, 4) for v in mc.softmax(mc.array([1.0, 2.0, 3.0])).tolist()]
    [0.09, 0.2447, 0.6652]
    """
    return _softmax_like("softmax", x, axis)


def log_softmax(x, axis=-1):
    """``log(softmax(x))`` along ``axis``, computed as ``x - max - log(sum(exp(x - max)))``."""
    return _softmax_like("log_softmax", x, axis)


def _softmax_like(op, x, axis):
    x = _t(x, op)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ArgumentTypeError(f"{op}: axis must be an int, got {axis!r}")
    if x.ndim == 0:
        raise AxisError(f"{op}: needs at least 1 dim, got a 0-d tensor ({x.dtype.name})")
    if not -x.ndim <= axis < x.ndim:
        raise AxisError(f"{op}: axis {axis} is out of bounds for {_desc(x)}")
    return _g._node(_OP[op], _float_dtype(op, x), x.shape, (x,), aux=axis % x.ndim)


def rms_norm(x, weight, eps=1e-5):
    """``x * rsqrt(mean(x**2, -1) + eps) * weight`` over the last axis (``weight`` may be None).

    >>> import metalcandle as mc
    >>> mc.fast.rms_norm(mc.array([[3.0, 4.0]]), None, 0.0).tolist()[0][0]  # doctest: +ELLIPSIS
    0.848...
    """
    op = "rms_norm"
    x = _t(x, op)
    if x.ndim == 0:
        raise ShapeError(f"{op}: needs at least 1 dim, got a 0-d tensor ({x.dtype.name})")
    ins = [x]
    if weight is not None:
        weight = _t(weight, op)
        if weight.shape != (x.shape[-1],):
            raise ShapeError(f"{op}: weight {_desc(weight)} must have shape ({x.shape[-1]},) "
                             f"to match the last dim of x {_desc(x)}")
        ins.append(weight)
    return _g._node(_OP[op], _float_dtype(op, x, weight), x.shape, tuple(ins),
                    aux=(weight is not None,), scalar=_eps(op, eps))


def layer_norm(x, weight, bias, eps=1e-5):
    """Normalise over the last axis to zero mean and unit variance, then ``* weight + bias``
    (either may be None)."""
    op = "layer_norm"
    x = _t(x, op)
    if x.ndim == 0:
        raise ShapeError(f"{op}: needs at least 1 dim, got a 0-d tensor ({x.dtype.name})")
    ins = [x]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            p = _t(p, op)
            if p.shape != (x.shape[-1],):
                raise ShapeError(f"{op}: {name} {_desc(p)} must have shape ({x.shape[-1]},) "
                                 f"to match the last dim of x {_desc(x)}")
            ins.append(p)
    weight = ins[1] if weight is not None else None
    bias = ins[-1] if bias is not None else None
    return _g._node(_OP[op], _float_dtype(op, x, weight, bias), x.shape, tuple(ins),
                    aux=(weight is not None, bias is not None), scalar=_eps(op, eps))


def rope(x, dims, *, traditional=False, base=10000.0, scale=1.0, offset=0):
    """Rotary position embedding on the first ``dims`` features of the last axis of x (..., L, D).

    ``traditional=True`` rotates adjacent pairs, else the two halves (MLX semantics). Position of
    row ``i`` is ``(offset + i) * scale``; frequencies are ``base ** (-2j / dims)``.
    """
    op = "rope"
    x = _t(x, op)
    if x.ndim < 2:
        raise ShapeError(f"{op}: x must be (..., L, D), got {_desc(x)}")
    if isinstance(dims, bool) or not isinstance(dims, int):
        raise ArgumentTypeError(f"{op}: dims must be an int, got {dims!r}")
    if dims <= 0 or dims % 2 or dims > x.shape[-1]:
        raise ArgumentError(f"{op}: dims must be even, positive and <= the last dim {x.shape[-1]} "
                         f"of x {_desc(x)}, got {dims}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ArgumentError(f"{op}: offset must be a non-negative int, got {offset!r}")
    base = _scale(op, base)
    if base <= 0:
        raise ArgumentError(f"{op}: base must be > 0, got {base}")
    return _g._node(_OP[op], _float_dtype(op, x), x.shape, (x,),
                    aux=(dims, bool(traditional), base, _scale(op, scale), offset))


def scaled_dot_product_attention(q, k, v, *, scale, mask=None):
    """``softmax(q @ k^T * scale + mask) @ v`` for q (B, Hq, Lq, D), k/v (B, Hkv, Lk, D/Dv).

    Grouped-query attention when ``Hq`` is a multiple of ``Hkv``. ``mask`` is None, ``"causal"``
    (query i sees keys j <= i + Lk - Lq), a boolean array (True keeps) or an additive float array,
    broadcastable to (B, Hq, Lq, Lk).
    """
    op = "scaled_dot_product_attention"
    q, k, v = _t(q, op), _t(k, op), _t(v, op)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.ndim != 4:
            raise ShapeError(f"{op}: {name} must be (B, heads, L, D), got {_desc(t)}")
    B, Hq, Lq, D = q.shape
    if k.shape[0] != B or v.shape[0] != B:
        raise ShapeError(f"{op}: batch sizes differ: q {_desc(q)}, k {_desc(k)}, v {_desc(v)}")
    if k.shape[3] != D:
        raise ShapeError(f"{op}: head dims of q {_desc(q)} and k {_desc(k)} differ")
    if k.shape[1] != v.shape[1] or k.shape[2] != v.shape[2]:
        raise ShapeError(f"{op}: k {_desc(k)} and v {_desc(v)} need the same heads and length")
    Hkv, Lk = k.shape[1], k.shape[2]
    if Hkv == 0 or Hq % Hkv:
        raise ShapeError(f"{op}: query heads {Hq} must be a multiple of key/value heads {Hkv}: "
                         f"q {_desc(q)}, k {_desc(k)}")
    ins = [q, k, v]
    kind = "none"
    if isinstance(mask, str):
        if mask != "causal":
            raise ArgumentError(f"{op}: mask must be None, 'causal' or an array, got {mask!r}")
        kind = "causal"
    elif mask is not None:
        m = _t(mask, op)
        try:
            _g.broadcast_to(m, (B, Hq, Lq, Lk))
        except ShapeError:
            raise ShapeError(f"{op}: mask {_desc(m)} does not broadcast to "
                             f"(B, Hq, Lq, Lk) = {(B, Hq, Lq, Lk)}") from None
        if m.dtype.kind not in "bf":
            raise DTypeError(f"{op}: mask must be bool or floating, got {m.dtype.name}")
        kind = "bool" if m.dtype.kind == "b" else "additive"
        ins.append(m)
    return _g._node(_OP[op], _float_dtype(op, q, k, v), (B, Hq, Lq, v.shape[3]), tuple(ins),
                    aux=(kind,), scalar=_scale(op, scale))


def _lora_check(op, x, a, b, n_in):
    if x.ndim == 0:
        raise ShapeError(f"{op}: x must have at least 1 dim, got {_desc(x)}")
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"{op}: a and b must be 2-D, got a {_desc(a)}, b {_desc(b)}")
    if a.shape[0] != n_in:
        raise ShapeError(f"{op}: last dim of x {_desc(x)} ({n_in}) != rows of a {_desc(a)}")
    if a.shape[1] != b.shape[0]:
        raise ShapeError(f"{op}: cols of a {_desc(a)} != rows of b {_desc(b)}")


def lora(x, a, b, scale):
    """``scale * (x @ a) @ b``: x (..., in), a (in, r), b (r, out). ``x @ a`` is computed once per
    row and the scale is applied to the small (..., r) intermediate.

    >>> import metalcandle as mc
    >>> mc.fast.lora(mc.ones((1, 4)), mc.ones((4, 2)), mc.ones((2, 3)), 0.5).tolist()
    [[4.0, 4.0, 4.0]]
    """
    op = "lora"
    x, a, b = _t(x, op), _t(a, op), _t(b, op)
    _lora_check(op, x, a, b, x.shape[-1] if x.ndim else -1)
    return _g._node(_OP[op], _float_dtype(op, x, a, b), x.shape[:-1] + (b.shape[1],), (x, a, b),
                    scalar=_scale(op, scale))


def lora_linear(x, w, bias, a, b, scale):
    """``x @ w (+ bias) + scale * (x @ a) @ b`` with w (in, out): a frozen linear layer plus its
    LoRA adapter in one primitive."""
    op = "lora_linear"
    x, w, a, b = _t(x, op), _t(w, op), _t(a, op), _t(b, op)
    _lora_check(op, x, a, b, x.shape[-1] if x.ndim else -1)
    if w.ndim != 2 or w.shape[0] != x.shape[-1]:
        raise ShapeError(f"{op}: w {_desc(w)} must be (in, out) with in = last dim of x {_desc(x)}")
    if b.shape[1] != w.shape[1]:
        raise ShapeError(f"{op}: cols of b {_desc(b)} != cols of w {_desc(w)}")
    ins = [x, w, a, b]
    if bias is not None:
        bias = _t(bias, op)
        if bias.shape != (w.shape[1],):
            raise ShapeError(f"{op}: bias {_desc(bias)} must have shape ({w.shape[1]},)")
        ins.append(bias)
    return _g._node(_OP[op], _float_dtype(op, x, w, a, b, bias), x.shape[:-1] + (w.shape[1],),
                    tuple(ins), aux=(bias is not None,), scalar=_scale(op, scale))

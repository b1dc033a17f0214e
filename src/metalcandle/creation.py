"""Creating tensors: from data (``array``) or lazily from a recipe (``zeros``, ``arange``, ...).

Recipes are graph nodes too, so ``mc.zeros((1024, 1024))`` allocates nothing until it is evaluated,
and none of this imports NumPy unless data has to be converted.
"""
import math as _math

from metalcandle import _graph as _g
from metalcandle._graph import Tensor, float32, int32, int64, bool_
from metalcandle.errors import DTypeError, ShapeError, ArgumentError, ArgumentTypeError

__all__ = ["array", "asarray", "zeros", "ones", "full", "zeros_like", "ones_like", "arange",
           "linspace", "eye"]

_OP = {name: i for i, name in enumerate(_g.op_names)}
_INT32_MIN, _INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def _scalar_dtype(v):
    if type(v) is bool:
        return bool_
    if isinstance(v, int):
        return int32 if _INT32_MIN <= v <= _INT32_MAX else int64
    return float32


def array(obj, dtype=None):
    """A tensor from a Python scalar, nested lists, a NumPy array or anything with ``__array__``.

    Python floats become float32 and ints int32 (int64 if they do not fit), as in MLX; NumPy
    arrays keep their dtype, except that float64 data becomes float32 when the default device is
    not the CPU (float64 exists only on the CPU; ask for ``dtype=mc.float64`` on the CPU device).
    The data is copied.

    >>> import metalcandle as mc
    >>> mc.array([[1, 2], [3, 4]]).dtype, mc.array(1.5).dtype
    (metalcandle.int32, metalcandle.float32)
    """
    return _from_data(obj, dtype, "array", copy=True)


def asarray(obj, dtype=None):
    """Like :func:`array`, but on the CPU device a C-contiguous NumPy array of a supported dtype
    is used without a copy (later changes to it show in the tensor); on the metal device the data
    is copied once into shared device memory. A Tensor is returned as is.

    >>> import metalcandle as mc
    >>> mc.asarray([1.0, 2.0]).shape
    (2,)
    """
    return _from_data(obj, dtype, "asarray", copy=False)


def _from_data(obj, dtype, opname, copy):
    if type(obj) is Tensor:
        return obj if dtype is None else obj.astype(dtype)
    if type(obj) in (bool, int, float):
        d = _scalar_dtype(obj) if dtype is None else _g.to_dtype(dtype, opname)
        if d.kind in "iu" and type(obj) is float:
            obj = int(obj) if _math.isfinite(obj) else obj
        return _g._node(_OP["full"], d, (), scalar=_cast_scalar(obj, d, opname))
    if isinstance(obj, str) or isinstance(obj, bytes):
        raise DTypeError(f"{opname}: cannot make a tensor from a string ({obj!r})")
    import numpy as np
    from metalcandle.backends.np_dtypes import NP, code_of
    from_numpy = isinstance(obj, np.ndarray) or hasattr(obj, "__array__") \
        or hasattr(obj, "__array_interface__")
    if isinstance(obj, (list, tuple)) and _has_tensor(obj):
        obj = [np.asarray(v) if type(v) is Tensor else v for v in obj]
    try:
        a = np.asarray(obj)
    except ValueError as e:
        raise ShapeError(f"{opname}: cannot make a tensor from a ragged nested sequence ({e})") from None
    if a.dtype.kind in "OUSVcMm" and a.dtype.name != "bfloat16":
        raise DTypeError(f"{opname}: unsupported element type {a.dtype} "
                         f"(from {type(obj).__name__}); numbers and bools only")
    if dtype is not None:
        d = _g.to_dtype(dtype, opname)
    else:
        code = code_of(a.dtype)
        if not from_numpy and a.dtype == np.float64:
            d = float32
        elif not from_numpy and a.dtype == np.int64:
            d = int32 if a.size == 0 or (a.min() >= _INT32_MIN and a.max() <= _INT32_MAX) else int64
        elif code >= 0:
            d = _g.DTYPES_LIST[code]
            if a.dtype == np.float64 and _g._default_device_code() != 0:
                d = float32   # float64 is CPU-only: NumPy's default float becomes float32 (as MLX)
        else:
            raise DTypeError(f"{opname}: NumPy dtype {a.dtype} is not supported; use one of "
                             "bool, uint8, int8, int16, uint32, int32, int64, float16, bfloat16, "
                             "float32, float64 (e.g. .astype(np.int32))")
    nd = NP[d.code]
    if _g._default_device_code() != 0:
        from metalcandle.backends import metal_backend
        # Leaves live in shared device memory, so kernels read them without a transfer.
        return _g._leaf(metal_backend.get().to_device(np.asarray(a, dtype=nd)), d.code)
    if copy or a.dtype != nd or not a.flags.c_contiguous:
        a = np.array(a, dtype=nd, copy=True, order="C")
    return _g._leaf(a, d.code)


def _has_tensor(seq):
    return any(type(v) is Tensor or (isinstance(v, (list, tuple)) and _has_tensor(v)) for v in seq)


def _cast_scalar(v, d, opname):
    if d.kind == "b":
        return bool(v)
    if d.kind in "iu":
        try:
            iv = int(v)
        except (OverflowError, ValueError):
            raise DTypeError(f"{opname}: {v!r} cannot be stored as {d.name}") from None
        lo, hi = _g._int_bounds(d.code)
        if not lo <= iv <= hi:
            raise OverflowError(f"{opname}: {v!r} is out of bounds for {d.name}")
        return iv
    return float(v)


def _convert(x, opname):
    """Implicit conversion of a non-tensor operand (used by every op)."""
    return _from_data(x, None, opname, copy=True)


def full(shape, fill_value, dtype=None):
    """A tensor of ``shape`` filled with ``fill_value`` (lazy: nothing is allocated until eval).

    >>> import metalcandle as mc
    >>> mc.full((2,), 7).tolist()
    [7, 7]
    """
    if type(fill_value) is Tensor:
        v = fill_value if dtype is None else fill_value.astype(dtype)
        return _g.broadcast_to(v, shape)
    if type(fill_value) not in (bool, int, float):
        if hasattr(fill_value, "item") and getattr(fill_value, "ndim", 1) == 0:
            fill_value = fill_value.item()
        else:
            raise ArgumentTypeError(f"full: fill_value must be a number or a tensor, got {type(fill_value).__name__}")
    d = _scalar_dtype(fill_value) if dtype is None else _g.to_dtype(dtype, "full")
    return _g._node(_OP["full"], d, shape, scalar=_cast_scalar(fill_value, d, "full"))


# zeros and ones live in the Cython core (built often; no Python layer per call).
zeros, ones = _g.zeros, _g.ones


def zeros_like(x, dtype=None):
    """Zeros with the shape (and by default the dtype) of ``x``."""
    x = _convert(x, "zeros_like") if type(x) is not Tensor else x
    return full(x.shape, 0, x.dtype if dtype is None else dtype)


def ones_like(x, dtype=None):
    """Ones with the shape (and by default the dtype) of ``x``."""
    x = _convert(x, "ones_like") if type(x) is not Tensor else x
    return full(x.shape, 1, x.dtype if dtype is None else dtype)


def arange(start, stop=None, step=None, dtype=None):
    """Evenly spaced values in ``[start, stop)``; ints give int32 (as in MLX), floats float32.

    >>> import metalcandle as mc
    >>> mc.arange(1, 7, 2).tolist()
    [1, 3, 5]
    """
    if stop is None:
        start, stop = 0, start
    if step is None:
        step = 1
    for v in (start, stop, step):
        if type(v) not in (int, float, bool):
            raise ArgumentTypeError(f"arange: start, stop and step must be Python numbers, got {v!r}")
    if step == 0:
        raise ArgumentError("arange: step must not be zero")
    if not all(_math.isfinite(v) for v in (start, stop, step)):
        raise ArgumentError(f"arange: non-finite bounds ({start}, {stop}, {step})")
    n = max(0, _math.ceil((stop - start) / step))
    if dtype is None:
        if all(isinstance(v, int) for v in (start, stop, step)):
            last = start + step * (n - 1) if n else start
            dtype = int32 if _INT32_MIN <= min(start, last) and max(start, last) <= _INT32_MAX else int64
        else:
            dtype = float32
    return _g._node(_OP["arange"], dtype, (n,), aux=(start, step))


def linspace(start, stop, num=50, endpoint=True, dtype=float32):
    """``num`` evenly spaced values from ``start`` to ``stop`` (inclusive unless
    ``endpoint=False``, as in NumPy).

    >>> import metalcandle as mc
    >>> mc.linspace(0, 1, 5).tolist(), mc.linspace(0, 1, 4, endpoint=False).tolist()
    ([0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 0.25, 0.5, 0.75])
    """
    if not isinstance(num, int) or isinstance(num, bool) or num < 0:
        raise ArgumentError(f"linspace: num must be a non-negative int, got {num!r}")
    start, stop = float(start), float(stop)
    if not endpoint and num > 0:
        # the same points as NumPy's: start + i * (stop - start) / num, i < num
        stop = start + (stop - start) * (num - 1) / num
    return _g._node(_OP["linspace"], dtype, (num,), aux=(start, stop))


def eye(n, m=None, k=0, dtype=float32):
    """A 2-D tensor with ones on the ``k``-th diagonal."""
    m = n if m is None else m
    if not isinstance(k, int):
        raise ArgumentTypeError(f"eye: k must be an int, got {k!r}")
    return _g._node(_OP["eye"], dtype, (n, m), aux=k)

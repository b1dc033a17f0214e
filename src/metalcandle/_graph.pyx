# cython: freethreading_compatible = False
"""The graph core: a Tensor *is* a node of the lazy graph (there is no graph object).

Hot path only: node creation, shape/dtype inference and the operators. The op-family builders are
split into the included ``_b_*.pxi`` files so that this extension stays one module (one import, direct
C calls between builders) while each file keeps to one role.
"""
cimport cython
import builtins as _bi
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.slice cimport PySlice_GetIndicesEx

from metalcandle.errors import (ShapeError, BroadcastError, AxisError, DTypeError,
                                MetalcandleError, ArgumentError, ArgumentTypeError,
                                IndexingError)

include "_b_dtypes.pxi"


# ----------------------------------------------------------------------------------- nodes

cdef list OP_NAMES = [
    "constant", "full", "arange", "linspace", "eye", "random",
    "negative", "abs", "sign", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "square",
    "reciprocal", "sin", "cos", "tanh", "sigmoid", "relu", "gelu", "gelu_approx", "silu",
    "erf", "floor", "ceil", "round", "logical_not", "astype",
    "add", "subtract", "multiply", "divide", "floor_divide", "remainder", "power", "maximum",
    "minimum", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    "logical_and", "logical_or",
    "where",
    "sum", "mean", "prod", "max", "min", "argmax", "argmin", "var", "std", "logsumexp", "all",
    "any",
    "matmul", "reshape", "transpose", "broadcast_to", "getitem", "concatenate", "take",
    "take_along_axis",
    "softmax", "log_softmax", "rms_norm", "layer_norm", "rope",
    "scaled_dot_product_attention", "lora", "lora_linear",
    "elementwise_region",
]
if len(OP_NAMES) != OP_COUNT:
    raise ImportError("metalcandle._graph: OP_NAMES is out of step with the Op enum")
op_names = tuple(OP_NAMES)

# The executor's eval function, installed by metalcandle/__init__.py (it cimports this module).
_eval_hook = None
# Default device code for new nodes (0 = cpu); see devices.py.
cdef int _default_device = 0


def _default_device_code():
    return _default_device


def _set_default_device_code(int code):
    global _default_device
    _default_device = code


@cython.final
@cython.freelist(512)
@cython.trashcan(True)
cdef class Tensor:
    """A lazy n-dimensional array: a node of the computation graph.

    Building ops only records the node; values are computed by ``mc.eval`` or on first use
    (``item``, ``tolist``, ``numpy``, ``np.asarray``, ``repr``, ``bool/int/float``).

    >>> import metalcandle as mc
    >>> x = mc.arange(4, dtype=mc.float32)
    >>> y = (x * 2 + 1).sum()      # nothing computed yet
    >>> y.item()
    16.0
    """

    def __init__(self, *args, **kwargs):
        raise ArgumentTypeError("Tensor cannot be constructed directly; use metalcandle.array(...)")

    cdef tuple shape_tuple(self):
        cdef int i
        return tuple([self.shape[i] for i in range(self.ndim)])

    # -- metadata (never evaluates)
    @property
    def shape(self):
        """The shape as a tuple of ints."""
        return self.shape_tuple()

    @property
    def dtype(self):
        """The element type (a :class:`DType`)."""
        return DTYPES[self.dtype]

    @property
    def ndim(self):
        return self.ndim

    @property
    def size(self):
        return self.size

    @property
    def itemsize(self):
        return (<DType>DTYPES[self.dtype]).itemsize

    @property
    def nbytes(self):
        return self.size * (<DType>DTYPES[self.dtype]).itemsize

    @property
    def is_evaluated(self):
        """True once the value has been computed (the node then holds no inputs)."""
        return self.status == 1

    @property
    def op(self):
        """Name of the primitive that produces this tensor."""
        return OP_NAMES[self.op]

    # -- executor/backend access to the node's parameters
    @property
    def _op(self):
        return self.op

    @property
    def _dtype_code(self):
        return self.dtype

    @property
    def _inputs(self):
        return self.inputs

    @property
    def _aux(self):
        return self.aux

    @property
    def _scalar(self):
        return self.scalar

    @property
    def _flags(self):
        return self.flags

    @property
    def _data(self):
        return self.data

    # -- evaluation
    def eval(self):
        """Compute this tensor (and what it needs) now; returns self."""
        if self.status == 0:
            _eval_hook((self,))
        return self

    def _value(self):
        if self.status == 0:
            _eval_hook((self,))
        return self.data

    def numpy(self):
        """The value as a NumPy array: a zero-copy, read-only view of the evaluated buffer.

        A tensor is immutable (graphs built on it must keep seeing the same values), so the
        view cannot be written to; ``np.array(t)`` or ``t.numpy().copy()`` gives a writable copy.

        >>> import metalcandle as mc
        >>> a = mc.array([1.0, 2.0]).numpy()
        >>> a.flags.writeable, a.copy().flags.writeable
        (False, True)
        """
        return _readonly(self._value())

    def __array__(self, dtype=None, copy=None):
        a = self._value()
        if dtype is not None and a.dtype != dtype:
            if copy is False:
                raise ArgumentError("Tensor.__array__: a dtype change needs a copy")
            return a.astype(dtype)
        return a.copy() if copy else _readonly(a)

    def item(self):
        """The value of a one-element tensor as a Python scalar."""
        if self.size != 1:
            raise ShapeError(f"item: needs a tensor with one element, got shape {self.shape_tuple()}")
        v = self._value()
        if self.dtype == DT_BFLOAT16:
            return float(v.reshape(-1)[0])
        return v.item()

    def tolist(self):
        """The value as nested Python lists (a scalar for 0-d tensors)."""
        v = self._value()
        if self.dtype == DT_BFLOAT16:
            import numpy
            v = v.astype(numpy.float32)
        return v.tolist()

    def __repr__(self):
        v = self._value()
        import numpy
        if self.dtype == DT_BFLOAT16:
            v = v.astype(numpy.float32)
        # NumPy's own layout (precision, summarising, line wrapping) with rows aligned under
        # "tensor(" and our dtype name, never NumPy's; placed as NumPy places its dtype.
        body = numpy.array2string(v, separator=", ", prefix="tensor(", suffix=",")
        tail = f"dtype={DTYPES[self.dtype].name})"
        if (self.size == 0 and self.ndim != 1) or self.size > numpy.get_printoptions()["threshold"]:
            tail = f"shape={self.shape_tuple()}, " + tail
        if len(body.rsplit("\n", 1)[-1]) + len(tail) + 2 > 75:
            return f"tensor({body},\n       {tail}"
        return f"tensor({body}, {tail}"

    def __bool__(self):
        if self.size != 1:
            raise ArgumentError(f"The truth value of a tensor with shape {self.shape_tuple()} is "
                             "ambiguous; use .any() or .all()")
        return bool(self.item())

    def __int__(self):
        return int(self.item())

    def __float__(self):
        return float(self.item())

    def __index__(self):
        if not is_int(self.dtype) and self.dtype != DT_BOOL:
            raise ArgumentTypeError(f"only integer tensors can be used as an index, not {DTYPES[self.dtype].name}")
        return int(self.item())

    def __len__(self):
        if self.ndim == 0:
            raise ArgumentTypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise ArgumentTypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __hash__(self):
        return id(self) >> 4

    def __reduce__(self):
        return (_unpickle, (self.numpy(),))

    def __setitem__(self, key, value):
        raise ArgumentTypeError("Tensor is immutable; build a new tensor, e.g. mc.where(mask, value, x)")

    # -- operators (scalars are weak and stored in the node)
    def __add__(self, other): return binary(OP_ADD, self, other)
    def __radd__(self, other): return binary(OP_ADD, other, self)
    def __sub__(self, other): return binary(OP_SUB, self, other)
    def __rsub__(self, other): return binary(OP_SUB, other, self)
    def __mul__(self, other): return binary(OP_MUL, self, other)
    def __rmul__(self, other): return binary(OP_MUL, other, self)
    def __truediv__(self, other): return binary(OP_DIV, self, other)
    def __rtruediv__(self, other): return binary(OP_DIV, other, self)
    def __floordiv__(self, other): return binary(OP_FLOORDIV, self, other)
    def __rfloordiv__(self, other): return binary(OP_FLOORDIV, other, self)
    def __mod__(self, other): return binary(OP_MOD, self, other)
    def __rmod__(self, other): return binary(OP_MOD, other, self)
    def __pow__(self, other, mod=None): return binary(OP_POW, self, other)
    def __rpow__(self, other, mod=None): return binary(OP_POW, other, self)
    def __matmul__(self, other): return matmul(self, other)
    def __rmatmul__(self, other): return matmul(other, self)
    def __and__(self, other): return _bitwise_logic(OP_LOGICAL_AND, self, other, "&")
    def __rand__(self, other): return _bitwise_logic(OP_LOGICAL_AND, other, self, "&")
    def __or__(self, other): return _bitwise_logic(OP_LOGICAL_OR, self, other, "|")
    def __ror__(self, other): return _bitwise_logic(OP_LOGICAL_OR, other, self, "|")
    def __invert__(self):
        if self.dtype != DT_BOOL:
            raise DTypeError(f"invert: ~ is defined for bool tensors only, got {DTYPES[self.dtype].name}")
        return unary(OP_LOGICAL_NOT, self)
    def __neg__(self): return unary(OP_NEG, self)
    def __pos__(self): return self
    def __abs__(self): return unary(OP_ABS, self)
    def __eq__(self, other): return binary(OP_EQ, self, other)
    def __ne__(self, other): return binary(OP_NE, self, other)
    def __lt__(self, other): return binary(OP_LT, self, other)
    def __le__(self, other): return binary(OP_LE, self, other)
    def __gt__(self, other): return binary(OP_GT, self, other)
    def __ge__(self, other): return binary(OP_GE, self, other)
    def __getitem__(self, key): return getitem(self, key)

    # -- methods an MLX/NumPy user expects (thin: the builders do the work)
    def astype(self, dtype): return astype(self, dtype)
    def reshape(self, *shape):
        return reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)
    def transpose(self, *axes):
        return transpose(self, axes[0] if len(axes) == 1 and not isinstance(axes[0], int)
                         else (axes or None))
    @property
    def T(self): return transpose(self, None)
    def flatten(self): return reshape(self, (-1,))
    def squeeze(self, axis=None): return squeeze(self, axis)
    def swapaxes(self, a, b): return swapaxes(self, a, b)
    def sum(self, axis=None, keepdims=False): return sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return mean(self, axis, keepdims)
    def prod(self, axis=None, keepdims=False): return prod(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return min(self, axis, keepdims)
    def argmax(self, axis=None, keepdims=False): return argmax(self, axis, keepdims)
    def argmin(self, axis=None, keepdims=False): return argmin(self, axis, keepdims)
    def var(self, axis=None, keepdims=False, ddof=0): return var(self, axis, keepdims, ddof)
    def std(self, axis=None, keepdims=False, ddof=0): return std(self, axis, keepdims, ddof)
    def all(self, axis=None, keepdims=False): return all(self, axis, keepdims)
    def any(self, axis=None, keepdims=False): return any(self, axis, keepdims)
    def logsumexp(self, axis=None, keepdims=False): return logsumexp(self, axis, keepdims)
    def exp(self): return unary(OP_EXP, self)
    def log(self): return unary(OP_LOG, self)
    def sqrt(self): return unary(OP_SQRT, self)
    def abs(self): return unary(OP_ABS, self)
    def round(self, decimals=0): return round(self, decimals)
    def square(self): return unary(OP_SQUARE, self)


cdef object _readonly(object a):
    v = a.view()
    v.flags.writeable = False
    return v


def _unpickle(a):
    from metalcandle.creation import array
    return array(a)


cdef Tensor new_node(int op, int dtype, tuple inputs, int ndim, const Py_ssize_t *shape):
    # ndim and the element count were validated by the caller.
    cdef Tensor t = Tensor.__new__(Tensor)
    cdef int i
    cdef Py_ssize_t n = 1
    t.op = op
    t.dtype = dtype
    t.ndim = ndim
    for i in range(ndim):
        t.shape[i] = shape[i]
        n *= shape[i]
    t.size = n
    t.inputs = inputs
    t.device = _default_device
    if dtype == DT_FLOAT64 and _default_device != 0:
        raise DTypeError(f"{OP_NAMES[op]}: float64 is not supported on the metal device "
                         f"(shape {fmt_shape(ndim, shape)}); use float32, or mc.set_default_device('cpu')")
    return t


cdef str fmt_shape(int ndim, const Py_ssize_t *shape):
    cdef int i
    if ndim == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join([str(shape[i]) for i in range(ndim)]) + ")"


cdef str shape_str(Tensor t):
    return fmt_shape(t.ndim, t.shape)


cdef str desc(Tensor t):
    return f"{shape_str(t)} {DTYPES[t.dtype].name}"


cdef int norm_axis(int axis, int ndim, str opname, object t=None) except -1:
    # t (the tensor, if any) is only formatted on error, so the happy path stays cheap.
    if axis < -ndim or axis >= ndim:
        what = f"{desc(<Tensor>t)} ({ndim} dims)" if t is not None else f"{ndim} dims"
        raise AxisError(f"{opname}: axis {axis} is out of bounds for {what}")
    return axis + ndim if axis < 0 else axis


# At most 2**59 elements, so the byte count of any dtype (<= 8 bytes) fits in 63 bits.
cdef Py_ssize_t MAX_ELEMENTS = (<Py_ssize_t>1) << 59


cdef int check_shape(int ndim, Py_ssize_t *shape, str opname) except -1:
    # Negative dims and element counts that overflow are user errors, raised before allocating.
    cdef Py_ssize_t n = 1
    cdef int i
    if ndim > MAXDIM:
        raise ShapeError(f"{opname}: {ndim} dims exceed the maximum of {MAXDIM}")
    for i in range(ndim):
        if shape[i] < 0:
            raise ShapeError(f"{opname}: negative dimension in shape {fmt_shape(ndim, shape)}")
        if shape[i] and n > MAX_ELEMENTS // shape[i]:
            raise ShapeError(f"{opname}: shape {fmt_shape(ndim, shape)} has too many elements")
        n *= shape[i]
    return 0


cdef int parse_shape(object shape, Py_ssize_t *out, str opname) except -1:
    # Accepts an int or a sequence of ints; returns ndim.
    cdef int nd, i
    cdef Py_ssize_t v
    if type(shape) is not tuple:
        if isinstance(shape, int):
            shape = (shape,)
        try:
            shape = tuple(shape)
        except TypeError:
            raise ArgumentTypeError(f"{opname}: shape must be an int or a sequence of ints, "
                                    f"got {shape!r}") from None
    cdef tuple seq = <tuple>shape
    nd = len(seq)
    if nd > MAXDIM:
        raise ShapeError(f"{opname}: {nd} dims exceed the maximum of {MAXDIM}")
    for i in range(nd):
        s = seq[i]
        if type(s) is not int:    # (plain ints, the common case, skip the attribute lookups)
            if type(s) is bool or not hasattr(s, "__index__"):
                raise ArgumentTypeError(f"{opname}: shape entries must be ints, got {s!r}")
            s = s.__index__()
        try:
            v = s
        except OverflowError:
            v = MAX_ELEMENTS + 1
        if v > MAX_ELEMENTS:
            raise ShapeError(f"{opname}: dimension {s} in {seq} is too large")
        out[i] = v
    check_shape(nd, out, opname)
    return nd


def _node(int op, dtype, shape, tuple inputs=(), aux=None, scalar=None, int flags=0):
    """Create a node from Python (creation and fused-op modules). Validates the shape."""
    cdef Py_ssize_t shp[MAXDIM]
    cdef int nd = parse_shape(shape, shp, OP_NAMES[op])
    cdef DType d = to_dtype(dtype, OP_NAMES[op])
    cdef Tensor t = new_node(op, d.code, inputs, nd, shp)
    t.aux = aux
    t.scalar = scalar
    t.flags = flags
    return t


def zeros(shape, dtype=float32):
    """A tensor of zeros (float32 by default; lazy: nothing is allocated until eval).

    >>> import metalcandle as mc
    >>> mc.zeros((2, 3)).sum().item()
    0.0
    """
    return _fill(shape, dtype, 0, "zeros")


def ones(shape, dtype=float32):
    """A tensor of ones (float32 by default; lazy: nothing is allocated until eval).

    >>> import metalcandle as mc
    >>> mc.ones((2, 2), dtype=mc.int8).sum().item()
    4
    """
    return _fill(shape, dtype, 1, "ones")


cdef Tensor _fill(object shape, object dtype, int one, str opname):
    # full() with a fill value that every dtype holds, in C: zeros/ones are built often
    # (masks, biases, optimiser state), so they skip the Python layer of creation.full.
    cdef Py_ssize_t shp[MAXDIM]
    cdef DType d = <DType>dtype if type(dtype) is DType else to_dtype(dtype, opname)
    cdef int nd = parse_shape(shape, shp, opname)
    cdef Tensor t = new_node(OP_FULL, d.code, (), nd, shp)
    if d.kind == "f":
        t.scalar = float(one)
    elif d.kind == "b":
        t.scalar = one != 0
    else:
        t.scalar = one
    return t


def _leaf(data, int dtype_code):
    """Wrap an already materialised buffer (a NumPy array on the CPU) as an evaluated leaf."""
    cdef Py_ssize_t shp[MAXDIM]
    cdef int nd = parse_shape(data.shape, shp, "array")
    cdef Tensor t = new_node(OP_CONSTANT, dtype_code, (), nd, shp)
    t.data = data
    t.status = 1
    return t


cdef Tensor as_tensor(object x, str opname):
    if type(x) is Tensor:
        return <Tensor>x
    from metalcandle.creation import _convert
    return _convert(x, opname)


include "_b_elementwise.pxi"
include "_b_reduce.pxi"
include "_b_layout.pxi"

# Reduction builders. Included by _graph.pyx.

cdef tuple norm_axes(object axis, int ndim, str opname, object t=None):
    # None -> all axes; int or tuple of ints -> sorted, deduplicated, non-negative.
    cdef int i
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int) and type(axis) is not bool:
        return (norm_axis(axis, ndim, opname, t),)
    try:
        items = tuple(axis)
    except TypeError:
        raise ArgumentTypeError(f"{opname}: axis must be None, an int or a tuple of ints, got {axis!r}") from None
    out = []
    for a in items:
        if not isinstance(a, int) or type(a) is bool:
            raise ArgumentTypeError(f"{opname}: axis entries must be ints, got {a!r}")
        i = norm_axis(a, ndim, opname, t)
        if i in out:
            raise ArgumentError(f"{opname}: repeated axis {a} in {axis!r}")
        out.append(i)
    return tuple(sorted(out))


cdef Tensor reduce_node(int op, object x, object axis, bint keepdims, object ddof=None):
    cdef str opname = OP_NAMES[op]
    cdef Tensor a = as_tensor(x, opname)
    cdef tuple axes
    cdef Py_ssize_t shp[MAXDIM]
    cdef int nd = 0, i, dt = a.dtype
    cdef bint red
    if op == OP_ARGMAX or op == OP_ARGMIN:
        if axis is not None and not (isinstance(axis, int) and type(axis) is not bool):
            raise ArgumentTypeError(f"{opname}: axis must be None or an int, got {axis!r}")
    axes = norm_axes(axis, a.ndim, opname, a)
    for i in range(a.ndim):
        red = i in axes
        if red and a.shape[i] == 0 and OP_MAX <= op <= OP_ARGMIN:
            raise ShapeError(f"{opname}: zero-size axis {i} in {desc(a)} has no identity")
        if not red:
            shp[nd] = a.shape[i]
            nd += 1
        elif keepdims:
            shp[nd] = 1
            nd += 1
    if op == OP_SUM or op == OP_PROD:
        if dt == DT_BOOL or is_int(dt):
            dt = DT_INT64          # NumPy/torch rule: integer sums do not overflow small types
    elif op == OP_MEAN or op == OP_VAR or op == OP_STD or op == OP_LOGSUMEXP:
        if not is_float(dt):
            dt = DT_FLOAT32
    elif op == OP_ARGMAX or op == OP_ARGMIN:
        dt = DT_INT64
    elif op == OP_ALL or op == OP_ANY:
        dt = DT_BOOL
    cdef Tensor t = new_node(op, dt, (a,), nd, shp)
    t.aux = axes if not (op == OP_ARGMAX or op == OP_ARGMIN) else (None if axis is None else axes[0])
    t.flags = F_KEEPDIMS if keepdims else 0
    t.scalar = ddof
    return t


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (None: all; int or tuple; negative counts from the end).

    Integer and bool inputs sum in int64; float16 accumulates in float32.

    >>> import metalcandle as mc
    >>> mc.sum(mc.ones((2, 3)), axis=-1).tolist()
    [3.0, 3.0]
    """
    return reduce_node(OP_SUM, x, axis, keepdims)

def mean(x, axis=None, keepdims=False):
    """Arithmetic mean over ``axis``; integer inputs give float32."""
    return reduce_node(OP_MEAN, x, axis, keepdims)

def prod(x, axis=None, keepdims=False):
    """Product over ``axis``."""
    return reduce_node(OP_PROD, x, axis, keepdims)

def max(x, axis=None, keepdims=False):
    """Maximum over ``axis`` (an empty axis is an error, as in NumPy)."""
    return reduce_node(OP_MAX, x, axis, keepdims)

def min(x, axis=None, keepdims=False):
    """Minimum over ``axis``."""
    return reduce_node(OP_MIN, x, axis, keepdims)

def argmax(x, axis=None, keepdims=False):
    """Index of the maximum along one axis (None: of the flattened tensor), as int64.

    >>> import metalcandle as mc
    >>> mc.argmax(mc.array([[1, 5, 2], [7, 0, 3]]), axis=1).tolist()
    [1, 0]
    """
    return reduce_node(OP_ARGMAX, x, axis, keepdims)

def argmin(x, axis=None, keepdims=False):
    """Index of the minimum along one axis, as int64."""
    return reduce_node(OP_ARGMIN, x, axis, keepdims)

def var(x, axis=None, keepdims=False, ddof=0):
    """Variance over ``axis`` with ``ddof`` delta degrees of freedom."""
    if not isinstance(ddof, int):
        raise ArgumentTypeError(f"var: ddof must be an int, got {ddof!r}")
    return reduce_node(OP_VAR, x, axis, keepdims, ddof)

def std(x, axis=None, keepdims=False, ddof=0):
    """Standard deviation over ``axis``."""
    if not isinstance(ddof, int):
        raise ArgumentTypeError(f"std: ddof must be an int, got {ddof!r}")
    return reduce_node(OP_STD, x, axis, keepdims, ddof)

def logsumexp(x, axis=None, keepdims=False):
    """``log(sum(exp(x)))`` over ``axis``, computed stably (max subtracted first)."""
    return reduce_node(OP_LOGSUMEXP, x, axis, keepdims)

def all(x, axis=None, keepdims=False):
    """True where every element over ``axis`` is truthy."""
    return reduce_node(OP_ALL, x, axis, keepdims)

def any(x, axis=None, keepdims=False):
    """True where some element over ``axis`` is truthy."""
    return reduce_node(OP_ANY, x, axis, keepdims)

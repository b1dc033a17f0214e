# Elementwise builders: broadcasting, promotion, weak scalars. Included by _graph.pyx.

cdef int broadcast_shapes(Tensor a, Tensor b, Py_ssize_t *out, str opname) except -1:
    cdef int nd = a.ndim if a.ndim > b.ndim else b.ndim
    cdef int i, ia, ib
    cdef Py_ssize_t da, db
    for i in range(nd):
        ia = a.ndim - nd + i
        ib = b.ndim - nd + i
        da = a.shape[ia] if ia >= 0 else 1
        db = b.shape[ib] if ib >= 0 else 1
        if da == db or db == 1:
            out[i] = da
        elif da == 1:
            out[i] = db
        else:
            raise BroadcastError(f"{opname}: cannot broadcast shapes {shape_str(a)} and "
                                 f"{shape_str(b)} ({DTYPES[a.dtype].name}, {DTYPES[b.dtype].name})")
    return nd


cdef inline bint is_pyscalar(object x) noexcept:
    cdef type t = type(x)
    return t is float or t is int or t is bool


cdef int binary_dtype(int op, int ct, str opname, Tensor a, Tensor b) except -1:
    # ct is the compute dtype (promoted); returns the output dtype.
    if OP_EQ <= op <= OP_LOGICAL_OR:
        return DT_BOOL
    if op == OP_DIV:
        return ct if is_float(ct) else DT_FLOAT32
    if ct == DT_BOOL and (op == OP_SUB or op == OP_FLOORDIV or op == OP_MOD or op == OP_POW):
        raise DTypeError(f"{opname}: not supported for bool operands ({desc(a)}"
                         + (f", {desc(b)})" if b is not None else ")"))
    return ct


cdef Tensor binary_tt(int op, Tensor a, Tensor b):
    cdef Py_ssize_t shp[MAXDIM]
    cdef str opname = OP_NAMES[op]
    cdef int nd = broadcast_shapes(a, b, shp, opname)
    cdef int ct = PROMOTE[a.dtype][b.dtype]
    cdef int dt = binary_dtype(op, ct, opname, a, b)
    if op == OP_DIV and not is_float(ct):
        ct = DT_FLOAT32
    cdef Tensor t = new_node(op, dt, (a, b), nd, shp)
    t.aux = ct
    return t


cdef Tensor binary_ts(int op, Tensor a, object s, int flags):
    cdef str opname = OP_NAMES[op]
    cdef int ct
    try:
        ct = weak_dtype(a.dtype, s)
    except OverflowError as e:
        raise OverflowError(f"{opname}: {e} ({desc(a)})") from None
    cdef int dt = binary_dtype(op, ct, opname, a, None)
    if op == OP_DIV and not is_float(ct):
        ct = DT_FLOAT32
    cdef Tensor t = new_node(op, dt, (a,), a.ndim, a.shape)
    t.aux = ct
    t.scalar = s
    t.flags = F_SCALAR | flags
    return t


cdef object binary(int op, object a, object b):
    if type(a) is Tensor:
        if type(b) is Tensor:
            return binary_tt(op, <Tensor>a, <Tensor>b)
        if is_pyscalar(b):
            return binary_ts(op, <Tensor>a, b, 0)
        if not _array_like(b):
            return NotImplemented
        return binary_tt(op, <Tensor>a, as_tensor(b, OP_NAMES[op]))
    if type(b) is Tensor:
        if is_pyscalar(a):
            return binary_ts(op, <Tensor>b, a, F_REFLECTED)
        if not _array_like(a):
            return NotImplemented
        return binary_tt(op, as_tensor(a, OP_NAMES[op]), <Tensor>b)
    return binary_tt(op, as_tensor(a, OP_NAMES[op]), as_tensor(b, OP_NAMES[op]))


cdef bint _array_like(object x):
    # Operators return NotImplemented for foreign objects so Python raises its usual TypeError.
    return isinstance(x, (list, tuple)) or hasattr(x, "__array__") or hasattr(x, "__array_interface__")


cdef Tensor binary_fn(int op, object a, object b):
    # The function forms (mc.add(a, b), ...) have no reflected operator to fall back on: a foreign
    # operand gets the conversion's typed error, naming the op and what it was given.
    r = binary(op, a, b)
    if r is NotImplemented:
        as_tensor(a, OP_NAMES[op])
        as_tensor(b, OP_NAMES[op])
        raise ArgumentTypeError(f"{OP_NAMES[op]}: unsupported operands {type(a).__name__} and "
                                f"{type(b).__name__}")
    return <Tensor>r


cdef object _bitwise_logic(int op, object a, object b, str sym):
    r = binary(op, a, b)
    if r is NotImplemented:
        return r
    for x in ((<Tensor>r).inputs):
        if (<Tensor>x).dtype != DT_BOOL:
            raise DTypeError(f"{OP_NAMES[op]}: {sym} is defined for bool tensors only, got "
                             f"{DTYPES[(<Tensor>x).dtype].name}; use logical_and/logical_or")
    return r


cdef Tensor unary(int op, object x):
    cdef Tensor a = as_tensor(x, OP_NAMES[op])
    cdef int dt = a.dtype
    if op == OP_LOGICAL_NOT:
        dt = DT_BOOL
    elif op == OP_NEG or op == OP_SIGN:
        if dt == DT_BOOL:
            raise DTypeError(f"{OP_NAMES[op]}: not supported for bool ({desc(a)})")
    elif op == OP_ABS or op == OP_SQUARE or op == OP_RELU or (OP_FLOOR <= op <= OP_ROUND):
        pass
    elif not is_float(dt):
        dt = DT_FLOAT32   # transcendental functions of ints compute in the default float
    cdef Tensor t = new_node(op, dt, (a,), a.ndim, a.shape)
    t.aux = dt if op != OP_LOGICAL_NOT else a.dtype
    return t


cpdef Tensor astype(object x, object dtype):
    """Cast to ``dtype`` (lazy). Casting to the same dtype returns ``x`` itself.

    >>> import metalcandle as mc
    >>> mc.array([1.7, -1.7]).astype(mc.int32).tolist()
    [1, -1]
    """
    cdef Tensor a = as_tensor(x, "astype")
    cdef DType d = to_dtype(dtype, "astype")
    if d.code == a.dtype:
        return a
    cdef Tensor t = new_node(OP_CAST, d.code, (a,), a.ndim, a.shape)
    t.aux = a.dtype
    return t


def where(condition, x, y):
    """Elementwise ``x if condition else y`` with broadcasting.

    >>> import metalcandle as mc
    >>> mc.where(mc.array([True, False]), 1.0, mc.array([5.0, 6.0])).tolist()
    [1.0, 6.0]
    """
    cdef Py_ssize_t s1[MAXDIM]
    cdef Py_ssize_t s2[MAXDIM]
    cdef Tensor c = as_tensor(condition, "where")
    cdef Tensor a, b
    if type(x) is not Tensor and type(y) is not Tensor and is_pyscalar(x) and is_pyscalar(y):
        a = as_tensor(x, "where")
        b = as_tensor(y, "where")
    elif is_pyscalar(x):
        b = as_tensor(y, "where")
        a = _scalar_like(x, b, "where")
    elif is_pyscalar(y):
        a = as_tensor(x, "where")
        b = _scalar_like(y, a, "where")
    else:
        a = as_tensor(x, "where")
        b = as_tensor(y, "where")
    cdef int nd = broadcast_shapes(a, b, s1, "where")
    cdef Tensor ab = new_node(OP_WHERE, PROMOTE[a.dtype][b.dtype], (), nd, s1)
    nd = broadcast_shapes(c, ab, s2, "where")
    cdef Tensor t = new_node(OP_WHERE, ab.dtype, (c, a, b), nd, s2)
    t.aux = ab.dtype
    return t


cdef Tensor _scalar_like(object s, Tensor other, str opname):
    # A weak scalar next to a tensor becomes a 0-d constant of the weak result dtype.
    cdef int dt = weak_dtype(other.dtype, s)
    from metalcandle.creation import full
    return full((), s, DTYPES[dt])


def clip(x, a_min=None, a_max=None):
    """Limit values to ``[a_min, a_max]`` (either may be None).

    >>> import metalcandle as mc
    >>> mc.clip(mc.array([-2.0, 0.5, 3.0]), -1, 1).tolist()
    [-1.0, 0.5, 1.0]
    """
    if a_min is None and a_max is None:
        raise ArgumentError("clip: at least one of a_min and a_max must be given")
    r = as_tensor(x, "clip")
    for bound in (a_min, a_max):
        if bound is not None and type(bound) is not Tensor and not is_pyscalar(bound):
            as_tensor(bound, "clip")     # a typed error naming clip for what is not a number
    if a_min is not None:
        r = binary_fn(OP_MAXIMUM, r, a_min)
    if a_max is not None:
        r = binary_fn(OP_MINIMUM, r, a_max)
    return r


# ---- public functions (the operators above are the same builders)

def add(a, b):
    """Elementwise ``a + b`` with broadcasting.

    >>> import metalcandle as mc
    >>> mc.add(mc.array([1, 2]), 3).tolist()
    [4, 5]
    """
    return binary_fn(OP_ADD, a, b)

def subtract(a, b):
    """Elementwise ``a - b``."""
    return binary_fn(OP_SUB, a, b)

def multiply(a, b):
    """Elementwise ``a * b``."""
    return binary_fn(OP_MUL, a, b)

def divide(a, b):
    """Elementwise true division; integer inputs give float32."""
    return binary_fn(OP_DIV, a, b)

def floor_divide(a, b):
    """Elementwise ``a // b`` (NumPy semantics)."""
    return binary_fn(OP_FLOORDIV, a, b)

def remainder(a, b):
    """Elementwise ``a % b`` with the sign of ``b`` (NumPy semantics)."""
    return binary_fn(OP_MOD, a, b)

def power(a, b):
    """Elementwise ``a ** b``."""
    return binary_fn(OP_POW, a, b)

def maximum(a, b):
    """Elementwise maximum (NaN propagates)."""
    return binary_fn(OP_MAXIMUM, a, b)

def minimum(a, b):
    """Elementwise minimum (NaN propagates)."""
    return binary_fn(OP_MINIMUM, a, b)

def equal(a, b): return binary_fn(OP_EQ, a, b)
def not_equal(a, b): return binary_fn(OP_NE, a, b)
def less(a, b): return binary_fn(OP_LT, a, b)
def less_equal(a, b): return binary_fn(OP_LE, a, b)
def greater(a, b): return binary_fn(OP_GT, a, b)
def greater_equal(a, b): return binary_fn(OP_GE, a, b)

def logical_and(a, b):
    """Elementwise logical AND of the truth values (bool result)."""
    return binary_fn(OP_LOGICAL_AND, a, b)

def logical_or(a, b):
    """Elementwise logical OR of the truth values (bool result)."""
    return binary_fn(OP_LOGICAL_OR, a, b)

def logical_not(a):
    """Elementwise logical NOT (bool result)."""
    return unary(OP_LOGICAL_NOT, a)

def negative(x): return unary(OP_NEG, x)
def abs(x): return unary(OP_ABS, x)
def sign(x): return unary(OP_SIGN, x)

def exp(x):
    """Elementwise e**x (integer inputs compute in float32).

    >>> import metalcandle as mc
    >>> round(mc.exp(mc.array(1.0)).item(), 5)
    2.71828
    """
    return unary(OP_EXP, x)

def log(x): return unary(OP_LOG, x)
def log1p(x): return unary(OP_LOG1P, x)
def expm1(x): return unary(OP_EXPM1, x)
def sqrt(x): return unary(OP_SQRT, x)
def rsqrt(x):
    """Elementwise ``1 / sqrt(x)``."""
    return unary(OP_RSQRT, x)
def square(x): return unary(OP_SQUARE, x)
def reciprocal(x): return unary(OP_RECIPROCAL, x)
def sin(x): return unary(OP_SIN, x)
def cos(x): return unary(OP_COS, x)
def tanh(x): return unary(OP_TANH, x)
def sigmoid(x):
    """Elementwise logistic function ``1 / (1 + exp(-x))``."""
    return unary(OP_SIGMOID, x)
def relu(x): return unary(OP_RELU, x)
def gelu(x, approximate="none"):
    """GELU: exact (erf) by default, ``approximate="tanh"`` for the tanh form."""
    if approximate == "tanh":
        return unary(OP_GELU_TANH, x)
    if approximate != "none":
        raise ArgumentError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return unary(OP_GELU, x)
def gelu_approx(x): return unary(OP_GELU_TANH, x)
def silu(x):
    """Elementwise ``x * sigmoid(x)``."""
    return unary(OP_SILU, x)
def erf(x): return unary(OP_ERF, x)
def floor(x): return unary(OP_FLOOR, x)
def ceil(x): return unary(OP_CEIL, x)
def round(x, decimals=0):
    """Round half to even to ``decimals`` places, as ``np.round`` does (and by its method:
    scale by 10**decimals, round, scale back; integers are already round).

    >>> import metalcandle as mc
    >>> mc.round(mc.array([0.5, 1.5, 2.5])).tolist()
    [0.0, 2.0, 2.0]
    >>> mc.round(mc.array([125.0, 135.0]), -1).tolist()
    [120.0, 140.0]
    """
    if type(decimals) is not int:
        raise ArgumentTypeError(f"round: decimals must be an int, got {type(decimals).__name__}")
    if decimals == 0:
        return unary(OP_ROUND, x)
    cdef Tensor a = as_tensor(x, "round")
    if not is_float(a.dtype):
        if decimals > 0:
            return unary(OP_ROUND, a)
        raise DTypeError(f"round: negative decimals ({decimals}) need a floating tensor, got "
                         f"{desc(a)}; cast it with astype first")
    if decimals > 0:
        s = 10.0 ** decimals
        return binary(OP_DIV, unary(OP_ROUND, binary(OP_MUL, a, s)), s)
    s = 10.0 ** -decimals
    return binary(OP_MUL, unary(OP_ROUND, binary(OP_DIV, a, s)), s)


def isnan(x):
    """Elementwise ``x != x``: True where x is NaN (bool result; integers are never NaN).

    >>> import metalcandle as mc
    >>> mc.isnan(mc.array([1.0, float("nan"), float("inf")])).tolist()
    [False, True, False]
    """
    cdef Tensor a = as_tensor(x, "isnan")
    return binary(OP_NE, a, a)


def isinf(x):
    """True where x is +inf or -inf (bool result)."""
    cdef Tensor a = as_tensor(x, "isinf")
    return binary(OP_EQ, unary(OP_ABS, a), float("inf"))


def isfinite(x):
    """True where x is neither NaN nor infinite (bool result)."""
    cdef Tensor a = as_tensor(x, "isfinite")
    return binary(OP_LT, unary(OP_ABS, a), float("inf"))

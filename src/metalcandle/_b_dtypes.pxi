# dtypes, the promotion table and weak-scalar rules. Included by _graph.pyx.

# ----------------------------------------------------------------------------------- dtypes

cdef list DTYPES = []
cdef dict DTYPE_BY_NAME = {}
cdef int PROMOTE[DT_COUNT][DT_COUNT]
cdef long long INT_MIN[DT_COUNT]
cdef long long INT_MAX[DT_COUNT]


cdef class DType:
    """A tensor element type (``mc.float32``, ``mc.int32``, ...).

    >>> import metalcandle as mc
    >>> mc.float16.itemsize, mc.float16.name
    (2, 'float16')
    """
    def __repr__(self):
        return f"metalcandle.{self.name}"

    def __reduce__(self):
        return (_dtype_by_name, (self.name,))

    def __eq__(self, other):
        if isinstance(other, DType):
            return self is other
        try:
            return to_dtype(other, "dtype") is self
        except (DTypeError, TypeError):
            return False

    def __hash__(self):
        return hash(self.name)


DTYPES_LIST = DTYPES


def _int_bounds(int code):
    return INT_MIN[code], INT_MAX[code]


def _dtype_by_name(name):
    return DTYPE_BY_NAME[name]


cdef _mk(int code, str name, int itemsize, str kind):
    cdef DType d = DType.__new__(DType)
    d.code = code
    d.name = name
    d.itemsize = itemsize
    d.kind = kind
    DTYPES.append(d)
    DTYPE_BY_NAME[name] = d


_mk(DT_BOOL, "bool", 1, "b")
_mk(DT_UINT8, "uint8", 1, "u")
_mk(DT_INT8, "int8", 1, "i")
_mk(DT_INT16, "int16", 2, "i")
_mk(DT_UINT32, "uint32", 4, "u")
_mk(DT_INT32, "int32", 4, "i")
_mk(DT_INT64, "int64", 8, "i")
_mk(DT_FLOAT16, "float16", 2, "f")
_mk(DT_BFLOAT16, "bfloat16", 2, "f")
_mk(DT_FLOAT32, "float32", 4, "f")
_mk(DT_FLOAT64, "float64", 8, "f")
DTYPE_BY_NAME["bool_"] = DTYPES[DT_BOOL]
DTYPE_BY_NAME["half"] = DTYPES[DT_FLOAT16]
DTYPE_BY_NAME["float"] = DTYPES[DT_FLOAT32]
DTYPE_BY_NAME["double"] = DTYPES[DT_FLOAT64]

bool_ = DTYPES[DT_BOOL]
uint8 = DTYPES[DT_UINT8]
int8 = DTYPES[DT_INT8]
int16 = DTYPES[DT_INT16]
uint32 = DTYPES[DT_UINT32]
int32 = DTYPES[DT_INT32]
int64 = DTYPES[DT_INT64]
float16 = DTYPES[DT_FLOAT16]
bfloat16 = DTYPES[DT_BFLOAT16]
float32 = DTYPES[DT_FLOAT32]
float64 = DTYPES[DT_FLOAT64]


cdef inline bint is_float(int d) noexcept:
    return d >= DT_FLOAT16

cdef inline bint is_int(int d) noexcept:
    return DT_UINT8 <= d <= DT_INT64


cdef int _rule(DType a, DType b):
    # NumPy / array-API promotion within a kind; across kinds the MLX rule (int with float gives
    # that float, so float16 training code stays float16); bfloat16 with float16 gives float32.
    if a is b:
        return a.code
    if a.kind == "b":
        return b.code
    if b.kind == "b":
        return a.code
    if a.kind == "f" and b.kind == "f":
        if {a.code, b.code} == {DT_FLOAT16, DT_BFLOAT16}:
            return DT_FLOAT32
        return a.code if a.itemsize > b.itemsize else b.code
    if a.kind == "f":
        return a.code
    if b.kind == "f":
        return b.code
    if a.kind == b.kind:
        return a.code if a.itemsize > b.itemsize else b.code
    u, s = (a, b) if a.kind == "u" else (b, a)
    if s.itemsize > u.itemsize:
        return s.code
    return DT_INT16 if u.itemsize == 1 else DT_INT64


def _init_tables():
    for a in DTYPES:
        for b in DTYPES:
            PROMOTE[(<DType>a).code][(<DType>b).code] = _rule(a, b)
    bounds = {DT_BOOL: (0, 1), DT_UINT8: (0, 255), DT_INT8: (-128, 127), DT_INT16: (-32768, 32767),
              DT_UINT32: (0, 2**32 - 1), DT_INT32: (-2**31, 2**31 - 1),
              DT_INT64: (-2**63, 2**63 - 1)}
    for code, (lo, hi) in bounds.items():
        INT_MIN[code] = lo
        INT_MAX[code] = hi

_init_tables()


cdef int promote(int a, int b) noexcept:
    return PROMOTE[a][b]


def result_type(*args):
    """The dtype an elementwise op on ``args`` produces (tensors, dtypes or Python scalars).

    Python scalars are *weak*: they take the tensor's dtype when they can.

    >>> import metalcandle as mc
    >>> mc.result_type(mc.float16, 1.5), mc.result_type(mc.int8, mc.uint8), mc.result_type(mc.int32, 2.0)
    (metalcandle.float16, metalcandle.int16, metalcandle.float32)
    """
    cdef int strong = -1
    weak = []
    for a in args:
        if type(a) is Tensor:
            code = (<Tensor>a).dtype
        elif type(a) in (bool, int, float):
            weak.append(a)
            continue
        else:
            code = to_dtype(a, "result_type").code
        strong = code if strong < 0 else PROMOTE[strong][code]
    if strong < 0:
        strong = DT_BOOL if _bi.all(type(w) is bool for w in weak) else (
            DT_FLOAT32 if _bi.any(type(w) is float for w in weak) else DT_INT32)
        weak = []
    for w in weak:
        strong = weak_dtype(strong, w)
    return DTYPES[strong]


cdef _ml_dtypes_checked = False

cdef int need_bf16(str opname) except -1:
    global _ml_dtypes_checked
    if not _ml_dtypes_checked:
        import importlib.util
        if importlib.util.find_spec("ml_dtypes") is None:
            raise DTypeError(f"{opname}: bfloat16 needs the 'ml_dtypes' package "
                             "(pip install ml_dtypes, or metalcandle[bf16])")
        _ml_dtypes_checked = True
    return 0


cpdef DType to_dtype(object d, str opname):
    """Map a user dtype spec (DType, name, NumPy dtype or scalar type) to a DType."""
    cdef DType r
    if isinstance(d, DType):
        r = <DType>d
    else:
        name = d if isinstance(d, str) else getattr(d, "name", None)
        if name is None:
            name = getattr(d, "__name__", None)
            if d is float:
                name = "float32"
            elif d is int:
                name = "int32"
            elif d is bool:
                name = "bool"
        r = DTYPE_BY_NAME.get(name) if isinstance(name, str) else None
        if r is None:
            raise DTypeError(f"{opname}: unsupported dtype {d!r}; supported: "
                             + ", ".join([(<DType>x).name for x in DTYPES]))
    if r.code == DT_BFLOAT16:
        need_bf16(opname)
    return r


cdef int weak_dtype(int t, object s) except -1:
    # The dtype of (tensor of dtype t) op (Python scalar s), and the range check for ints.
    cdef int overflow = 0
    cdef long long v
    if type(s) is bool:
        return t
    if type(s) is int:
        if t == DT_BOOL:
            t = DT_INT32
        if is_int(t):
            v = PyLong_AsLongLongAndOverflow(s, &overflow)
            if overflow or v < INT_MIN[t] or v > INT_MAX[t]:
                raise OverflowError(f"Python int {s} is out of bounds for {DTYPES[t].name}")
        return t
    return t if is_float(t) else DT_FLOAT32


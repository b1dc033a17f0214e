# The graph core's C-level interface, cimported by the executor and the other Cython modules.

cdef enum:
    MAXDIM = 16

# Primitive codes. Keep in step with OP_NAMES in _graph.pyx (the order is the table index).
cdef enum Op:
    # leaves and lazy creation
    OP_CONSTANT, OP_FULL, OP_ARANGE, OP_LINSPACE, OP_EYE, OP_RANDOM,
    # unary elementwise
    OP_NEG, OP_ABS, OP_SIGN, OP_EXP, OP_LOG, OP_LOG1P, OP_EXPM1, OP_SQRT, OP_RSQRT, OP_SQUARE,
    OP_RECIPROCAL, OP_SIN, OP_COS, OP_TANH, OP_SIGMOID, OP_RELU, OP_GELU, OP_GELU_TANH, OP_SILU,
    OP_ERF, OP_FLOOR, OP_CEIL, OP_ROUND, OP_LOGICAL_NOT, OP_CAST,
    # binary elementwise (a scalar operand lives in the node's params)
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_MAXIMUM, OP_MINIMUM,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_LOGICAL_AND, OP_LOGICAL_OR,
    # ternary
    OP_WHERE,
    # reductions
    OP_SUM, OP_MEAN, OP_PROD, OP_MAX, OP_MIN, OP_ARGMAX, OP_ARGMIN, OP_VAR, OP_STD,
    OP_LOGSUMEXP, OP_ALL, OP_ANY,
    # linear algebra and layout
    OP_MATMUL, OP_RESHAPE, OP_TRANSPOSE, OP_BROADCAST, OP_SLICE, OP_CONCAT, OP_TAKE,
    OP_TAKE_ALONG,
    # fused transformer primitives
    OP_SOFTMAX, OP_LOG_SOFTMAX, OP_RMS_NORM, OP_LAYER_NORM, OP_ROPE, OP_SDPA, OP_LORA,
    OP_LORA_LINEAR,
    # a fused elementwise region (built by the executor on the metal device; see _fusion.pyx)
    OP_REGION,
    OP_COUNT

# Elementwise ranges, used by the executor for buffer donation.
cdef enum:
    FIRST_UNARY = OP_NEG
    LAST_UNARY = OP_CAST
    FIRST_BINARY = OP_ADD
    LAST_BINARY = OP_LOGICAL_OR

# dtype codes (index into DTYPES and the promotion table)
cdef enum DT:
    DT_BOOL, DT_UINT8, DT_INT8, DT_INT16, DT_UINT32, DT_INT32, DT_INT64,
    DT_FLOAT16, DT_BFLOAT16, DT_FLOAT32, DT_FLOAT64, DT_COUNT

# Flags in Tensor.flags for binary nodes with a weak Python-scalar operand.
cdef enum:
    F_SCALAR = 1      # second operand is Tensor.scalar
    F_REFLECTED = 2   # the scalar is the left operand (2 - x)
    F_KEEPDIMS = 4    # reductions


cdef class DType:
    cdef readonly int code
    cdef readonly str name
    cdef readonly int itemsize
    cdef readonly str kind    # 'b' bool, 'u' unsigned, 'i' signed, 'f' floating


cdef class Tensor:
    cdef:
        int op
        int dtype
        int ndim
        int status            # 0 pending, 1 evaluated
        int flags
        int device
        Py_ssize_t size
        Py_ssize_t shape[MAXDIM]
        tuple inputs          # () once evaluated (detached)
        object aux            # small op params that are not a single number (axes, index, ...)
        object scalar         # weak Python scalar operand, ddof, eps, ...
        object data           # the buffer once evaluated
        # executor scratch (see _executor.pyx); only meaningful during one eval
        long long visit
        Py_ssize_t slot
        object __weakref__

    cdef tuple shape_tuple(self)


cdef Tensor new_node(int op, int dtype, tuple inputs, int ndim, const Py_ssize_t *shape)
cdef Tensor as_tensor(object x, str opname)
cdef int promote(int a, int b) noexcept
cdef str shape_str(Tensor t)
cdef int norm_axis(int axis, int ndim, str opname, object t=*) except -1

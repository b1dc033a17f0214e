# cython: boundscheck=False, wraparound=False, cdivision=True
"""Small-array fast path of the CPU backend: contiguous float32/float64 elementwise ops in C.

For tiny tensors a NumPy ufunc call costs far more than its arithmetic (~0.5-0.8 us on these VMs);
this path allocates with the NumPy C API and loops in C. Anything it does not cover (casts,
broadcasting, other dtypes, large arrays where NumPy's SIMD loops win) returns None and the executor
uses the NumPy implementation. Loaded on the first eval, never at import.
"""
cimport numpy as cnp
from libc.math cimport exp, log, sqrt, tanh, sin, cos, fabs, expf, logf, sqrtf, tanhf, sinf, cosf, fabsf
from metalcandle._graph cimport (Tensor, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MAXIMUM, OP_MINIMUM,
                                 OP_NEG, OP_EXP, OP_LOG, OP_SQRT, OP_RSQRT, OP_SQUARE, OP_ABS,
                                 OP_TANH, OP_SIGMOID, OP_RELU, OP_SILU, OP_RECIPROCAL, OP_SIN,
                                 OP_COS, DT_FLOAT32, DT_FLOAT64, F_SCALAR, F_REFLECTED, MAXDIM)

cnp.import_array()

cdef enum:
    MAX_FAST = 1 << 14

ctypedef fused real:
    float
    double


cdef inline real _bin(int op, real a, real b) noexcept nogil:
    if op == OP_ADD:
        return a + b
    if op == OP_SUB:
        return a - b
    if op == OP_MUL:
        return a * b
    if op == OP_DIV:
        return a / b
    if op == OP_MAXIMUM:
        return a if (a >= b or a != a) else b
    return a if (a <= b or a != a) else b


cdef inline real _un(int op, real x) noexcept nogil:
    if real is float:
        if op == OP_NEG: return -x
        if op == OP_EXP: return expf(x)
        if op == OP_LOG: return logf(x)
        if op == OP_SQRT: return sqrtf(x)
        if op == OP_RSQRT: return <float>1 / sqrtf(x)
        if op == OP_SQUARE: return x * x
        if op == OP_ABS: return fabsf(x)
        if op == OP_TANH: return tanhf(x)
        if op == OP_SIGMOID: return <float>1 / (<float>1 + expf(-x))
        if op == OP_RELU: return x if (x > 0 or x != x) else 0
        if op == OP_SILU: return x / (<float>1 + expf(-x))
        if op == OP_RECIPROCAL: return <float>1 / x
        if op == OP_SIN: return sinf(x)
        return cosf(x)
    else:
        if op == OP_NEG: return -x
        if op == OP_EXP: return exp(x)
        if op == OP_LOG: return log(x)
        if op == OP_SQRT: return sqrt(x)
        if op == OP_RSQRT: return 1.0 / sqrt(x)
        if op == OP_SQUARE: return x * x
        if op == OP_ABS: return fabs(x)
        if op == OP_TANH: return tanh(x)
        if op == OP_SIGMOID: return 1.0 / (1.0 + exp(-x))
        if op == OP_RELU: return x if (x > 0 or x != x) else 0
        if op == OP_SILU: return x / (1.0 + exp(-x))
        if op == OP_RECIPROCAL: return 1.0 / x
        if op == OP_SIN: return sin(x)
        return cos(x)


cdef void _binary_loop(int op, int mode, real *a, real *b, real s, real *r, Py_ssize_t n) noexcept nogil:
    # mode 0: a op b; 1: a op s; 2: s op a
    cdef Py_ssize_t i
    if mode == 0:
        for i in range(n):
            r[i] = _bin(op, a[i], b[i])
    elif mode == 1:
        for i in range(n):
            r[i] = _bin(op, a[i], s)
    else:
        for i in range(n):
            r[i] = _bin(op, s, a[i])


cdef void _unary_loop(int op, real *a, real *r, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        r[i] = _un(op, a[i])


cdef inline bint _ok(object x, int typenum, Py_ssize_t n):
    return (type(x) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>x) == typenum
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>x) and cnp.PyArray_SIZE(<cnp.ndarray>x) == n)


cpdef object run(Tensor t, int op, list ins, object out):
    """Compute node ``t`` if the fast path covers it, else return None."""
    cdef int dt = t.dtype
    cdef int typenum, mode
    cdef Py_ssize_t n = t.size
    cdef cnp.npy_intp dims[MAXDIM]
    cdef int i, nd = t.ndim
    cdef cnp.ndarray a, b = None, r
    cdef bint binary = OP_ADD <= op <= OP_MINIMUM
    if n > MAX_FAST or (dt != DT_FLOAT32 and dt != DT_FLOAT64):
        return None
    if binary and <int>t.aux != dt:
        return None
    typenum = cnp.NPY_FLOAT32 if dt == DT_FLOAT32 else cnp.NPY_FLOAT64
    if not _ok(ins[0], typenum, n):
        return None
    a = <cnp.ndarray>ins[0]
    mode = 0
    if binary:
        if t.flags & F_SCALAR:
            mode = 2 if t.flags & F_REFLECTED else 1
        else:
            if not _ok(ins[1], typenum, n):
                return None
            b = <cnp.ndarray>ins[1]
    if out is not None and _ok(out, typenum, n):
        r = <cnp.ndarray>out
    else:
        for i in range(nd):
            dims[i] = t.shape[i]
        r = cnp.PyArray_EMPTY(nd, dims, typenum, 0)
    if binary:
        s = float(t.scalar) if mode else 0.0
        if dt == DT_FLOAT32:
            _binary_loop[float](op, mode, <float *>cnp.PyArray_DATA(a),
                                <float *>cnp.PyArray_DATA(b) if b is not None else NULL,
                                <float>s, <float *>cnp.PyArray_DATA(r), n)
        else:
            _binary_loop[double](op, mode, <double *>cnp.PyArray_DATA(a),
                                 <double *>cnp.PyArray_DATA(b) if b is not None else NULL,
                                 <double>s, <double *>cnp.PyArray_DATA(r), n)
    else:
        if dt == DT_FLOAT32:
            _unary_loop[float](op, <float *>cnp.PyArray_DATA(a), <float *>cnp.PyArray_DATA(r), n)
        else:
            _unary_loop[double](op, <double *>cnp.PyArray_DATA(a), <double *>cnp.PyArray_DATA(r), n)
    return r


# Which ops the fast path may take (the executor checks this table before calling run).
cdef list _covered = [OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MAXIMUM, OP_MINIMUM, OP_NEG, OP_EXP,
                      OP_LOG, OP_SQRT, OP_RSQRT, OP_SQUARE, OP_ABS, OP_TANH, OP_SIGMOID, OP_RELU,
                      OP_SILU, OP_RECIPROCAL, OP_SIN, OP_COS]
covered = frozenset(_covered)

"""NumPy-array wrappers over the C row kernels in src/native/cpu/mc_cpu_fused.c.

Arrays are 2-D C-contiguous (rows, n), float32 or float16 (when ``supports('e')``);
x and y may be the same array (not for lora). Callers (backends/np_fused.py) check shapes.
"""
from libc.stdint cimport int64_t, uint16_t

import numpy as np

cdef extern from "mc_cpu_fused.h" nogil:
    enum:
        MC_CPU_OK
        MC_CPU_EINVAL
        MC_CPU_ENOMEM
        MC_CPU_EUNSUPPORTED
        MC_CPU_F32
        MC_CPU_F16
    int mc_cpu_has_f16()
    void mc_cpu_set_baseline_only(int on)
    const char *mc_cpu_strerror(int status)
    int mc_cpu_softmax(const void *x, void *y, int64_t rows, int64_t n, int dtype,
                       int log, int nthreads)
    int mc_cpu_rms_norm(const void *x, const float *w, void *y, int64_t rows,
                        int64_t n, float eps, int dtype, int nthreads)
    int mc_cpu_layer_norm(const void *x, const float *w, const float *b, void *y,
                          int64_t rows, int64_t n, float eps, int dtype, int nthreads)
    int mc_cpu_lora(const void *x, const float *a, const float *b, void *y, int64_t rows,
                    int64_t n_in, int64_t rank, int64_t n_out, float scale, int accumulate,
                    int dtype, int nthreads)
    enum:
        MC_CPU_LORA_MAX_RANK
        MC_CPU_LORA_STREAM_MIN


cdef struct Rows:
    const void *x
    void *y
    int64_t rows
    int64_t n
    int dtype


cdef int _check(int status, str op) except -1:
    if status == MC_CPU_OK:
        return 0
    msg = f"{op}: {mc_cpu_strerror(status).decode()}"
    if status == MC_CPU_ENOMEM:
        raise MemoryError(msg)
    if status == MC_CPU_EUNSUPPORTED:
        raise NotImplementedError(msg)
    raise ValueError(msg)


cdef int _rows(object x, object y, Rows *r, list keep, bint same_n=True) except -1:
    # Typed memoryviews check contiguity and dtype; `keep` holds them (and so the
    # buffers) until the kernel returns. same_n=False lets y have its own row length.
    cdef const float[:, ::1] xf
    cdef float[:, ::1] yf
    cdef const uint16_t[:, ::1] xh
    cdef uint16_t[:, ::1] yh
    r.rows = x.shape[0]
    r.n = x.shape[1]
    if y.shape[0] != r.rows or (same_n and y.shape[1] != r.n):
        raise ValueError(f"shape mismatch {x.shape} vs {y.shape}")
    if r.rows == 0 or r.n == 0 or y.shape[1] == 0:
        return 1
    if x.dtype.char == 'f':
        xf = x
        yf = y
        r.x = &xf[0, 0]
        r.y = &yf[0, 0]
        r.dtype = MC_CPU_F32
        keep.append(xf)
        keep.append(yf)
    elif x.dtype.char == 'e' and y.dtype.char == 'e':
        xh = x.view(np.uint16)
        yh = y.view(np.uint16)
        r.x = &xh[0, 0]
        r.y = &yh[0, 0]
        r.dtype = MC_CPU_F16
        keep.append(xh)
        keep.append(yh)
    else:
        raise TypeError(f"unsupported dtype {x.dtype}/{y.dtype}")
    return 0


cdef const float *_vec(object v, int64_t n, list keep) except? NULL:
    cdef const float[::1] vf
    if v is None:
        return NULL
    vf = v
    if vf.shape[0] != n:
        raise ValueError(f"parameter length {vf.shape[0]} != {n}")
    keep.append(vf)
    return &vf[0]


def _set_baseline_only(bint on):
    """Testing hook: restrict the kernels to the baseline ISA (no AVX2/F16C)."""
    mc_cpu_set_baseline_only(on)


def supports(str dtype_char):
    """True when the kernels take this dtype ('f' float32, 'e' float16)."""
    return dtype_char == 'f' or (dtype_char == 'e' and mc_cpu_has_f16() != 0)


def softmax(x, y, bint log=False, int nthreads=1):
    """y[:] = softmax(x) (or log_softmax) along axis 1."""
    cdef Rows r
    cdef list keep = []
    cdef int st
    if _rows(x, y, &r, keep):
        return y
    with nogil:
        st = mc_cpu_softmax(r.x, r.y, r.rows, r.n, r.dtype, log, nthreads)
    _check(st, "log_softmax" if log else "softmax")
    return y


def rms_norm(x, y, w, float eps, int nthreads=1):
    """y[:] = x * rsqrt(mean(x*x, 1) + eps) * w; w float32 (n,) or None."""
    cdef Rows r
    cdef list keep = []
    cdef const float *pw
    cdef int st
    if _rows(x, y, &r, keep):
        return y
    pw = _vec(w, r.n, keep)
    with nogil:
        st = mc_cpu_rms_norm(r.x, pw, r.y, r.rows, r.n, eps, r.dtype, nthreads)
    _check(st, "rms_norm")
    return y


def layer_norm(x, y, w, b, float eps, int nthreads=1):
    """y[:] = (x - mean) * rsqrt(var + eps) * w + b along axis 1; w, b may be None."""
    cdef Rows r
    cdef list keep = []
    cdef const float *pw
    cdef const float *pb
    cdef int st
    if _rows(x, y, &r, keep):
        return y
    pw = _vec(w, r.n, keep)
    pb = _vec(b, r.n, keep)
    with nogil:
        st = mc_cpu_layer_norm(r.x, pw, pb, r.y, r.rows, r.n, eps, r.dtype, nthreads)
    _check(st, "layer_norm")
    return y


MAX_RANK = MC_CPU_LORA_MAX_RANK
# Output elements from which float32 lora writes past the caches.
LORA_STREAM_MIN = MC_CPU_LORA_STREAM_MIN


def lora(x, a, b, y, float scale, bint accumulate=False, int nthreads=1):
    """y[:] = scale * (x @ a) @ b, or y += that when ``accumulate``.

    x (rows, n_in) and y (rows, n_out) float32 or float16, distinct arrays; a (n_in, r)
    and b (r, n_out) float32, C-contiguous, 1 <= r <= MAX_RANK.
    """
    cdef Rows r
    cdef list keep = []
    cdef const float[:, ::1] af = a
    cdef const float[:, ::1] bf = b
    cdef int st
    cdef int64_t n_out = y.shape[1]
    if af.shape[0] != x.shape[1] or bf.shape[0] != af.shape[1] or bf.shape[1] != n_out:
        raise ValueError(f"lora: shapes x {x.shape}, a {a.shape}, b {b.shape}, y {y.shape}")
    if af.shape[1] < 1 or af.shape[1] > MC_CPU_LORA_MAX_RANK:
        raise ValueError(f"lora: rank {af.shape[1]} outside [1, {MC_CPU_LORA_MAX_RANK}]")
    if np.may_share_memory(x, y):
        raise ValueError("lora: x and y must not overlap")
    if _rows(x, y, &r, keep, False):
        if r.n == 0 and not accumulate:
            y[...] = 0  # x @ a over an empty axis
        return y
    with nogil:
        st = mc_cpu_lora(r.x, &af[0, 0], &bf[0, 0], r.y, r.rows, r.n, af.shape[1], n_out,
                         scale, accumulate, r.dtype, nthreads)
    _check(st, "lora")
    return y

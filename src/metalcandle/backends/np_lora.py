"""LoRA on NumPy arrays: scale * (x @ a) @ b, and x @ w (+ bias) + that (np_fused's
conventions: optional ``out=``, half types computed in float32). float32/float16 take the C kernel
of ``metalcandle._cpu_fused`` where it wins (see the policy below), else two BLAS calls with the
(rows, rank) intermediate scaled: x @ a is computed once per row, never per output column.
"""
import numpy as np

from metalcandle.backends import np_fused as _nf
from metalcandle.backends.np_fused import (_BLOCK, _F32, NUM_THREADS, _as_work, _flat_view,
                                           _new_out, _row_blocks, _work)

# When LoRA takes the C kernel (work = rows * rank * (n_in + n_out) multiply-adds). Its
# float32 rate per core matches OpenBLAS's, so float32 goes to C where C wins anyway: tiny
# work (a shorter call; BLAS runs one thread there too) and outputs of _nf._C.LORA_STREAM_MIN
# elements and more, which C writes past the caches (1.3-1.5x in a loop of calls; but right
# after a BLAS call, OpenBLAS's workers spin for ~0.1 s and hold a core). In between,
# OpenBLAS's resident threads beat starting new ones; past rank 32 its blocking wins.
# float16 always goes to C (NumPy converts whole blocks: 1.4-8x slower). lora_linear's
# accumulate always follows BLAS's x @ w, so it takes C single-threaded, up to
# _LORA_C_LINEAR_MAX work.
_LORA_C_SMALL = 1 << 18
_LORA_C_MAX_RANK = 32
_LORA_C_LINEAR_MAX = 1 << 20


def _lora_rows(x, n_in):
    x2 = x.reshape(-1, n_in)
    return x2, x2.shape[0]


def _lora_c(x, a, b, scale, out, linear=False):
    """out = scale * (x @ a) @ b (out += that for lora_linear) through the C kernel.

    False (nothing written) when it does not apply: no module, dtype other than float32 /
    float16, out strided or overlapping x, or a size where NumPy is faster.
    """
    n_in, rank, n_out = a.shape[0], a.shape[1], b.shape[1]
    rows = out.size // n_out
    work = rows * rank * (n_in + n_out)
    if (_nf._C is None or x.dtype != out.dtype or not _nf._C.supports(x.dtype.char)
            or not 1 <= rank <= _nf._C.MAX_RANK or not out.flags.c_contiguous):
        return False
    if linear:
        fast = work <= _LORA_C_LINEAR_MAX
    elif x.dtype != _F32:
        fast = True
    else:
        fast = work <= _LORA_C_SMALL or (rank <= _LORA_C_MAX_RANK
                                          and out.size >= _nf._C.LORA_STREAM_MIN)
    if not fast or np.may_share_memory(x, out):
        return False
    _nf._C.lora(np.ascontiguousarray(x).reshape(rows, n_in), np.ascontiguousarray(a, _F32),
            np.ascontiguousarray(b, _F32), out.reshape(rows, n_out), float(scale),
            linear, 1 if linear else NUM_THREADS)
    return True


def lora(x, a, b, scale, out=None):
    """scale * (x @ a) @ b; x (..., in), a (in, r), b (r, out)."""
    x = np.asarray(x)
    n_in, n_out = a.shape[0], b.shape[1]
    out = _new_out(out, x.shape[:-1] + (n_out,), x.dtype)
    if out.size == 0:
        return out
    if _lora_c(x, a, b, scale, out):
        return out
    wd = _work(x.dtype)
    a = _as_work(np.asarray(a), wd)
    b = _as_work(np.asarray(b), wd)
    x2, rows = _lora_rows(x, n_in)
    o2 = _flat_view(out, (rows, n_out))
    if o2 is not None and out.dtype == wd and x.dtype == wd:
        # Two BLAS calls on the whole batch; the (rows, r) intermediate is tiny.
        h = np.matmul(x2, a)
        h *= scale
        np.matmul(h, b, out=o2)
        return out
    dst = o2 if o2 is not None else np.empty((rows, n_out), out.dtype)
    for sl in _row_blocks(rows, max(n_in, n_out)):
        h = np.matmul(_as_work(x2[sl], wd), a)
        h *= scale
        np.copyto(dst[sl], np.matmul(h, b), casting="unsafe")
    if o2 is None:
        np.copyto(out, dst.reshape(out.shape))
    return out


def lora_linear(x, w, bias, a, b, scale, out=None):
    """x @ w (+ bias) + scale * (x @ a) @ b; w (in, out)."""
    x = np.asarray(x)
    n_in, n_out = w.shape
    out = _new_out(out, x.shape[:-1] + (n_out,), x.dtype)
    if out.size == 0:
        return out
    wd = _work(x.dtype)
    w = _as_work(np.asarray(w), wd)
    a = _as_work(np.asarray(a), wd)
    b = _as_work(np.asarray(b), wd)
    bias = None if bias is None else _as_work(np.asarray(bias), wd).reshape(n_out)
    x2, rows = _lora_rows(x, n_in)
    o2 = _flat_view(out, (rows, n_out))
    direct = o2 is not None and out.dtype == wd
    if direct and x.dtype == wd:
        np.matmul(x2, w, out=o2)
        if _lora_c(x2, a, b, scale, o2, linear=True):
            if bias is not None:
                o2 += bias
            return out
        h = np.matmul(x2, a)
        h *= scale
        _lora_accumulate(o2, h, b, bias)
        return out
    # Half (or strided out): convert a row block at a time, accumulate in float32.
    dst = o2 if o2 is not None else np.empty((rows, n_out), out.dtype)
    step = max(1, (1 << 22) // max(n_in, n_out))
    for r0 in range(0, rows, step):
        sl = slice(r0, min(rows, r0 + step))
        xb = _as_work(x2[sl], wd)
        ob = np.matmul(xb, w)
        if _lora_c(xb, a, b, scale, ob, linear=True):
            if bias is not None:
                ob += bias
        else:
            h = np.matmul(xb, a)
            h *= scale
            _lora_accumulate(ob, h, b, bias)
        np.copyto(dst[sl], ob, casting="unsafe")
    if o2 is None:
        np.copyto(out, dst.reshape(out.shape))
    return out


def _lora_accumulate(o2, h, b, bias):
    """o2 += h @ b (+ bias), through a cache-sized scratch block."""
    rows, n_out = o2.shape
    step = max(1, _BLOCK // n_out)
    tmp = np.empty(min(rows, step) * n_out, o2.dtype)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        t = tmp[:(r1 - r0) * n_out].reshape(r1 - r0, n_out)
        np.matmul(h[r0:r1], b, out=t)
        if bias is not None:
            t += bias
        o2[r0:r1] += t

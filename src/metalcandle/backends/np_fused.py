"""CPU implementations of the fused transformer primitives.

Pure functions on NumPy arrays; each takes an optional ``out=`` array that is
written in place and returned.  Half types (float16, ml_dtypes.bfloat16) are
computed in float32 and cast back; float64 stays float64.  Row-wise ops
(softmax over the last axis, rms_norm, layer_norm) and float32/float16 LoRA go
through the C kernels in ``metalcandle._cpu_fused`` when that module is built,
else through NumPy.

Inputs are assumed valid: the graph layer checks shapes and dtypes at build time.
"""

import importlib
import os

import numpy as np

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
# Elements per NumPy block: 64 Ki float32 = 256 KiB, so a block and its scratch stay in L2.
_BLOCK = 1 << 16


def _load_native():
    try:
        return importlib.import_module("metalcandle._cpu_fused")
    except ImportError:
        return None


# Tests swap this for None to exercise the NumPy path.
_C = _load_native()


def _cpu_threads():
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    # Past 4 threads these bandwidth-bound loops stop scaling.
    return max(1, min(n, 4))


NUM_THREADS = _cpu_threads()


def native_available():
    """True when the C kernels (metalcandle._cpu_fused) are in use."""
    return _C is not None


def _work(dt):
    """Accumulation dtype: float64 stays, everything else computes in float32."""
    return _F64 if dt == _F64 else _F32


def _new_out(out, shape, dtype):
    return np.empty(shape, dtype) if out is None else out


def _c_ok(x, out):
    # The C kernels take contiguous rows of float32 (or float16 when compiled in).
    return (_C is not None and x.dtype == out.dtype and x.ndim >= 1
            and _C.supports(x.dtype.char))


def _c_rows(fn, x, out, *args):
    """Run a row kernel on contiguous copies when x/out are strided."""
    xc = np.ascontiguousarray(x)
    if out.flags.c_contiguous:
        fn(xc.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1]), *args)
    else:
        tmp = np.empty(x.shape, x.dtype)
        fn(xc.reshape(-1, x.shape[-1]), tmp.reshape(-1, x.shape[-1]), *args)
        np.copyto(out, tmp)
    return out


def _as_work(blk, wd):
    return blk if blk.dtype == wd else blk.astype(wd)


def _flat_view(out, shape):
    """A contiguous view of ``out`` as ``shape``, or None when out is strided."""
    if out.flags.c_contiguous:
        return out.reshape(shape)
    return None


# ---------------------------------------------------------------- softmax

def softmax(x, axis=-1, out=None):
    """exp(x - max) / sum along ``axis``; output dtype = input dtype."""
    return _softmax(x, axis, out, False)


def log_softmax(x, axis=-1, out=None):
    """x - max - log(sum(exp(x - max))) along ``axis``."""
    return _softmax(x, axis, out, True)


def _softmax(x, axis, out, log):
    x = np.asarray(x)
    out = _new_out(out, x.shape, x.dtype)
    if x.size == 0:
        return out
    if x.ndim == 0:
        out[...] = 0.0 if log else 1.0
        return out
    axis = axis % x.ndim
    if axis == x.ndim - 1 and _c_ok(x, out):
        return _c_rows(_C.softmax, x, out, bool(log), NUM_THREADS)
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    n = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    x3 = x.reshape(outer, n, inner)
    o3 = _flat_view(out, (outer, n, inner))
    dst = o3 if o3 is not None else np.empty((outer, n, inner), out.dtype)
    wd = _work(x.dtype)
    cast = dst.dtype != wd
    if n * inner <= _BLOCK:
        bo = max(1, _BLOCK // (n * inner))
        bi = inner
    else:
        bo = 1
        bi = max(1, _BLOCK // n) if inner > 1 else 1
    for o0 in range(0, outer, bo):
        for i0 in range(0, inner, bi):
            sl = (slice(o0, o0 + bo), slice(None), slice(i0, i0 + bi))
            xb = _as_work(x3[sl], wd)
            ob = np.empty(xb.shape, wd) if cast else dst[sl]
            _softmax_block(xb, ob, log)
            if cast:
                np.copyto(dst[sl], ob, casting="unsafe")
    if o3 is None:
        np.copyto(out, dst.reshape(out.shape))
    return out


def _softmax_block(xb, ob, log):
    m = xb.max(axis=1, keepdims=True)
    # A fully -inf row gives NaN (-inf - -inf), as the formula does; no warning.
    with np.errstate(invalid="ignore"):
        np.subtract(xb, m, out=ob)
    if log:
        s = np.exp(ob).sum(axis=1, keepdims=True)
        np.log(s, out=s)
        np.subtract(ob, s, out=ob)
    else:
        np.exp(ob, out=ob)
        s = ob.sum(axis=1, keepdims=True)
        np.divide(ob, s, out=ob)


# ---------------------------------------------------------------- norms

def _row_blocks(rows, n):
    step = max(1, _BLOCK // max(n, 1))
    for r0 in range(0, rows, step):
        yield slice(r0, min(rows, r0 + step))


def _norm_setup(x, out, params):
    n = x.shape[-1]
    rows = x.size // n if n else 0
    x2 = x.reshape(rows, n)
    o2 = _flat_view(out, (rows, n))
    dst = o2 if o2 is not None else np.empty((rows, n), out.dtype)
    wd = _work(x.dtype)
    ps = [None if p is None else np.asarray(p).astype(wd, copy=False).reshape(n)
          for p in params]
    return n, x2, dst, o2 is None, wd, ps


def rms_norm(x, weight, eps, out=None):
    """x * rsqrt(mean(x*x, -1) + eps) * weight (weight may be None)."""
    x = np.asarray(x)
    out = _new_out(out, x.shape, x.dtype)
    if x.size == 0:
        return out
    if _c_ok(x, out):
        w = None if weight is None else np.ascontiguousarray(weight, np.float32).reshape(-1)
        return _c_rows(_C.rms_norm, x, out, w, float(eps), NUM_THREADS)
    n, x2, dst, copy_back, wd, (w,) = _norm_setup(x, out, (weight,))
    cast = dst.dtype != wd
    inv_n = 1.0 / n
    for sl in _row_blocks(x2.shape[0], n):
        xb = _as_work(x2[sl], wd)
        ob = np.empty(xb.shape, wd) if cast else dst[sl]
        ss = np.einsum("ij,ij->i", xb, xb)
        ss *= inv_n
        ss += eps
        np.sqrt(ss, out=ss)
        np.divide(1.0, ss, out=ss)
        np.multiply(xb, ss[:, None], out=ob)
        if w is not None:
            ob *= w
        if cast:
            np.copyto(dst[sl], ob, casting="unsafe")
    if copy_back:
        np.copyto(out, dst.reshape(out.shape))
    return out


def layer_norm(x, weight, bias, eps, out=None):
    """(x - mean) * rsqrt(var + eps) * weight + bias over the last axis."""
    x = np.asarray(x)
    out = _new_out(out, x.shape, x.dtype)
    if x.size == 0:
        return out
    if _c_ok(x, out):
        w = None if weight is None else np.ascontiguousarray(weight, np.float32).reshape(-1)
        b = None if bias is None else np.ascontiguousarray(bias, np.float32).reshape(-1)
        return _c_rows(_C.layer_norm, x, out, w, b, float(eps), NUM_THREADS)
    n, x2, dst, copy_back, wd, (w, b) = _norm_setup(x, out, (weight, bias))
    cast = dst.dtype != wd
    inv_n = 1.0 / n
    for sl in _row_blocks(x2.shape[0], n):
        xb = _as_work(x2[sl], wd)
        ob = np.empty(xb.shape, wd) if cast else dst[sl]
        mean = xb.sum(axis=1, dtype=wd)
        mean *= inv_n
        np.subtract(xb, mean[:, None], out=ob)
        # Corrected two-pass: the residual mean of the deviations fixes the float32
        # rounding of the first mean, and var never cancels catastrophically.
        dmean = ob.sum(axis=1)
        dmean *= inv_n
        var = np.einsum("ij,ij->i", ob, ob)
        var *= inv_n
        var -= dmean * dmean
        var += eps
        np.sqrt(var, out=var)
        np.divide(1.0, var, out=var)
        ob -= dmean[:, None]
        ob *= var[:, None]
        if w is not None:
            ob *= w
        if b is not None:
            ob += b
        if cast:
            np.copyto(dst[sl], ob, casting="unsafe")
    if copy_back:
        np.copyto(out, dst.reshape(out.shape))
    return out


# ---------------------------------------------------------------- rope

def _rope_tables(L, dims, base, scale, offset, wd):
    # Angles in float64: positions * inv_freq reach 1e3+ rad, float32 would lose ~1e-4.
    pos = (np.arange(L, dtype=np.float64) + offset) * scale
    inv = np.power(float(base), -np.arange(0, dims, 2, dtype=np.float64) / dims)
    theta = np.outer(pos, inv)
    return np.cos(theta).astype(wd), np.sin(theta).astype(wd)


def rope(x, dims, traditional, base, scale, offset, out=None):
    """Rotary embedding (MLX semantics) on the first ``dims`` features of x (..., L, D)."""
    x = np.asarray(x)
    out = _new_out(out, x.shape, x.dtype)
    if x.size == 0:
        return out
    L, D = x.shape[-2], x.shape[-1]
    half = dims // 2
    wd = _work(x.dtype)
    cos, sin = _rope_tables(L, dims, base, scale, offset, wd)
    x3 = x.reshape(-1, L, D)
    o3 = _flat_view(out, x3.shape)
    dst = o3 if o3 is not None else np.empty(x3.shape, out.dtype)
    if dims < D and not np.shares_memory(x3, dst):
        dst[..., dims:] = x3[..., dims:]
    if traditional:
        s1, s2 = slice(0, 2 * half, 2), slice(1, 2 * half, 2)
    else:
        s1, s2 = slice(0, half), slice(half, 2 * half)
    step = max(1, _BLOCK // max(L * dims, 1))
    # Write straight into out unless it aliases x or needs a cast.
    direct = dst.dtype == wd and not np.shares_memory(x3, dst)
    for b0 in range(0, x3.shape[0], step):
        blk = x3[b0:b0 + step]
        ob = dst[b0:b0 + step]
        x1 = _as_work(blk[..., s1], wd)
        x2 = _as_work(blk[..., s2], wd)
        t = x2 * sin
        if direct:
            o1, o2 = ob[..., s1], ob[..., s2]
            np.multiply(x1, cos, out=o1)
            o1 -= t
            np.multiply(x1, sin, out=o2)
            np.multiply(x2, cos, out=t)
            o2 += t
            continue
        # Both halves read x before either is written, so out may alias x.
        r1 = x1 * cos
        r1 -= t
        r2 = x1 * sin
        np.multiply(x2, cos, out=t)
        r2 += t
        np.copyto(ob[..., s1], r1, casting="unsafe")
        np.copyto(ob[..., s2], r2, casting="unsafe")
    if o3 is None:
        np.copyto(out, dst.reshape(out.shape))
    return out


# ---------------------------------------------------------------- attention

def _mask5(mask, B, Hkv, G, Lq, Lk):
    """Reshape a mask broadcastable to (B, Hq, Lq, Lk) into (b, h, g, Lq|1, Lk|1)."""
    m = np.asarray(mask)
    while m.ndim < 4:
        m = m[None]
    mb, mh, mq, mk = m.shape
    if mh == 1:
        return m.reshape(mb, 1, 1, mq, mk)
    return m.reshape(mb, Hkv, G, mq, mk)


def scaled_dot_product_attention(q, k, v, scale, mask=None, out=None):
    """softmax(scale * q @ k^T + mask) @ v with grouped-query heads.

    q (B, Hq, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv); mask None, "causal",
    boolean (True = keep) or additive, broadcastable to (B, Hq, Lq, Lk).  Fully
    masked rows give the mean of v (masked scores are the dtype minimum, not -inf).
    """
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    B, Hq, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    G = Hq // Hkv
    out = _new_out(out, (B, Hq, Lq, Dv), q.dtype)
    if out.size == 0:
        return out
    wd = _work(q.dtype)
    # Each kv head serves G query heads through a stride-0 axis: no repeat is materialised.
    kT = _as_work(k, wd).swapaxes(-1, -2)[:, :, None]
    v5 = _as_work(v, wd)[:, :, None]
    q5 = q.reshape(B, Hkv, G, Lq, D)
    o5 = _flat_view(out, (B, Hkv, G, Lq, Dv))
    direct = o5 is not None and out.dtype == wd
    keep = add = None
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"scaled_dot_product_attention: unknown mask {mask!r}")
        keep = np.arange(Lk)[None, :] <= np.arange(Lq)[:, None] + (Lk - Lq)
        keep = keep.reshape(1, 1, 1, Lq, Lk)
    elif mask is not None:
        m5 = _mask5(mask, B, Hkv, G, Lq, Lk)
        if m5.dtype == np.bool_:
            keep = m5
        else:
            add = m5
    neg = np.finfo(wd).min
    # Query rows per chunk: keep the score block near 4 MiB.
    c = max(1, min(Lq, (1 << 20) // max(1, B * Hq * Lk)))
    sbuf = np.empty(B * Hq * c * Lk, wd)
    obuf = None if direct else np.empty(B * Hq * c * Dv, wd)
    causal = isinstance(mask, str)
    for i0 in range(0, Lq, c):
        i1 = min(Lq, i0 + c)
        cc = i1 - i0
        # Causal chunks skip the keys no row of theirs can see (unless a row sees none).
        kn = min(Lk, i1 + Lk - Lq) if causal and i0 + Lk - Lq >= 0 else Lk
        qs = np.multiply(q5[:, :, :, i0:i1], scale, dtype=wd)
        s = sbuf[:B * Hq * cc * kn].reshape(B, Hkv, G, cc, kn)
        np.matmul(qs, kT[..., :kn], out=s)
        if keep is not None:
            kc = keep[:, :, :, i0:i1] if keep.shape[3] != 1 else keep
            np.copyto(s, neg, where=~kc[..., :kn] if kc.shape[4] != 1 else ~kc)
        if add is not None:
            ac = add[:, :, :, i0:i1] if add.shape[3] != 1 else add
            np.add(s, ac, out=s, casting="unsafe")
        softmax(s, -1, out=s)
        if direct:
            np.matmul(s, v5[:, :, :, :kn], out=o5[:, :, :, i0:i1])
        else:
            ob = obuf[:B * Hq * cc * Dv].reshape(B, Hkv, G, cc, Dv)
            np.matmul(s, v5[:, :, :, :kn], out=ob)
            np.copyto(out[:, :, i0:i1], ob.reshape(B, Hq, cc, Dv), casting="unsafe")
    return out


# LoRA lives in np_lora.py (its C-kernel policy is long); the names stay importable from here.
from metalcandle.backends import np_lora as _np_lora  # noqa: E402

lora, lora_linear = _np_lora.lora, _np_lora.lora_linear

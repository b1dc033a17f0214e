"""Metal kernels of the fused primitives other than softmax and rms_norm (those live in
metal_backend): ``KERNELS[name](backend, node, ins)`` encodes the dispatch(es) and returns the
output (a NumPy view of device memory), or None to let the NumPy implementation run instead.

Dispatches per node (docs/metal.md, "Fused kernels"):

==============================  =====================================================  ======
op                              kernels (shaders/)                                     count
==============================  =====================================================  ======
layer_norm                      layernorm_{block,looped}                               1
log_softmax (last axis)         softmax_log_{block,looped}                             1
rope                            rope_{traditional,split}                               1
lora                            lora_down (t = scale * x @ a, once), lora_up (t @ b)   2
lora_linear                     lora_down, lora_linear (tiled x @ w + t @ b [+ bias])  2
scaled_dot_product_attention    attention_sdpa                                         1
==============================  =====================================================  ======

Every kernel wants its operands in the node's dtype (f32, f16 or bf16), else None. A strided
operand is first copied to a contiguous buffer on the device (one ``copy_strided`` dispatch),
except for attention, which reads q, k, v and the mask through their strides.
"""
import struct

import numpy as np

from metalcandle.backends.np_dtypes import NP

KERNELS = {}

_SUFFIX = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
_ROW_BLOCK_MAX = 4096        # MC_ROW_BLOCK_MAX: rows up to this use the _block kernels
_SDPA_MAX_D = 256            # MC_SDPA_MAX_D of attention.metal
_INT32_MAX = 2 ** 31 - 1


def _kernel(name):
    def register(fn):
        KERNELS[name] = fn
        return fn
    return register


def _suffix(node, *arrays):
    """The dtype suffix of the node, when it is a float dtype with kernels and every given array
    (None skipped) has it; else None."""
    dt = NP[node._dtype_code]
    sfx = _SUFFIX.get(dt.name) if dt is not None else None
    if sfx is None or node.size == 0:
        return None
    if any(a is not None and a.dtype != dt for a in arrays):
        return None
    return sfx


def _all_kernels(backend, *names):
    return all(backend.has(n) for n in names)


def contiguous(backend, a):
    """(C-contiguous device array, binding) holding ``a``'s values: ``a`` itself when it already
    is, an upload for host memory, else a copy_strided dispatch on the device."""
    if a.flags.c_contiguous or backend.binding(a) is None:
        return backend.on_device(a)
    from metalcandle.backends import metal_backend
    sfx = _SUFFIX.get(a.dtype.name)
    name = f"copy_strided_from_{sfx}_{sfx}"
    if sfx is None or a.ndim > metal_backend.MAX_DIMS or not backend.has(name):
        return None
    out = backend.empty(a.shape, a.dtype)
    n = a.size
    backend.dev.dispatch(name, [backend.binding(a), backend.binding(out),
                                metal_backend._strided_args(a.shape, [a])],
                         (n, 1, 1), (min(256, n), 1, 1), threads=True, writes=[1])
    return out, backend.binding(out)


def _contig_all(backend, *arrays):
    """contiguous() of each array (None stays None); None when any cannot be made contiguous."""
    res = []
    for a in arrays:
        if a is None:
            res.append((None, None))
            continue
        r = contiguous(backend, a)
        if r is None:
            return None
        res.append(r)
    return res


def _row_threads(n, per_thread):
    t = -(-n // per_thread)
    return max(32, min(1024, ((t + 31) // 32) * 32))


def _row_args(rows, n, eps=0.0):
    return struct.pack("<qqff", rows, n, eps, 0.0)   # mc_row_args


# ------------------------------------------------------------------ row kernels
def _rows(backend, node, family, x, *params, consts=None, eps=0.0):
    """One threadgroup per row of x's last axis: kernel <family>_{block,looped}_<dt> bound as
    (x, *params, out, mc_row_args). None when the dtype, size or kernel does not fit."""
    sfx = _suffix(node, x, *params)
    if sfx is None or x.shape[-1] == 0:
        return None
    n = x.shape[-1]
    rows = x.size // n
    variant = "block" if n <= _ROW_BLOCK_MAX else "looped"
    name = f"{family}_{variant}_{sfx}"
    if not backend.has(name):
        return None
    bound = _contig_all(backend, x, *params)
    if bound is None:
        return None
    out = backend.empty(x.shape, x.dtype)
    bufs = [b for _, b in bound] + [backend.binding(out), _row_args(rows, n, eps)]
    threads = _row_threads(n, 4) if variant == "block" else 1024
    backend.dev.dispatch(name, bufs, (rows, 1, 1), (threads, 1, 1), constants=consts,
                         writes=[len(bufs) - 2])
    return out


@_kernel("layer_norm")
def layer_norm(backend, node, ins):
    has_w, has_b = node._aux
    w = ins[1] if has_w else None
    b = ins[-1] if has_b else None
    return _rows(backend, node, "layernorm", ins[0], w, b, consts={0: has_w, 1: has_b},
                 eps=node._scalar)


@_kernel("log_softmax")
def log_softmax(backend, node, ins):
    if node._aux != ins[0].ndim - 1:
        return None
    return _rows(backend, node, "softmax_log", ins[0])


# ------------------------------------------------------------------ rope
def rope_freq_table(dims, base, scale):
    """float32[dims]: (hi, lo) per pair j of f_j = scale * base ** (-2j / dims), f_j = hi + lo to
    ~1e-15 relative (rope.metal forms the angles from both halves)."""
    f = scale * np.power(float(base), -np.arange(0, dims, 2, dtype=np.float64) / dims)
    hi = f.astype(np.float32)
    lo = (f - hi.astype(np.float64)).astype(np.float32)
    return np.stack([hi, lo], axis=1).reshape(-1)


def rope_args(rows, L, D, dims, offset):
    return struct.pack("<5q", rows, L, D, dims, offset)    # mc_rope_args of rope.metal


@_kernel("rope")
def rope(backend, node, ins):
    dims, traditional, base, scale, offset = node._aux
    x = ins[0]
    sfx = _suffix(node, x)
    L, D = x.shape[-2], x.shape[-1]
    # positions are formed in float: exact only below 2^24
    if sfx is None or L == 0 or D == 0 or offset + L > 1 << 24:
        return None
    name = f"rope_{'traditional' if traditional else 'split'}_{sfx}"
    if not backend.has(name):
        return None
    bound = contiguous(backend, x)
    if bound is None:
        return None
    rows = x.size // D
    _, freq = backend.on_device(rope_freq_table(dims, base, scale))
    out = backend.empty(x.shape, x.dtype)
    cols = D - dims // 2
    backend.dev.dispatch(name, [bound[1], freq, backend.binding(out), rope_args(rows, L, D, dims, offset)],
                         (cols, rows, 1), (min(256, cols), 1, 1), threads=True, writes=[2])
    return out


# ------------------------------------------------------------------ LoRA
def lora_args(rows, n_in, rank, n_out, scale):
    return struct.pack("<4q2f", rows, n_in, rank, n_out, scale, 0.0)   # mc_lora_args of lora.metal


def matmul_args(M, N, K):
    """mc_matmul_args of one contiguous (M, K) @ (K, N) product."""
    return struct.pack("<4i7q", M, N, K, 1, 0, K, 1, 0, N, 1, M * N)


def _lora(backend, node, x, w, bias, a, b, scale):
    sfx = _suffix(node, x, w, bias, a, b)
    n_in, rank = a.shape
    n_out = b.shape[1]
    if sfx is None or n_in == 0 or rank == 0:
        return None
    rows = x.size // n_in
    names = [f"lora_down_{sfx}", f"lora_up_{sfx}" if w is None else f"lora_linear_{sfx}"]
    if max(rows, n_in, n_out) > _INT32_MAX or not _all_kernels(backend, *names):
        return None
    bound = _contig_all(backend, x, w, bias, a, b)
    if bound is None:
        return None
    (_, xb), (_, wb), (_, biasb), (_, ab), (_, bb) = bound
    dev = backend.dev
    args = lora_args(rows, n_in, rank, n_out, scale)
    # 1. t = scale * (x @ a): (rows, rank) floats, each computed once.
    t = backend.empty((rows, rank), np.float32)
    tb = backend.binding(t)
    dev.dispatch(names[0], [xb, ab, tb, args], (rows, 1, 1), (32 * min(8, rank), 1, 1), writes=[2])
    out = backend.empty(node.shape, NP[node._dtype_code])
    ob = backend.binding(out)
    if w is not None:
        # 2. out = x @ w + t @ b (+ bias): the tiled matmul with a rank-long epilogue on the
        # same float accumulators.
        dev.dispatch(names[1], [xb, wb, tb, bb, biasb, ob, matmul_args(rows, n_out, n_in), args],
                     ((n_out + 31) // 32, (rows + 31) // 32, 1), (16, 16, 1),
                     constants={0: bias is not None}, writes=[5])
        return out
    # 2. out = t @ b: one thread per output element, rank multiply-adds each.
    dev.dispatch(names[1], [tb, bb, biasb, ob, args], (n_out, rows, 1), (min(256, n_out), 1, 1),
                 threads=True, constants={0: False}, writes=[3])
    return out


@_kernel("lora")
def lora(backend, node, ins):
    x, a, b = ins
    return _lora(backend, node, x, None, None, a, b, node._scalar)


@_kernel("lora_linear")
def lora_linear(backend, node, ins):
    x, w, a, b = ins[:4]
    bias = ins[4] if node._aux[0] else None
    return _lora(backend, node, x, w, bias, a, b, node._scalar)


# ------------------------------------------------------------------ attention
def sdpa_args(B, Hq, Hkv, Lq, Lk, D, Dv, scale, q_strides, k_strides, v_strides, m_strides):
    """mc_sdpa_args of attention.metal; strides in elements, four each."""
    return struct.pack("<7if16q", B, Hq, Hkv, Lq, Lk, D, Dv, scale,
                       *q_strides, *k_strides, *v_strides, *m_strides)


def sdpa_simdgroups(Lk):
    """Simdgroups per threadgroup of attention_sdpa: up to 4, none idle for short key ranges."""
    return max(1, min(4, Lk))


def _strided_on_device(backend, a):
    """(device array, binding, element strides) of ``a``: any layout with non-negative strides
    is read in place (host arrays are uploaded, negative strides copied)."""
    if backend.binding(a) is not None and min(a.strides, default=0) < 0:
        r = contiguous(backend, a)
    else:
        r = backend.on_device(a)
    if r is None:
        return None
    arr, b = r
    return arr, b, tuple(s // arr.itemsize for s in arr.strides)


@_kernel("scaled_dot_product_attention")
def scaled_dot_product_attention(backend, node, ins):
    kind = node._aux[0]
    q, k, v = ins[:3]
    mask = ins[3] if kind in ("bool", "additive") else None
    sfx = _suffix(node, q, k, v, mask if kind == "additive" else None)
    if sfx is None or kind == "bool" and mask.dtype != np.bool_:
        return None
    B, Hq, Lq, D = q.shape
    Hkv, Lk, Dv = k.shape[1], k.shape[2], v.shape[3]
    if Lk == 0 or D > _SDPA_MAX_D or Dv > _SDPA_MAX_D or max(B, Hq, Lq, Lk) > _INT32_MAX:
        return None
    name = f"attention_sdpa_{sfx}"
    if not backend.has(name):
        return None
    qd, kd, vd = (_strided_on_device(backend, t) for t in (q, k, v))
    if qd is None or kd is None or vd is None:
        return None
    m_strides, keep_b, add_b = (0, 0, 0, 0), None, None
    if mask is not None:
        md = _strided_on_device(backend, mask)
        if md is None:
            return None
        mv = np.broadcast_to(md[0], (B, Hq, Lq, Lk))
        m_strides = tuple(s // mv.itemsize for s in mv.strides)
        if kind == "bool":
            keep_b = md[1]
        else:
            add_b = md[1]
    out = backend.empty(node.shape, NP[node._dtype_code])
    args = sdpa_args(B, Hq, Hkv, Lq, Lk, D, Dv, node._scalar, qd[2], kd[2], vd[2], m_strides)
    backend.dev.dispatch(name, [qd[1], kd[1], vd[1], keep_b, add_b, backend.binding(out), args],
                         (Lq, Hq, B), (32 * sdpa_simdgroups(Lk), 1, 1),
                         constants={0: kind == "causal", 1: kind == "bool", 2: kind == "additive"},
                         writes=[5])
    return out

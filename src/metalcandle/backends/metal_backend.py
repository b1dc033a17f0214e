"""The Metal backend: primitives with a shipped kernel become dispatches; the rest fall back to the
NumPy implementation on the same (shared) memory after a sync.

Node buffers on this device are NumPy views of shared-storage MTLBuffers, so ``np.asarray`` of a
result is zero-copy and the NumPy fallback needs no transfer, only a sync. Dispatches are batched by
the native policy (one open command buffer, committed every N dispatches); the executor calls
:func:`finish` once per ``eval`` (one sync), before any node is committed, so a command-buffer
failure leaves every requested tensor pending.
"""
import struct
import threading

import numpy as np

from metalcandle import _graph as g
from metalcandle.backends import metal_fused, np_region, numpy_backend
from metalcandle.backends.np_dtypes import NP

_OPS = {name: i for i, name in enumerate(g.op_names)}
SUFFIX = ["bool", "u8", "i8", "i16", "u32", "i32", "i64", "f16", "bf16", "f32", "f64"]
MAX_DIMS = 8
ROW_BLOCK_MAX = 4096
# struct mc_program_args of shaders/program.metal (n, ndim, n_inputs, n_code, contiguous, shape,
# strides[24][8], in_bool, consts[32], code[96][8], reserved)
PROGRAM_MAX_INPUTS = 24
PROGRAM_CODE_BYTES = 96 * 8
_PROGRAM_ARGS = struct.Struct(f"<q4i{MAX_DIMS}q{PROGRAM_MAX_INPUTS * MAX_DIMS}qI32f{PROGRAM_CODE_BYTES}sI")

_UNARY = {"negative": "neg", "abs": "abs", "sign": "sign", "square": "square", "sqrt": "sqrt",
          "rsqrt": "rsqrt", "reciprocal": "reciprocal", "exp": "exp", "log": "log", "sin": "sin",
          "cos": "cos", "tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "silu": "silu",
          "gelu": "gelu", "gelu_approx": "gelu_tanh", "floor": "floor", "ceil": "ceil",
          "logical_not": "logical_not"}
_BINARY = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div", "maximum": "max",
           "minimum": "min", "power": "pow", "equal": "eq", "not_equal": "ne", "less": "lt",
           "less_equal": "le", "greater": "gt", "greater_equal": "ge"}
_REDUCE = {"sum": "sum", "max": "max", "min": "min", "mean": "mean", "argmax": "argmax",
           "argmin": "argmin"}


class MetalBackend:
    """Per-device state: the device, which kernels exist, counters of the fallback."""

    def __init__(self, dev):
        self.dev = dev
        self.missing = set()        # kernel names the shipped library does not have
        self.fallbacks = 0
        self.local = threading.local()   # per thread: did this thread's eval dispatch work?
        self.impls = [self._wrap(i, name) for i, name in enumerate(g.op_names)]
        self.codegen = False        # generated kernels per region structure (metal_codegen)
        self.regions = None

    # ----------------------------------------------------------------- buffers
    def to_device(self, a):
        """A NumPy view of a new device buffer holding ``a``'s values (C-contiguous)."""
        a = np.asarray(a)
        if not a.flags.c_contiguous:
            a = a.copy(order="C")      # (np.ascontiguousarray would turn 0-d into 1-d)
        buf = self.dev.buffer(max(a.nbytes, 1))
        v = buf.numpy(a.dtype, a.shape)
        v[...] = a
        return v

    def empty(self, shape, dtype):
        dt = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        return self.dev.buffer(max(n, 1)).numpy(dt, tuple(shape))

    def binding(self, a):
        """(Buffer, byte offset) of a device-backed view, or None for host memory."""
        base = a
        from metalcandle._metal import Buffer
        while base is not None and not isinstance(base, Buffer):
            base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
        if base is None:
            return None
        return base, a.__array_interface__["data"][0] - base.address

    def on_device(self, a):
        """(array, (Buffer, offset)) with the data in device memory (uploads host arrays)."""
        b = self.binding(a)
        if b is None:
            a = self.to_device(a)
            b = self.binding(a)
        return a, b

    # ----------------------------------------------------------------- dispatch helpers
    def has(self, name):
        if name in self.missing:
            return False
        try:
            self.dev.pipeline(name)
            return True
        except LookupError:
            self.missing.add(name)
            return False

    def _wrap(self, op, name):
        fallback = numpy_backend.IMPLS[op]
        kernel = getattr(self, "_k_" + _family(name), None)
        if kernel is None and name in metal_fused.KERNELS:
            fk = metal_fused.KERNELS[name]

            def kernel(name, node, ins, _fk=fk):
                return _fk(self, node, ins)

        def impl(node, ins, out):
            self.local.used = True
            if kernel is not None:
                r = kernel(name, node, ins)
                if r is not None:
                    return r
            # No kernel for this op/dtype/layout: NumPy on the same memory, after a sync.
            self.fallbacks += 1
            self.dev.sync()
            return fallback(node, ins, None)
        return impl

    def _contig_or_strided(self, family, variant, dt, node, arrays, extra_out_dtype=None,
                           strided=None):
        # strided: the kernel name for non-contiguous/broadcast operands when it does not follow
        # the family's "<family>_<variant>_strided_<dt>" rule
        shape = node.shape
        n = node.size
        out = self.empty(shape, extra_out_dtype or NP[node._dtype_code])
        if n == 0:
            return out
        bound = []
        contig = True
        for a in arrays:
            a, b = self.on_device(a)
            bound.append((a, b))
            if a.shape != shape or not a.flags.c_contiguous:
                contig = False
        if contig:
            name = f"{family}_{variant}_{dt}"
            if not self.has(name):
                return None
            args = struct.pack("<q", n)
        else:
            if len(shape) > MAX_DIMS:
                return None
            name = strided or (f"{family}_{variant}_strided_{dt}" if family != "ternary"
                               else f"ternary_where_strided_{dt}")
            if not self.has(name):
                return None
            args = _strided_args(shape, [a for a, _ in bound])
        ob = self.binding(out)
        bufs = [b for _, b in bound] + [ob, args]
        self.dev.dispatch(name, bufs, (n, 1, 1), (min(256, n), 1, 1), threads=True,
                          writes=[len(bound)])
        return out

    # ----------------------------------------------------------------- op families
    def _k_unary(self, name, node, ins):
        dt = SUFFIX[node._aux]
        x = ins[0]
        if x.dtype != NP[node._aux] or node._aux != node._dtype_code and name != "logical_not":
            return None
        return self._contig_or_strided("unary", _UNARY[name], dt, node, [x])

    def _k_binary(self, name, node, ins):
        ct = node._aux
        dt = SUFFIX[ct]
        if name not in _BINARY:
            return None
        a = ins[0]
        if a.dtype != NP[ct]:
            return None
        if node._flags & 1:
            b = np.array(node._scalar, dtype=NP[ct]).reshape((1,) * node.ndim)
            a, b = (b, a) if node._flags & 2 else (a, b)
        else:
            b = ins[1]
            if b.dtype != NP[ct]:
                return None
        return self._contig_or_strided("binary", _BINARY[name], dt, node, [a, b])

    def _k_ternary(self, name, node, ins):
        c, a, b = ins
        ct = node._aux
        if c.dtype != np.bool_ or a.dtype != NP[ct] or b.dtype != NP[ct]:
            return None
        return self._contig_or_strided("ternary", "where", SUFFIX[ct], node, [c, a, b])

    def _k_cast(self, name, node, ins):
        x = ins[0]
        src, dst = SUFFIX[node._aux], SUFFIX[node._dtype_code]
        if x.dtype != NP[node._aux]:
            return None
        return self._contig_or_strided("copy", f"contig_from_{src}", dst, node, [x],
                                       strided=f"copy_strided_from_{src}_{dst}")

    def _k_reduce(self, name, node, ins):
        x = ins[0]
        axes = node._aux
        d = node._dtype_code
        if name in ("argmax", "argmin"):
            if axes is None or axes != x.ndim - 1 or not x.flags.c_contiguous:
                return None
            dt = SUFFIX[g.to_dtype(x.dtype.name if x.dtype.name != "bfloat16" else "bfloat16", name).code]
        else:
            if x.dtype != NP[d] or axes != tuple(range(x.ndim - len(axes), x.ndim)) or not axes:
                return None
            dt = SUFFIX[d]
        if not x.flags.c_contiguous or x.size == 0:
            return None
        n = int(np.prod([x.shape[i] for i in range(x.ndim - (1 if isinstance(axes, int) else len(axes)), x.ndim)]))
        rows = x.size // n
        kname = f"reduce_{_REDUCE[name]}_{dt}"
        if not self.has(kname):
            return None
        out_dtype = np.uint32 if name in ("argmax", "argmin") else NP[d]
        out = self.empty((rows,), out_dtype)
        x, xb = self.on_device(x)
        self.dev.dispatch(kname, [xb, self.binding(out), _row_args(rows, n)], (rows, 1, 1),
                          (_row_threads(n, 1), 1, 1), writes=[1])
        if name in ("argmax", "argmin"):
            self.dev.sync()
            return out.astype(np.int64).reshape(node.shape)
        return out.reshape(node.shape)

    def _k_rows(self, family, node, x, w=None, eps=0.0):
        if x.dtype != NP[node._dtype_code] or not x.flags.c_contiguous or x.size == 0:
            return None
        n = x.shape[-1]
        rows = x.size // n
        dt = SUFFIX[node._dtype_code]
        variant = "block" if n <= ROW_BLOCK_MAX else "looped"
        kname = f"{family}_{variant}_{dt}"
        if not self.has(kname):
            return None
        out = self.empty(x.shape, x.dtype)
        x, xb = self.on_device(x)
        if family == "softmax":
            bufs = [xb, self.binding(out), _row_args(rows, n)]
            consts, writes = None, [1]
        else:
            wb = None
            if w is not None:      # a broadcast or strided weight: made contiguous on the device
                wc = metal_fused.contiguous(self, w)
                if wc is None:
                    return None
                wb = wc[1]
            bufs = [xb, wb, self.binding(out), _row_args(rows, n, eps)]
            consts, writes = {0: w is not None}, [2]
        threads = _row_threads(n, 4) if variant == "block" else 1024
        self.dev.dispatch(kname, bufs, (rows, 1, 1), (threads, 1, 1), constants=consts,
                          writes=writes)
        return out

    def _k_softmax(self, name, node, ins):
        if node._aux != ins[0].ndim - 1:
            return None
        return self._k_rows("softmax", node, ins[0])

    def _k_rms_norm(self, name, node, ins):
        w = ins[1] if node._aux[0] else None
        if w is not None and w.dtype != ins[0].dtype:
            return None
        return self._k_rows("rmsnorm", node, ins[0], w, node._scalar)

    def _k_matmul(self, name, node, ins):
        a, b = ins
        ct = node._aux
        if a.dtype != NP[ct] or b.dtype != NP[ct] or SUFFIX[ct] not in ("f32", "f16", "bf16"):
            return None
        if a.ndim < 2 or b.ndim < 2 or node.size == 0:
            return None
        kname = f"matmul_tiled_{SUFFIX[ct]}"
        if not self.has(kname):
            return None
        shape = node.shape
        M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
        batch_shape = shape[:-2]
        batch = int(np.prod(batch_shape, dtype=np.int64)) if batch_shape else 1
        # Batch dims must collapse to one stride per operand (contiguous batch or broadcast).
        aa = np.broadcast_to(a, batch_shape + (M, K)).reshape((batch, M, K)) if batch_shape else a.reshape(1, M, K)
        bb = np.broadcast_to(b, batch_shape + (K, N)).reshape((batch, K, N)) if batch_shape else b.reshape(1, K, N)
        if aa.base is not None and not _views_same(aa, a) or bb.base is not None and not _views_same(bb, b):
            return None
        aa, ab = self.on_device(aa)
        bbv, bbind = self.on_device(bb)
        out = self.empty(shape, NP[ct])
        it = aa.itemsize
        args = struct.pack("<4i7q", M, N, K, batch,
                           aa.strides[0] // it if batch > 1 else 0, aa.strides[1] // it, aa.strides[2] // it,
                           bbv.strides[0] // it if batch > 1 else 0, bbv.strides[1] // it, bbv.strides[2] // it,
                           M * N)
        self.dev.dispatch(kname, [ab, bbind, self.binding(out), args],
                          ((N + 31) // 32, (M + 31) // 32, batch), (16, 16, 1), writes=[2])
        return out

    def _k_elementwise_region(self, name, node, ins):
        # One dispatch of the shipped register-program kernel (shaders/program.metal).
        code, _ = node._aux
        shape, n, T = node.shape, node.size, NP[node._dtype_code]
        kname = f"program_run_{SUFFIX[node._dtype_code]}"
        if len(shape) > MAX_DIMS or n == 0 or n >= 2 ** 31 or len(ins) > PROGRAM_MAX_INPUTS \
                or not self.has(kname):
            return None
        bufs, strides, in_bool, contig = [], [], 0, True
        pad = [0] * (MAX_DIMS - len(shape))
        for k, a in enumerate(ins):
            if a.dtype == np.bool_:
                in_bool |= 1 << k
            elif a.dtype != T:
                return None
            a, b = self.on_device(a)
            contig = contig and a.shape == shape and a.flags.c_contiguous
            strides += [s // a.itemsize for s in np.broadcast_to(a, shape).strides] + pad
            bufs.append(b)
        out = self.empty(shape, T)
        ob = self.binding(out)
        gen = self._region_kernel(code, node._dtype_code, in_bool, len(ins)) if self.codegen else None
        n_in = len(bufs)
        if gen is None:
            # The mock (like Metal's validation layer) checks every binding: unused ones get any
            # buffer.
            bufs += [bufs[0] if bufs else ob] * (PROGRAM_MAX_INPUTS - len(bufs))
        strides += [0] * (PROGRAM_MAX_INPUTS * MAX_DIMS - len(strides))
        consts = list(np_region.region_consts(node)) + [0.0] * (32 - len(node._aux[1]))
        args = _PROGRAM_ARGS.pack(n, len(shape), len(ins), len(code) // 8, int(contig),
                                  *(list(shape) + pad), *strides, in_bool, *consts,
                                  code.ljust(PROGRAM_CODE_BYTES, b"\0"), 0)
        self.dev.dispatch(gen or kname, bufs + [ob, args], (n, 1, 1), (min(256, n), 1, 1),
                          threads=True, writes=[n_in if gen else PROGRAM_MAX_INPUTS])
        return out

    def _region_kernel(self, code, dtype_code, in_bool, n_inputs):
        if self.regions is None:
            from metalcandle import metal
            from metalcandle.backends.metal_codegen import RegionKernels
            self.regions = RegionKernels(self.dev, str(metal.shader_dir()))
        return self.regions.get(code, SUFFIX[dtype_code], in_bool, n_inputs)

    def finish(self):
        """One sync per eval: after it, every result buffer is current."""
        # Per thread: another thread's sync must not let this thread skip waiting for its own
        # dispatches (a shared flag did, returning buffers the GPU had not written yet).
        if getattr(self.local, "used", False):
            self.local.used = False
            self.dev.sync()


def _views_same(v, a):
    return np.shares_memory(v, a)


def _family(name):
    if name in _UNARY:
        return "unary"
    if name in _BINARY:
        return "binary"
    if name == "where":
        return "ternary"
    if name == "astype":
        return "cast"
    if name in _REDUCE:
        return "reduce"
    return name


def _row_threads(n, per_thread):
    t = -(-n // per_thread)
    t = ((t + 31) // 32) * 32
    return max(32, min(1024, t))


def _row_args(rows, n, eps=0.0):
    return struct.pack("<qqff", rows, n, eps, 0.0)


def _strided_args(shape, arrays):
    nd = len(shape)
    n = int(np.prod(shape, dtype=np.int64))
    pad = [0] * (MAX_DIMS - nd)
    in_strides, in_offsets = [], []
    for a in arrays:
        v = np.broadcast_to(a, shape)
        in_strides.extend([s // a.itemsize for s in v.strides] + pad)
        in_offsets.append(0)   # the binding's byte offset already points at element 0
    while len(in_offsets) < 3:
        in_strides.extend([0] * MAX_DIMS)
        in_offsets.append(0)
    out_strides, acc = [], 1
    for d in reversed(shape):
        out_strides.insert(0, acc)
        acc *= d
    return struct.pack(f"<qii{MAX_DIMS}q{3 * MAX_DIMS}q3q{MAX_DIMS}qq", n, nd, 0,
                       *(list(shape) + pad), *in_strides, *in_offsets, *(out_strides + pad), 0)


_backend = None


def get():
    """The process's Metal backend (opens the device on first use)."""
    global _backend
    if _backend is None:
        from metalcandle import metal
        _backend = MetalBackend(metal.device())
    return _backend

# _metal.pyx -- the Cython bridge to the native device (src/native/mc_device.h).
#
# Device -> C policy (pipeline cache, buffer cache, batching, hazards) -> driver (Metal, or the
# pure-C test driver). Shared buffers are exposed to NumPy zero-copy through the buffer protocol.
# NumPy is imported only where an array is made (Buffer.numpy), never at import.
cimport cython
from cpython.buffer cimport PyBuffer_FillInfo, PyBUF_SIMPLE, PyObject_GetBuffer, PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memset

import os
import re
import threading

from metalcandle.errors import (CommandBufferError, DeviceError, DeviceOutOfMemory, NoDeviceError,
                                ShaderCompileError)

include "_metal_hooks.pxi"
include "_metal_source.pxi"

_STATUS_ERRORS = {
    MC_COMPILE_ERROR: ShaderCompileError,
    MC_OUT_OF_MEMORY: DeviceOutOfMemory,
    MC_COMMAND_BUFFER_ERROR: CommandBufferError,
    MC_DEVICE_ERROR_STICKY: CommandBufferError,
    MC_NO_DEVICE: NoDeviceError,
    MC_INVALID_ARGUMENT: ValueError,
}


class KernelNotFoundError(DeviceError, LookupError):
    """No loaded shader library has a kernel of that name."""


cdef int check(mc_status status) except -1:
    """The one place a status becomes a Python exception (message: C function + driver text)."""
    if status == MC_OK:
        return 0
    message = mc_last_error().decode("utf-8", "replace")
    if status == MC_NOT_FOUND:
        raise KernelNotFoundError(message)
    raise _STATUS_ERRORS.get(status, DeviceError)(message)


def metal_driver_available():
    """True when this build has the Metal driver (macOS, or the -Dmetal=mock build on Linux)."""
    return mc_metal_driver() != NULL


cdef _dim3(object value, const char *what, uint32_t out[3]):
    if isinstance(value, int):
        out[0], out[1], out[2] = value, 1, 1
        return
    n = len(value)
    if n < 1 or n > 3:
        raise ValueError(f"{what.decode()} must have 1 to 3 sizes, got {value!r}")
    out[0] = value[0]
    out[1] = value[1] if n > 1 else 1
    out[2] = value[2] if n > 2 else 1


cdef int _constant(mc_constant *c, object key, object value, list keep) except -1:
    memset(c, 0, sizeof(mc_constant))
    if isinstance(key, str):
        encoded = key.encode()
        keep.append(encoded)
        c.name = PyBytes_AS_STRING(encoded)
    else:
        c.index = key
    kind = None
    if isinstance(value, tuple):
        value, kind = value
    elif isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int):
        kind = "int"
    elif isinstance(value, float):
        kind = "float"
    if kind == "bool":
        c.type, c.value.b = MC_CONST_BOOL, bool(value)
    elif kind == "int":
        c.type, c.value.i32 = MC_CONST_INT32, value
    elif kind == "uint":
        c.type, c.value.u32 = MC_CONST_UINT32, value
    elif kind == "float":
        c.type, c.value.f32 = MC_CONST_FLOAT32, value
    elif kind == "long":
        c.type, c.value.i64 = MC_CONST_INT64, value
    elif kind == "ulong":
        c.type, c.value.u64 = MC_CONST_UINT64, value
    elif kind == "half":
        import struct
        c.type, c.value.u16 = MC_CONST_FLOAT16, struct.unpack("<H", struct.pack("<e", value))[0]
    else:
        raise TypeError(f"function constant {key!r}: cannot infer a type for {value!r}; "
                        "pass (value, 'bool'|'int'|'uint'|'float'|'half'|'long'|'ulong')")
    return 0


@cython.final
cdef class Pipeline:
    """A compute pipeline (kernel + function constants), owned by its device's cache.

    Holding one skips the cache lookup on every dispatch: ``dev.dispatch(pipe, ...)``.
    """

    def __cinit__(self):
        self.p = NULL

    @property
    def function(self):
        self.device._open()
        return mc_pipeline_function(self.p).decode()

    @property
    def max_threads(self):
        self.device._open()
        return mc_pipeline_max_threads(self.p)

    def __repr__(self):
        return f"<Pipeline {self.function} max_threads={self.max_threads}>"


@cython.final
@cython.freelist(32)
cdef class Buffer:
    """A shared-memory device buffer: the CPU sees the GPU's memory (zero copy).

    Read results only after ``Device.sync()``. NumPy views keep the buffer alive.
    """

    def __cinit__(self):
        self.buf = NULL
        self._exports = 0

    def __dealloc__(self):
        if self.buf != NULL:
            mc_buffer_free(self.buf)  # in-flight command buffers keep their own reference
            self.buf = NULL

    cdef int _live(self) except -1:
        if self.buf == NULL:
            raise ValueError("buffer was freed")
        return 0

    @property
    def nbytes(self):
        self._live()
        return mc_buffer_size(self.buf)

    @property
    def capacity(self):
        self._live()
        return mc_buffer_capacity(self.buf)

    @property
    def address(self):
        self._live()
        return <size_t>mc_buffer_contents(self.buf)

    def __len__(self):
        return self.nbytes

    def __getbuffer__(self, Py_buffer *view, int flags):
        self._live()
        PyBuffer_FillInfo(view, self, mc_buffer_contents(self.buf), mc_buffer_size(self.buf), 0, flags)
        self._exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self._exports -= 1

    @property
    def __array_interface__(self):
        self._live()
        return {"shape": (mc_buffer_size(self.buf),), "typestr": "|u1", "version": 3,
                "data": (<size_t>mc_buffer_contents(self.buf), False)}

    def numpy(self, dtype="uint8", shape=None, Py_ssize_t offset=0):
        """A writable NumPy view of the contents (no copy).

        >>> a = dev.buffer(16).numpy("float32", (2, 2))          # doctest: +SKIP
        """
        import numpy as np
        dt = np.dtype(dtype)
        if shape is None:
            count = (self.nbytes - offset) // dt.itemsize
            return np.frombuffer(self, dtype=dt, count=count, offset=offset)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = 1
        for s in shape:
            count *= s
        if offset < 0 or offset + count * dt.itemsize > self.nbytes:
            raise ValueError(f"view of {count} x {dt} at offset {offset} exceeds the {self.nbytes}-byte buffer")
        return np.frombuffer(self, dtype=dt, count=count, offset=offset).reshape(shape)

    def free(self):
        """Give the buffer back now (it returns to the device's cache once the GPU is done)."""
        if self._exports:
            raise BufferError(f"buffer still has {self._exports} exported view(s)")
        if self.buf != NULL:
            mc_buffer_free(self.buf)
            self.buf = NULL

    def __repr__(self):
        if self.buf == NULL:
            return "<Buffer freed>"
        return f"<Buffer {self.nbytes} bytes at {self.address:#x}>"


@cython.final
cdef class Device:
    """A native device: ``Device("metal")`` (the GPU) or ``Device("test")`` (pure-C test driver).

    >>> dev = Device("metal", shader_dir="shaders")                    # doctest: +SKIP
    >>> x = dev.buffer(4 * n); y = dev.buffer(4 * n)                   # doctest: +SKIP
    >>> dev.dispatch("unary_exp_f32", [x, y, args], grid=n, threadgroup=256,
    ...              threads=True, writes=(1,))                        # doctest: +SKIP
    >>> dev.sync(); y.numpy("float32")                                 # doctest: +SKIP

    With ``shader_dir``, a kernel named ``<family>_...`` that no loaded library has is looked up
    in ``<shader_dir>/<family>.metal``, compiled at first use.
    """

    def __cinit__(self, str driver="metal", shader_dir=None):
        cdef const mc_driver *drv
        self.dev = NULL
        self.driver = driver
        self.shader_dir = os.fspath(shader_dir) if shader_dir is not None else None
        self._loaded_families = set()
        # one thread compiles a shader family; others missing the same family wait for it (the
        # pipeline cache itself lives in C, with its own lock; this only guards library loads)
        self._family_lock = threading.Lock()
        if driver == "metal":
            drv = mc_metal_driver()
            if drv == NULL:
                raise NoDeviceError("metalcandle was built without the Metal driver (macOS, or -Dmetal=mock)")
        elif driver == "test":
            drv = mc_test_driver()
        else:
            raise ValueError(f"unknown driver {driver!r} (expected 'metal' or 'test')")
        check(mc_device_new(drv, &self.dev))

    def __dealloc__(self):
        # Buffers and pipelines hold a reference to their device, so none is left here.
        if self.dev != NULL:
            mc_device_free(self.dev)
            self.dev = NULL

    cdef int _open(self) except -1:
        if self.dev == NULL:
            raise ValueError("the device is closed")
        return 0

    def close(self):
        """Wait for the GPU and free the device now (every Buffer of it must be gone)."""
        cdef mc_stats s
        if self.dev == NULL:
            return
        mc_device_stats(self.dev, &s)
        if s.live_buffers:
            raise BufferError(f"cannot close the device: {s.live_buffers} buffer(s) still alive")
        with nogil:
            mc_device_free(self.dev)
        self.dev = NULL

    @property
    def name(self):
        cdef mc_device_info info
        self._open()
        mc_device_info_get(self.dev, &info)
        return info.name.decode("utf-8", "replace")

    @property
    def info(self):
        cdef mc_device_info info
        self._open()
        mc_device_info_get(self.dev, &info)
        return {"name": info.name.decode("utf-8", "replace"), "max_working_set": info.max_working_set,
                "max_threads_per_threadgroup": info.max_threads_per_threadgroup,
                "unified_memory": bool(info.unified_memory), "driver": self.driver}

    # ----------------------------------------------------------------------------- memory
    def buffer(self, Py_ssize_t nbytes):
        """A new shared buffer of ``nbytes`` (contents undefined: reused from the cache)."""
        self._open()
        if nbytes < 0:
            raise ValueError(f"buffer size must be >= 0, got {nbytes}")
        cdef Buffer b = Buffer.__new__(Buffer)
        check(mc_buffer_new(self.dev, <size_t>nbytes, &b.buf))
        b.device = self
        return b

    def buffer_from(self, data):
        """A new buffer holding a copy of ``data`` (any C-contiguous buffer, e.g. a NumPy array)."""
        mv = memoryview(data).cast("B")
        b = self.buffer(len(mv))
        memoryview(b)[:] = mv
        return b

    # ------------------------------------------------------------------------------- code
    def load_library(self, str source, str label="program_source"):
        """Compile MSL ``source`` into a library of this device (ShaderCompileError on failure)."""
        self._open()
        src = source.encode()
        lab = label.encode()
        cdef const char *s = src
        cdef const char *l = lab
        cdef mc_status st
        with nogil:
            st = mc_device_load_library(self.dev, s, l)
        check(st)

    def load_shader_file(self, path, include_dirs=()):
        """Compile one .metal file (local includes inlined, diagnostics keep its name and lines)."""
        self.load_library(shader_source(path, include_dirs), os.path.basename(os.fspath(path)))

    cdef Pipeline _pipeline(self, str name, object dtype, object constants):
        cdef mc_constant consts[64]
        cdef uint32_t n = 0
        cdef list keep = []
        cdef Pipeline p = Pipeline.__new__(Pipeline)
        cdef mc_status st
        self._open()
        if constants:
            if len(constants) > MC_MAX_FUNCTION_CONSTANTS:
                raise ValueError(f"{name}: {len(constants)} function constants (at most 64)")
            for key, value in constants.items():
                _constant(&consts[n], key, value, keep)
                n += 1
        bname = name.encode()
        bdtype = dtype.encode() if dtype else b""
        st = mc_device_pipeline(self.dev, bname, bdtype, consts, n, &p.p)
        if st == MC_NOT_FOUND and self.shader_dir is not None:
            family = name.split("_", 1)[0]
            path = os.path.join(self.shader_dir, family + ".metal")
            if family not in self._loaded_families and os.path.isfile(path):
                with self._family_lock:
                    if family not in self._loaded_families:     # re-check: another thread may
                        self.load_shader_file(path)            # have loaded it meanwhile (a compile
                        self._loaded_families.add(family)      # error leaves it to retry later)
                st = mc_device_pipeline(self.dev, bname, bdtype, consts, n, &p.p)
        check(st)
        p.device = self
        return p

    def pipeline(self, str name, dtype=None, constants=None):
        """The pipeline of kernel ``name`` (or ``name_dtype``) with function ``constants``.

        ``constants`` maps a [[function_constant]] index or name to a value: bool, int (int32),
        float (float32), or (value, 'uint'|'half'|'long'|...). Cached: a second identical request
        compiles nothing.
        """
        return self._pipeline(name, dtype, constants)

    # --------------------------------------------------------------------------- dispatch
    def dispatch(self, kernel, buffers, grid, threadgroup, *, dtype=None, constants=None, writes=None,
                 bint threads=False):
        """Encode one dispatch (nothing runs until a commit: every N dispatches, or sync()).

        ``buffers[i]`` binds ``[[buffer(i)]]``: a Buffer, a (Buffer, byte_offset) pair, None
        (unbound), or a bytes-like argument (setBytes, <= 4 KiB, copied now). ``writes`` lists the
        indices the kernel writes (drives hazard barriers; default: every buffer read-write).
        ``grid`` counts threadgroups, or threads when ``threads=True`` (dispatchThreads).
        """
        cdef Pipeline p
        cdef mc_binding b[31]
        cdef Py_buffer views[31]
        cdef int n_views = 0
        cdef uint32_t n = 0, i
        cdef uint32_t g[3]
        cdef uint32_t t[3]
        cdef Buffer buf
        cdef mc_status st
        if self.dev == NULL:
            raise ValueError("the device is closed")
        if type(kernel) is Pipeline:
            p = <Pipeline>kernel
            if p.device is not self or p.p == NULL:
                raise ValueError(f"{p.function}: pipeline belongs to another device")
        else:
            p = self._pipeline(kernel, dtype, constants)
        nb = len(buffers)
        if nb > MC_MAX_BINDINGS:
            raise ValueError(f"{p.function}: {nb} buffers (Metal allows 31)")
        _dim3(grid, b"grid", g)
        _dim3(threadgroup, b"threadgroup", t)
        try:
            for i in range(nb):
                item = buffers[i]
                if item is None:
                    continue
                memset(&b[n], 0, sizeof(mc_binding))
                b[n].index = i
                if type(item) is tuple:
                    item, offset = item
                    b[n].offset = offset
                if type(item) is Buffer:
                    buf = <Buffer>item
                    if buf.buf == NULL or buf.device is not self:
                        raise ValueError(f"{p.function}: buffer {i} is freed or belongs to another device")
                    b[n].buffer = buf.buf
                    b[n].access = (MC_ACCESS_READ_WRITE if writes is None or i in writes else MC_ACCESS_READ)
                elif type(item) is bytes:
                    b[n].bytes = PyBytes_AS_STRING(item)
                    b[n].length = <uint32_t>PyBytes_GET_SIZE(item)
                else:
                    PyObject_GetBuffer(item, &views[n_views], PyBUF_SIMPLE)
                    n_views += 1
                    b[n].bytes = views[n_views - 1].buf
                    b[n].length = <uint32_t>views[n_views - 1].len
                n += 1
            st = mc_device_dispatch(self.dev, p.p, b, n, g, t, MC_GRID_THREADS if threads else MC_GRID_THREADGROUPS)
        finally:
            for i in range(n_views):
                PyBuffer_Release(&views[i])
        check(st)

    def commit(self):
        """Commit the open command buffer without waiting."""
        self._open()
        check(mc_device_commit(self.dev))

    def sync(self):
        """Commit and wait for all work; then buffer contents are current.

        Raises CommandBufferError if a command buffer failed; the device then stays in an error
        state (every dispatch/sync raises) until ``reset()``.
        """
        cdef mc_status st
        self._open()
        with nogil:
            st = mc_device_sync(self.dev)
        check(st)

    def reset(self):
        """Wait for in-flight work, drop uncommitted work and leave the error state."""
        self._open()
        with nogil:
            mc_device_reset(self.dev)

    @property
    def is_sticky(self):
        self._open()
        return bool(mc_device_is_sticky(self.dev))

    # ----------------------------------------------------------------------- cache, stats
    def stats(self):
        """Counters: dispatches, command_buffers, barriers, pipeline_compiles, pipeline_hits,
        active/peak/cached bytes, cache_limit, buffer allocations/reuses, in_flight, ..."""
        self._open()
        cdef mc_stats s
        mc_device_stats(self.dev, &s)
        return {"dispatches": s.dispatches, "command_buffers": s.command_buffers, "barriers": s.barriers,
                "pipeline_compiles": s.pipeline_compiles, "pipeline_hits": s.pipeline_hits,
                "active_bytes": s.active_bytes, "peak_bytes": s.peak_bytes, "cached_bytes": s.cached_bytes,
                "cache_limit": s.cache_limit, "buffer_allocations": s.buffer_allocations,
                "buffer_reuses": s.buffer_reuses, "oom_retries": s.oom_retries, "in_flight": s.in_flight,
                "live_buffers": s.live_buffers, "commit_every": s.commit_every,
                "max_in_flight": s.max_in_flight}

    def clear_cache(self):
        """Free every cached (unused) buffer."""
        self._open()
        mc_device_clear_cache(self.dev)

    def set_cache_limit(self, uint64_t nbytes):
        """Bound the bytes of free buffers kept for reuse (evicts at once); returns the old limit."""
        self._open()
        return mc_device_set_cache_limit(self.dev, nbytes)

    def set_commit_every(self, uint32_t n):
        """Commit the open command buffer every ``n`` dispatches (default 48)."""
        self._open()
        check(mc_device_set_commit_every(self.dev, n))

    def set_max_in_flight(self, uint32_t n):
        """At most ``n`` committed command buffers outstanding (default 3)."""
        self._open()
        check(mc_device_set_max_in_flight(self.dev, n))

    def __repr__(self):
        if self.dev == NULL:
            return f"<Device closed driver={self.driver}>"
        return f"<Device {self.name!r} driver={self.driver}>"

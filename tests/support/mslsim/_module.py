"""Loaded kernel libraries: the Python side of the launcher ABI (include/mslsim_abi.h)."""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._errors import DispatchError

ABI_VERSION = 1
GRID_THREADGROUPS, GRID_THREADS = 0, 1
FLAG_LENIENT_BARRIERS = 1
FLAG_REVERSE_ORDER = 2
MAX_BUFFERS = 31

# MSL scalar types of function constants -> numpy dtype of the value passed to the launcher.
CONSTANT_DTYPES = {
    "bool": "?", "char": "i1", "uchar": "u1", "short": "<i2", "ushort": "<u2", "int": "<i4",
    "uint": "<u4", "long": "<i8", "ulong": "<u8", "half": "<f2", "float": "<f4",
    "int8_t": "i1", "uint8_t": "u1", "int16_t": "<i2", "uint16_t": "<u2", "int32_t": "<i4",
    "uint32_t": "<u4", "int64_t": "<i8", "uint64_t": "<u8",
}


class Dispatch(ctypes.Structure):
    """Mirror of struct mslsim_dispatch."""

    _fields_ = [
        ("abi_version", ctypes.c_uint32),
        ("grid_mode", ctypes.c_uint32),
        ("grid", ctypes.c_uint32 * 3),
        ("threadgroup", ctypes.c_uint32 * 3),
        ("n_buffers", ctypes.c_uint32),
        ("reserved0", ctypes.c_uint32),
        ("buffers", ctypes.POINTER(ctypes.c_void_p)),
        ("buffer_lengths", ctypes.POINTER(ctypes.c_uint64)),
        ("n_threadgroup_memory", ctypes.c_uint32),
        ("reserved1", ctypes.c_uint32),
        ("threadgroup_memory_lengths", ctypes.POINTER(ctypes.c_uint64)),
        ("n_function_constants", ctypes.c_uint32),
        ("reserved2", ctypes.c_uint32),
        ("function_constants", ctypes.POINTER(ctypes.c_void_p)),
        ("n_workers", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("stack_kib", ctypes.c_uint32),
        ("reserved3", ctypes.c_uint32),
        ("n_context_switches", ctypes.c_uint64),
        ("error", ctypes.c_char * 512),
    ]


@dataclass(frozen=True)
class LaunchStats:
    context_switches: int


def _dim3(value: Any, what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or any(int(d) < 1 or int(d) >= 1 << 32 for d in dims):
        raise ValueError(f"{what} must be 1 to 3 sizes in 1..2**32-1, got {value!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))  # type: ignore[return-value]


class Kernel:
    """One kernel of a Module with its function-constant values: a compute pipeline.

    Call it like ``dispatchThreadgroups`` (``grid=`` counts threadgroups) or like
    ``dispatchThreads`` (``threads=`` counts threads; edge threadgroups shrink).
    """

    def __init__(self, module: "Module", name: str, info: dict, constants: Mapping | None):
        self.module = module
        self.name = name
        self.params = info["params"]
        self._fn = getattr(module._lib, f"mslsim_kernel_{name}")
        self._fn.argtypes = [ctypes.POINTER(Dispatch)]
        self._fn.restype = ctypes.c_int
        self._constants = self._pack_constants(constants or {})

    def __repr__(self) -> str:
        return f"<mslsim.Kernel {self.name} of {self.module.path.name}>"

    def _pack_constants(self, constants: Mapping) -> tuple:
        declared = {c["name"]: c for c in self.module.function_constants}
        by_index = {c["index"]: c for c in self.module.function_constants}
        values: dict[int, np.ndarray] = {}
        for key, value in constants.items():
            c = by_index.get(key) if isinstance(key, int) else declared.get(key)
            if c is None:
                raise ValueError(f"{self.name}: no function constant {key!r} in {self.module.path.name} "
                                 f"(declared: {sorted(declared) or 'none'})")
            dtype = CONSTANT_DTYPES.get(c["type"])
            if dtype is None:
                raise TypeError(f"{self.name}: function constant {c['name']!r} has unsupported type {c['type']!r}")
            values[c["index"]] = np.array([value], dtype=dtype)
        n = max(values, default=-1) + 1
        ptrs = (ctypes.c_void_p * max(1, n))(*[values[i].ctypes.data if i in values else None for i in range(n)])
        return n, ptrs, values

    def _buffer(self, i: int, b: Any, keep: list) -> tuple[int | None, int]:
        if b is None:
            return None, 0
        if isinstance(b, (bytes, bytearray, memoryview)):
            b = np.frombuffer(bytes(b), dtype=np.uint8).copy()  # setBytes: copied at encode time
        elif isinstance(b, np.generic):
            b = np.array([b])
        elif isinstance(b, (ctypes.Structure, ctypes.Array)):
            keep.append(b)
            return ctypes.addressof(b), ctypes.sizeof(b)
        if not isinstance(b, np.ndarray):
            raise TypeError(f"{self.name}: buffer {i} must be a numpy array, numpy scalar, bytes or ctypes "
                            f"structure, not {type(b).__name__} (wrap Python numbers, e.g. np.uint32(n))")
        if not b.flags.c_contiguous:
            raise ValueError(f"{self.name}: buffer {i} must be C-contiguous (use np.ascontiguousarray)")
        for p in self.params:
            if p["binding"] == "buffer" and p["index"] == i and p["access"] == "read_write" and not b.flags.writeable:
                raise ValueError(f"{self.name}: buffer {i} (parameter '{p['name']}') is written by the kernel "
                                 "but the array is read-only")
        keep.append(b)
        return b.ctypes.data, b.nbytes

    def __call__(self, *buffers: Any, grid: Any = None, threads: Any = None, threadgroup: Any,
                 threadgroup_memory: Sequence[int] = (), workers: int = 0, strict: bool = True,
                 reverse: bool = False, stack_kib: int = 0) -> LaunchStats:
        """Run the kernel on ``buffers`` (index i = ``[[buffer(i)]]``; None leaves a slot empty).

        Arrays are read and written in place. ``threadgroup_memory`` lists the byte lengths of the
        ``[[threadgroup(i)]]`` arguments. ``workers`` OS threads run threadgroups (0: one per CPU).
        ``strict=False`` accepts an early return before a barrier. ``reverse=True`` resumes the
        threads of a group in descending order: a race-free kernel gives identical results.
        Raises DispatchError with the launcher's message (e.g. a barrier reached by only some
        threads) and ValueError/TypeError for bad arguments.

        >>> k(x, y, np.uint32(n), threads=n, threadgroup=256)       # doctest: +SKIP
        """
        if (grid is None) == (threads is None):
            raise ValueError(f"{self.name}: give exactly one of grid= (threadgroups) or threads=")
        if len(buffers) > MAX_BUFFERS:
            raise ValueError(f"{self.name}: {len(buffers)} buffers, Metal allows {MAX_BUFFERS}")
        keep: list = []
        ptrs, lengths = zip(*[self._buffer(i, b, keep) for i, b in enumerate(buffers)]) if buffers else ((), ())
        n = len(buffers)
        d = Dispatch()
        d.abi_version = ABI_VERSION
        d.grid_mode = GRID_THREADGROUPS if grid is not None else GRID_THREADS
        d.grid[:] = _dim3(grid if grid is not None else threads, "grid" if grid is not None else "threads")
        d.threadgroup[:] = _dim3(threadgroup, "threadgroup")
        buf_array = (ctypes.c_void_p * max(1, n))(*ptrs)
        len_array = (ctypes.c_uint64 * max(1, n))(*lengths)
        d.n_buffers, d.buffers, d.buffer_lengths = n, buf_array, len_array
        tg = (ctypes.c_uint64 * max(1, len(threadgroup_memory)))(*threadgroup_memory)
        d.n_threadgroup_memory, d.threadgroup_memory_lengths = len(threadgroup_memory), tg
        n_const, const_ptrs, _values = self._constants
        d.n_function_constants, d.function_constants = n_const, const_ptrs
        d.n_workers, d.stack_kib = workers, stack_kib
        d.flags = (0 if strict else FLAG_LENIENT_BARRIERS) | (FLAG_REVERSE_ORDER if reverse else 0)
        status = self._fn(ctypes.byref(d))
        if status:
            raise DispatchError(status, d.error.decode(errors="replace"))
        return LaunchStats(int(d.n_context_switches))


class Module:
    """A compiled .metal file (the counterpart of an MTLLibrary)."""

    def __init__(self, path: Path, so_path: Path, cpp_path: Path, build_log: str = ""):
        self.path = path
        self.so_path = so_path
        self.cpp_path = cpp_path
        self.build_log = build_log
        self._lib = ctypes.CDLL(str(so_path))
        self._lib.mslsim_module_info.restype = ctypes.c_char_p
        self.info = json.loads(self._lib.mslsim_module_info().decode())
        self._kernels = {k["name"]: k for k in self.info["kernels"]}
        self.function_constants: list[dict] = self.info["function_constants"]

    def __repr__(self) -> str:
        return f"<mslsim.Module {self.path} ({len(self._kernels)} kernels)>"

    @property
    def kernel_names(self) -> tuple[str, ...]:
        return tuple(self._kernels)

    def kernel(self, name: str, constants: Mapping[str | int, Any] | None = None) -> Kernel:
        """The kernel ``name`` with function-constant values (by name or index)."""
        if name not in self._kernels:
            close = [k for k in self._kernels if name.split("_")[0] in k][:8]
            raise KeyError(f"no kernel {name!r} in {self.path.name}; similar: {close or sorted(self._kernels)[:8]}")
        return Kernel(self, name, self._kernels[name], constants)

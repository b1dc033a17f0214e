"""mslsim -- run metalcandle's Metal Shading Language kernels on the CPU.

A .metal file is preprocessed, translated to C++ (see _frontend.py), compiled with g++ into a
shared object cached on disk by content hash, and loaded. Each kernel runs with every
threadgroup's threads as fibers, so barriers and SIMD-group collectives behave as on the GPU,
threadgroup memory starts as NaN, and divergent barriers are reported.

>>> import numpy as np
>>> from tests.support import mslsim
>>> mod = mslsim.compile_file("shaders/unary.metal")                     # doctest: +SKIP
>>> k = mod.kernel("unary_exp_f32")                                      # doctest: +SKIP
>>> k(x, y, np.array([x.size], np.int64), threads=x.size, threadgroup=256)  # doctest: +SKIP

See README.md for the supported MSL subset and the C launcher ABI.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Mapping

from ._build import BuildResult, build, default_cache_dir
from ._errors import CompileError, DispatchError, MslsimError
from ._module import Kernel, LaunchStats, Module

__all__ = [
    "CompileError", "DispatchError", "Kernel", "LaunchStats", "Module", "MslsimError",
    "compile_file", "compile_files", "build_shared_object", "default_cache_dir",
]

_loaded: dict[str, Module] = {}
_lock = threading.Lock()


def build_shared_object(path: str | os.PathLike, *, defines: Mapping[str, object] | None = None,
                        include_dirs: Iterable[str | os.PathLike] = (), cxx: str | None = None,
                        opt: str = "-O2", extra_flags: Iterable[str] = (),
                        cache_dir: str | os.PathLike | None = None) -> BuildResult:
    """Build (or find in the cache) the shared object of one .metal file; does not load it.

    ``defines`` become -D macros of the preprocessing pass (compile-time specialisation);
    function constants are not set here but per kernel (Module.kernel(constants=...)).
    ``cxx`` defaults to $CXX, else g++. Raises CompileError with file:line diagnostics.
    """
    return build(path, defines=dict(defines or {}), include_dirs=tuple(include_dirs), cxx=cxx, opt=opt,
                 extra_flags=tuple(extra_flags), cache_dir=cache_dir)


def compile_file(path: str | os.PathLike, *, defines: Mapping[str, object] | None = None,
                 include_dirs: Iterable[str | os.PathLike] = (), cxx: str | None = None,
                 opt: str = "-O2", extra_flags: Iterable[str] = (),
                 cache_dir: str | os.PathLike | None = None) -> Module:
    """Compile ``path`` (cached on disk and in this process) and load it as a Module.

    >>> mod = compile_file("shaders/softmax.metal")              # doctest: +SKIP
    >>> mod.kernel_names[:2]                                     # doctest: +SKIP
    ('softmax_block_f32', 'softmax_block_f16')
    """
    result = build_shared_object(path, defines=defines, include_dirs=include_dirs, cxx=cxx, opt=opt,
                                 extra_flags=extra_flags, cache_dir=cache_dir)
    key = str(result.so_path)
    with _lock:
        module = _loaded.get(key)
        if module is None:
            module = Module(Path(path).resolve(), result.so_path, result.cpp_path, result.log)
            _loaded[key] = module
    return module


def compile_files(paths: Iterable[str | os.PathLike], *, jobs: int | None = None, **options) -> list[Module]:
    """compile_file over several files, building up to ``jobs`` (default: CPU count) at once."""
    paths = list(paths)
    jobs = jobs or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(paths)))) as pool:
        return list(pool.map(lambda p: compile_file(p, **options), paths))

"""The Metal device: availability, memory statistics and the buffer cache.

Importing this module opens nothing; the device opens on first use (``device()``,
``is_available()``), on the calling thread. Environment overrides, read once when the device
opens: ``METALCANDLE_METAL_CACHE_LIMIT`` (bytes of free buffers kept for reuse) and
``METALCANDLE_METAL_COMMIT_EVERY`` (dispatches per command buffer).

>>> import metalcandle as mc
>>> mc.metal.is_available() in (True, False)
True
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["is_available", "device", "stats", "clear_cache", "set_cache_limit", "reset", "shader_dir",
           "set_region_codegen"]

_lock = threading.Lock()
_device: Any = None
_failed: BaseException | None = None

_ZERO_STATS = {k: 0 for k in (
    "dispatches", "command_buffers", "barriers", "pipeline_compiles", "pipeline_hits", "active_bytes",
    "peak_bytes", "cached_bytes", "cache_limit", "buffer_allocations", "buffer_reuses", "oom_retries",
    "in_flight", "live_buffers", "commit_every", "max_in_flight")}


def shader_dir() -> Path:
    """Directory of the shipped ``.metal`` sources (package data).

    >>> import metalcandle as mc
    >>> mc.metal.shader_dir().name
    'shaders'
    """
    here = Path(__file__).resolve().parent
    shipped = here / "shaders"
    if not shipped.is_dir():  # an editable install runs from src/metalcandle: use the repo's copy
        repo = here.parent.parent / "shaders"
        if repo.is_dir():
            return repo
    return shipped


def _open() -> Any:
    global _device, _failed
    with _lock:
        if _device is not None:
            return _device
        if _failed is not None:
            raise _failed
        try:
            from metalcandle import _metal
            dev = _metal.Device("metal", shader_dir=shader_dir())
        except ImportError as e:
            from metalcandle.errors import NoDeviceError
            _failed = NoDeviceError(f"metalcandle was built without the native device: {e}")
            raise _failed from e
        except Exception as e:
            _failed = e
            raise
        limit = os.environ.get("METALCANDLE_METAL_CACHE_LIMIT")
        if limit:
            dev.set_cache_limit(int(limit))
        every = os.environ.get("METALCANDLE_METAL_COMMIT_EVERY")
        if every:
            dev.set_commit_every(int(every))
        _device = dev
        return dev


def device() -> Any:
    """The shared Metal device (``metalcandle._metal.Device``), opened on first call.

    Raises NoDeviceError when there is no Metal GPU or the build has no Metal driver.

    >>> import metalcandle as mc
    >>> if mc.metal.is_available():
    ...     buf = mc.metal.device().buffer(64)
    """
    return _open()


def is_available() -> bool:
    """True when a Metal device can be used (opens it on first call).

    >>> import metalcandle as mc
    >>> isinstance(mc.metal.is_available(), bool)
    True
    """
    try:
        _open()
        return True
    except Exception:
        return False


def stats() -> dict:
    """Device counters: dispatches, command_buffers, pipeline_compiles, pipeline_hits,
    active/peak/cached bytes, cache_limit, ... All zero while the device is not open.

    >>> import metalcandle as mc
    >>> sorted(mc.metal.stats())[:3]
    ['active_bytes', 'barriers', 'buffer_allocations']
    """
    return _device.stats() if _device is not None else dict(_ZERO_STATS)


def clear_cache() -> None:
    """Free every cached (unused) device buffer. No-op while the device is not open.

    >>> import metalcandle as mc
    >>> mc.metal.clear_cache()
    """
    if _device is not None:
        _device.clear_cache()


def set_cache_limit(nbytes: int) -> int:
    """Bound the bytes of free buffers kept for reuse (opens the device); returns the old limit.

    >>> import metalcandle as mc
    >>> if mc.metal.is_available():
    ...     old = mc.metal.set_cache_limit(64 << 20); _ = mc.metal.set_cache_limit(old)
    """
    if nbytes < 0:
        raise ValueError(f"set_cache_limit: nbytes must be >= 0, got {nbytes}")
    return _open().set_cache_limit(int(nbytes))


def reset() -> None:
    """Leave the error state after a failed command buffer (waits for in-flight work and drops
    uncommitted work), and free the buffer cache. No-op while the device is not open.

    >>> import metalcandle as mc
    >>> mc.metal.reset()
    """
    if _device is not None:
        _device.reset()
        _device.clear_cache()


def set_region_codegen(flag: bool) -> bool:
    """Run elementwise regions with kernels generated per region structure (compiled once each,
    on first use) instead of the shipped interpreter kernel; returns the previous setting.
    Off by default (docs/fusion.md explains the trade-off; only a Mac can measure it).

    >>> import metalcandle as mc
    >>> if mc.metal.is_available():
    ...     old = mc.metal.set_region_codegen(True); _ = mc.metal.set_region_codegen(old)
    """
    from metalcandle.backends import metal_backend
    _open()
    be = metal_backend.get()
    old, be.codegen = be.codegen, bool(flag)
    return old

"""Devices. ``cpu`` (NumPy) is always there; ``metal`` needs an Apple GPU and a build with Metal.

Nothing here opens a device at import. The default is chosen when first asked for: the
``METALCANDLE_DEVICE`` environment variable if set (``cpu`` or ``metal``), else Metal when
available, else the CPU.

>>> import metalcandle as mc
>>> mc.set_default_device("cpu"); mc.default_device()
'cpu'
"""
import os as _os

from metalcandle import _graph as _g
from metalcandle.errors import NoDeviceError, ArgumentError

__all__ = ["default_device", "set_default_device", "devices"]

_CODES = {"cpu": 0, "metal": 1}
_state = {"default": None}


def _metal_available():
    try:
        from metalcandle import metal
    except ImportError:
        return False
    return metal.is_available()


def devices():
    """Names of the devices usable in this process."""
    return ["cpu"] + (["metal"] if _metal_available() else [])


def default_device():
    """The name of the device new tensors are computed on."""
    if _state["default"] is None:
        env = _os.environ.get("METALCANDLE_DEVICE", "").strip().lower()
        set_default_device(env if env else ("metal" if _metal_available() else "cpu"))
    return _state["default"]


def set_default_device(name):
    """Compute new tensors on ``name`` ("cpu" or "metal")."""
    if not isinstance(name, str) or name.lower() not in _CODES:
        raise ArgumentError(f"set_default_device: unknown device {name!r}; choose from {sorted(_CODES)}")
    name = name.lower()
    if name == "metal" and not _metal_available():
        raise NoDeviceError("set_default_device: no Metal device (needs an Apple GPU and a build "
                            "with Metal); available: " + ", ".join(devices()))
    _state["default"] = name
    _g._set_default_device_code(_CODES[name])

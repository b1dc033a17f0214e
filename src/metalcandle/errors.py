"""Exception hierarchy of metalcandle.

Every user mistake is reported when the graph is *built*, before any backend runs, and the message
names the operation, the shapes and the dtypes involved. The classes double as the built-in types a
NumPy user already catches: shape problems are ``ValueError``s, dtype problems ``TypeError``s.

>>> import metalcandle as mc
>>> from metalcandle.errors import BroadcastError
>>> try:
...     mc.ones((2, 3)) + mc.ones((4,))
... except BroadcastError as e:
...     print(e)
add: cannot broadcast shapes (2, 3) and (4,) (float32, float32)
"""

__all__ = [
    "MetalcandleError", "ShapeError", "BroadcastError", "AxisError", "DTypeError",
    "DeviceError", "ShaderCompileError", "DeviceOutOfMemory", "CommandBufferError",
    "NoDeviceError", "ArgumentError", "ArgumentTypeError", "IndexingError",
]


class MetalcandleError(Exception):
    """Base class of every error metalcandle raises on purpose."""


class ShapeError(MetalcandleError, ValueError):
    """A shape does not fit the operation (bad reshape, matmul dims, too many dims, overflow...)."""


class BroadcastError(ShapeError):
    """Two or more shapes cannot be broadcast together."""


class AxisError(ShapeError, IndexError):
    """An axis is out of range for the tensor's number of dimensions (also an ``IndexError``)."""


class DTypeError(MetalcandleError, TypeError):
    """A dtype is unsupported, or not allowed for this operation or device."""


class ArgumentError(MetalcandleError, ValueError):
    """An argument has a bad value (step 0, unknown mode, repeated axis, ...)."""


class ArgumentTypeError(MetalcandleError, TypeError):
    """An argument has the wrong type (a float where an int axis is needed, ...)."""


class IndexingError(MetalcandleError, IndexError):
    """An index does not fit the tensor (out of bounds, too many indices, unsupported kind)."""


class DeviceError(MetalcandleError, RuntimeError):
    """A device (Metal) failed; the message carries the native function and the driver's text."""


class NoDeviceError(DeviceError):
    """The requested device does not exist on this machine (no Metal GPU, or not built with Metal)."""


class ShaderCompileError(DeviceError):
    """A Metal shader failed to compile; the message carries the MSL file and line."""


class DeviceOutOfMemory(DeviceError, MemoryError):
    """The device could not allocate a buffer, even after its buffer cache was flushed."""


class CommandBufferError(DeviceError):
    """A command buffer failed. The device stays in an error state until ``reset`` is called."""

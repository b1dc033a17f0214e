"""Exceptions raised by the simulator."""

from __future__ import annotations


class MslsimError(Exception):
    """Base class of every simulator error."""


class CompileError(MslsimError):
    """A .metal file failed to preprocess, translate or compile.

    The message starts with the first diagnostics as ``file.metal:LINE:COL: error: ...``;
    ``log`` holds the compiler's full output.
    """

    def __init__(self, message: str, *, path: str = "", log: str = ""):
        super().__init__(message)
        self.path = path
        self.log = log or message


class DispatchError(MslsimError):
    """A launch failed: invalid arguments or a kernel fault (divergent barrier, ...).

    ``status`` is the launcher's MSLSIM_STATUS_* code (see include/mslsim_abi.h).
    """

    STATUS_NAMES = {1: "invalid dispatch", 2: "kernel fault", 3: "out of resources"}

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

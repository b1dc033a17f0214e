"""NumPy dtypes for metalcandle dtype codes (bfloat16 from ml_dtypes when installed)."""
import numpy as np

_NAMES = ["bool", "uint8", "int8", "int16", "uint32", "int32", "int64",
          "float16", "bfloat16", "float32", "float64"]


def _bf16():
    try:
        import ml_dtypes
    except ImportError:  # the graph layer refuses bfloat16 before this can be reached
        return None
    return np.dtype(ml_dtypes.bfloat16)


NP = [np.dtype(n) if n != "bfloat16" else _bf16() for n in _NAMES]
BF16 = 8
F32 = np.dtype(np.float32)
# Storage dtype -> dtype arithmetic runs in (bfloat16 is stored, float32 computes).
COMPUTE = [F32 if i == BF16 else d for i, d in enumerate(NP)]


def code_of(dt):
    """metalcandle dtype code of a NumPy dtype, or -1."""
    dt = np.dtype(dt)
    for i, d in enumerate(NP):
        if d is not None and d == dt:
            return i
    return -1


def up(a):
    """Half-precision arrays compute in float32 (float32 accumulation); others unchanged."""
    k = a.dtype.kind
    if a.dtype.itemsize == 2 and (k == "f" or k == "V"):
        return a.astype(np.float32)
    if NP[BF16] is not None and a.dtype == NP[BF16]:
        return a.astype(np.float32)
    return a

"""metalcandle: a lazy tensor library for Apple Silicon with a NumPy fallback that runs everywhere.

>>> import metalcandle as mc
>>> x = mc.array([[1.0, 2.0], [3.0, 4.0]])
>>> y = mc.softmax(x @ x.T, axis=-1)      # lazy: nothing is computed yet
>>> mc.eval(y)
>>> y.shape, [f"{v:.3f}" for v in y.sum(axis=-1).tolist()]
((2, 2), ['1.000', '1.000'])

Importing this package loads the Cython graph core and small Python modules only: no NumPy and no
device are touched until the first evaluation.
"""
__version__ = "0.1.0"

from metalcandle import _graph, _executor
from metalcandle._graph import (
    Tensor, DType, result_type,
    bool_, uint8, int8, int16, uint32, int32, int64, float16, bfloat16, float32, float64,
    add, subtract, multiply, divide, floor_divide, remainder, power, maximum, minimum,
    equal, not_equal, less, less_equal, greater, greater_equal, logical_and, logical_or,
    logical_not, where, clip, astype,
    negative, abs, sign, exp, log, log1p, expm1, sqrt, rsqrt, square, reciprocal, sin, cos, tanh,
    sigmoid, relu, gelu, gelu_approx, silu, erf, floor, ceil, round, isnan, isinf, isfinite,
    sum, mean, prod, max, min, argmax, argmin, var, std, logsumexp, all, any,
    matmul, reshape, transpose, swapaxes, moveaxis, broadcast_to, expand_dims, squeeze, flatten,
    concatenate, stack, split, take, take_along_axis,
)
from metalcandle._executor import eval
from metalcandle.creation import (array, asarray, zeros, ones, full, zeros_like, ones_like,
                                  arange, linspace, eye)
from metalcandle.devices import default_device, set_default_device, devices
from metalcandle import errors, random, fast
from metalcandle.fast import softmax, log_softmax
from metalcandle._fusion import set_fusion
from metalcandle._executor import stats as _executor_stats

bool = bool_  # noqa: A001  (mc.bool, as in MLX; the builtin is untouched outside this namespace)
_graph._eval_hook = _executor.eval


def __getattr__(name):
    # mc.metal (the device API) is imported on first use, keeping `import metalcandle` cheap.
    if name == "metal":
        import importlib
        try:
            return importlib.import_module("metalcandle.metal")
        except ImportError as e:     # a -Dmetal=disabled build
            raise AttributeError(f"metalcandle was built without the metal module: {e}") from None
    raise AttributeError(f"module 'metalcandle' has no attribute {name!r}")

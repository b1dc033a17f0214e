"""Shared helpers of the core test suite: dtype tables, fresh random inputs, NumPy comparison.

Every op is checked against a float64 (or exact integer) NumPy reference with a per-op, per-dtype
tolerance, in the spirit of MLX ``assertCmpNumpy`` and ggml ``test-backend-ops``.
"""
import math
import operator

import numpy as np
import pytest

import metalcandle as mc

ALL_DTYPES = ("bool", "uint8", "int8", "int16", "uint32", "int32", "int64",
              "float16", "bfloat16", "float32", "float64")
FLOATS = ("float16", "bfloat16", "float32", "float64")
INTS = ("uint8", "int8", "int16", "uint32", "int32", "int64")
UNSIGNED = ("uint8", "uint32")
SIGNED = ("int8", "int16", "int32", "int64")
HALF = ("float16", "bfloat16")

# Ops whose float results go through exp/log/trig/erf and so get the looser tolerance.
TRANSCENDENTAL = {"exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh",
                  "sigmoid", "gelu", "gelu_approx", "silu", "erf", "power", "divide",
                  "reciprocal", "mean", "var", "std", "logsumexp", "sum", "prod", "matmul"}

# (rtol, atol) per result dtype: simple ops, then transcendental ones.
_TOL_SIMPLE = {"float16": (1e-3, 1e-4), "bfloat16": (1e-2, 1e-3), "float32": (1e-6, 1e-7),
               "float64": (1e-12, 1e-14)}
_TOL_TRANS = {"float16": (1e-3, 1e-4), "bfloat16": (1e-2, 1e-3), "float32": (1e-5, 1e-6),
              "float64": (1e-10, 1e-12)}
# Per-op overrides where a documented approximation sets the error (erf-based GELU near -3
# cancels 1 + erf(x/sqrt2); the A&S erf has 1.5e-7 absolute error).
_TOL_OP = {("gelu", "float32"): (1e-5, 1e-6), ("erf", "float32"): (1e-5, 2e-7),
           ("matmul", "float32"): (1e-5, 1e-5), ("sum", "float32"): (1e-5, 1e-5),
           ("mean", "float32"): (1e-5, 1e-6), ("var", "float32"): (1e-5, 1e-6),
           ("std", "float32"): (1e-5, 1e-6), ("logsumexp", "float32"): (1e-5, 1e-6)}


def np_dtype(name):
    """The NumPy dtype of a metalcandle dtype name (bfloat16 needs ml_dtypes: skip without it)."""
    if name == "bfloat16":
        ml = pytest.importorskip("ml_dtypes", reason="bfloat16 needs the ml_dtypes package")
        return np.dtype(ml.bfloat16)
    return np.dtype(name)


def mc_dtype(name):
    """The metalcandle DType object for a dtype name."""
    return mc.bool_ if name == "bool" else getattr(mc, name)


def kind(name):
    if name == "bool":
        return "b"
    if name in FLOATS:
        return "f"
    return "u" if name in UNSIGNED else "i"


def tol(op, dtype):
    """(rtol, atol) for ``op`` producing ``dtype``; ints and bools compare exactly (0, 0)."""
    if kind(dtype) != "f":
        return 0.0, 0.0
    if (op, dtype) in _TOL_OP:
        return _TOL_OP[(op, dtype)]
    return (_TOL_TRANS if op in TRANSCENDENTAL else _TOL_SIMPLE)[dtype]


def rand(rng, shape, dtype, low=None, high=None, nonzero=True):
    """Fresh random values of ``dtype`` (a name) as a NumPy array, never all zeros.

    Floats default to magnitudes in [0.1, 4] with both signs; signed ints to [-20, 20];
    unsigned ints to [1, 40]; bools contain both True and False when there are >= 2 elements.
    ``nonzero`` keeps zeros out (for divisors); ``low``/``high`` bound the values (inclusive
    for ints).
    """
    shape = tuple(shape) if not isinstance(shape, int) else (shape,)
    k = kind(dtype)
    n = math.prod(shape)
    if k == "b":
        v = rng.random(n) < 0.5
        if n >= 2:
            v[0], v[1] = True, False
        elif n == 1:
            v[0] = True
        return v.reshape(shape)
    if k == "f":
        lo = -4.0 if low is None else low
        hi = 4.0 if high is None else high
        v = rng.uniform(lo, hi, n)
        if nonzero:
            eps = 0.025 * (hi - lo)
            for _ in range(100):
                small = np.abs(v) < eps
                if not small.any():
                    break
                v[small] = rng.uniform(lo, hi, int(small.sum()))
    else:
        info = np.iinfo(np.dtype(dtype))
        lo = (-20 if k == "i" else 1) if low is None else low
        hi = (20 if k == "i" else 40) if high is None else high
        lo, hi = max(lo, int(info.min)), min(hi, int(info.max))
        v = rng.integers(lo, hi + 1, n)
        if nonzero and (lo != 0 or hi != 0):
            v[v == 0] = hi if hi != 0 else lo
    out = v.astype(np.float64 if k == "f" else np.int64)
    if n and not np.any(out) and not (low == 0 and high == 0):
        out[0] = 1
    return out.astype(np_dtype(dtype)).reshape(shape)


def as_f64(a):
    """A float64 copy of any NumPy array (bfloat16 included)."""
    a = np.asarray(a)
    return a.astype(np.float32).astype(np.float64) if a.dtype.kind == "V" or \
        a.dtype.name == "bfloat16" else a.astype(np.float64)


def value(t):
    """The evaluated NumPy value of a tensor (a fresh float/int view)."""
    return np.asarray(t.numpy())


def assert_close(t, ref, op, dtype, rtol=None, atol=None):
    """``t`` (a Tensor) has dtype ``dtype`` (a name), the shape of ``ref`` and its values:
    exactly for bool/int results, within ``tol(op, dtype)`` for floats (NaN == NaN, inf == inf).
    """
    assert isinstance(t, mc.Tensor), f"{op}: expected a Tensor, got {type(t).__name__}"
    assert t.dtype == mc_dtype(dtype), f"{op}: dtype {t.dtype.name}, expected {dtype}"
    ref = np.asarray(ref)
    assert t.shape == ref.shape, f"{op}: shape {t.shape}, expected {ref.shape}"
    got = value(t)
    assert got.dtype == np_dtype(dtype), f"{op}: buffer dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{op}: buffer shape {got.shape}, expected {ref.shape}"
    if kind(dtype) != "f":
        if ref.dtype.kind == "f" or ref.dtype.name == "bfloat16":
            ref = as_f64(ref)
        assert np.array_equal(got, ref), f"{op} {dtype}:\n got {got!r}\n ref {ref!r}"
        return
    r, a = tol(op, dtype)
    r = r if rtol is None else rtol
    a = a if atol is None else atol
    np.testing.assert_allclose(as_f64(got), as_f64(ref), rtol=r, atol=a, equal_nan=True,
                               err_msg=f"{op} {dtype}")


def ref_input(a):
    """A NumPy input as the reference sees it: floats widened to float64, others unchanged."""
    a = np.asarray(a)
    if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
        return as_f64(a)
    return a


class ImplSpy:
    """Wrap entries of the backends' impl tables (counting or failing), restoring them on
    ``restore()``. The executor uses those very lists (the NumPy backend's IMPLS; the Metal
    backend's ``impls`` when the default device is metal), so this sees every backend call."""

    def __init__(self):
        from metalcandle.backends import numpy_backend
        self.tables = [numpy_backend.IMPLS]
        if mc.default_device() == "metal":
            from metalcandle.backends import metal_backend
            self.tables.append(metal_backend.get().impls)
        self.names = mc._graph.op_names
        self.saved = {}
        self.calls = []

    def _code(self, name):
        return self.names.index(name)

    def _patch(self, i, make):
        # the C fast path for small CPU arrays bypasses the table: off while patched
        mc._executor._set_fast_path(i, False)
        for t, table in enumerate(self.tables):
            orig = self.saved.setdefault((t, i), table[i])
            table[i] = make(orig)

    def count(self, *names):
        """Record every call of the named primitives (all primitives when none are named)."""
        for name in names or self.names:
            def make(orig, _name=name):
                def wrapped(node, ins, out):
                    # a metal node's NumPy fallback calls the unpatched impl: counted once
                    self.calls.append(_name)
                    return orig(node, ins, out)
                return wrapped
            self._patch(self._code(name), make)
        return self

    def fail(self, name, exc=None):
        """Make the named primitive raise ``exc`` (default: a fresh RuntimeError per call; a
        shared instance would chain tracebacks that keep every failed node alive)."""
        def make(orig):
            def failing(node, ins, out):
                self.calls.append(name)
                raise exc if exc is not None else RuntimeError("injected backend failure")
            return failing
        self._patch(self._code(name), make)
        return self

    def restore(self):
        for (t, i), fn in self.saved.items():
            self.tables[t][i] = fn
            mc._executor._set_fast_path(i, True)
        self.saved.clear()


def draw(rand, shape, dt, domain, nonzero=True):
    """``rand`` restricted to an op's input domain (lo, hi); ints use the integers inside it."""
    if domain is None or dt == "bool":
        return rand(shape, dt, nonzero=nonzero)
    lo, hi = domain
    if kind(dt) != "f":
        lo, hi = math.ceil(lo), math.floor(hi)
    return rand(shape, dt, low=lo, high=hi, nonzero=nonzero)


def weak_result(dt, s):
    # The documented weak-scalar rule (independent of mc.result_type).
    if type(s) is bool:
        return dt
    if type(s) is int:
        return "int32" if dt == "bool" else dt
    return dt if dt in FLOATS else "float32"


def expected_promotion(a, b):
    """The documented promotion rule, written independently of mc.result_type."""
    if a == b:
        return a
    if a == "bool":
        return b
    if b == "bool":
        return a
    if kind(a) == "f" and kind(b) == "f":
        if {a, b} == {"float16", "bfloat16"}:
            return "float32"
        size = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
        return a if size[a] > size[b] else b
    if kind(a) == "f":
        return a
    if kind(b) == "f":
        return b
    return np.promote_types(a, b).name


def erf_ref(x):
    """Exact erf in float64 (math.erf elementwise)."""
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def sigmoid_ref(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------- op tables (shared with device tests)

# name -> (metalcandle function, float64/int NumPy reference, input domain (lo, hi) or None)
UNARY = {
    "negative": (mc.negative, np.negative, None),
    "abs": (mc.abs, np.abs, None),
    "sign": (mc.sign, np.sign, None),
    "exp": (mc.exp, np.exp, (-4, 4)),
    "log": (mc.log, np.log, (0.1, 8)),
    "log1p": (mc.log1p, np.log1p, (-0.9, 8)),
    "expm1": (mc.expm1, np.expm1, (-4, 4)),
    "sqrt": (mc.sqrt, np.sqrt, (0.1, 8)),
    "rsqrt": (mc.rsqrt, lambda x: 1.0 / np.sqrt(x), (0.1, 8)),
    "square": (mc.square, np.square, (-10, 10)),
    "reciprocal": (mc.reciprocal, lambda x: 1.0 / x, None),
    "sin": (mc.sin, np.sin, (-3, 3)),
    "cos": (mc.cos, np.cos, (-3, 3)),
    "tanh": (mc.tanh, np.tanh, (-3, 3)),
    "sigmoid": (mc.sigmoid, sigmoid_ref, (-6, 6)),
    "relu": (mc.relu, lambda x: np.maximum(x, 0), None),
    "gelu": (mc.gelu, lambda x: 0.5 * x * (1 + erf_ref(x / math.sqrt(2))), (-3, 3)),
    "gelu_approx": (mc.gelu_approx, lambda x: 0.5 * x * (1 + np.tanh(
        math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))), (-3, 3)),
    "silu": (mc.silu, lambda x: x * sigmoid_ref(x), (-6, 6)),
    "erf": (mc.erf, erf_ref, (-3, 3)),
    "floor": (mc.floor, np.floor, None),
    "ceil": (mc.ceil, np.ceil, None),
    "round": (mc.round, np.rint, None),
    "logical_not": (mc.logical_not, np.logical_not, None),
}
KEEPS_DTYPE = {"negative", "abs", "sign", "square", "relu", "floor", "ceil", "round"}
NO_BOOL = {"negative", "sign"}


def unary_out(op, dt):
    if op == "logical_not":
        return "bool"
    if op in KEEPS_DTYPE:
        return dt
    return dt if dt in FLOATS else "float32"


def unary_ref(op, a, out_dt):
    ref_fn = UNARY[op][1]
    with np.errstate(all="ignore"):
        if out_dt in FLOATS:
            return ref_fn(as_f64(a))
        r = ref_fn(a)
    return r.astype(bool) if out_dt == "bool" else r


# name -> (function, NumPy reference, operator or None, domain of a, domain of b)
BINARY = {
    "add": (mc.add, np.add, operator.add, (-50, 50), (-50, 50)),
    "subtract": (mc.subtract, np.subtract, operator.sub, (-50, 50), (-50, 50)),
    "multiply": (mc.multiply, np.multiply, operator.mul, (-10, 10), (-10, 10)),
    "divide": (mc.divide, np.true_divide, operator.truediv, None, None),
    "floor_divide": (mc.floor_divide, np.floor_divide, operator.floordiv, None, None),
    "remainder": (mc.remainder, np.remainder, operator.mod, None, None),
    "power": (mc.power, np.power, operator.pow, (0.5, 2), (0, 3)),
    "maximum": (mc.maximum, np.maximum, None, None, None),
    "minimum": (mc.minimum, np.minimum, None, None, None),
    "equal": (mc.equal, np.equal, operator.eq, (-3, 3), (-3, 3)),
    "not_equal": (mc.not_equal, np.not_equal, operator.ne, (-3, 3), (-3, 3)),
    "less": (mc.less, np.less, operator.lt, (-3, 3), (-3, 3)),
    "less_equal": (mc.less_equal, np.less_equal, operator.le, (-3, 3), (-3, 3)),
    "greater": (mc.greater, np.greater, operator.gt, (-3, 3), (-3, 3)),
    "greater_equal": (mc.greater_equal, np.greater_equal, operator.ge, (-3, 3), (-3, 3)),
    "logical_and": (mc.logical_and, np.logical_and, None, None, None),
    "logical_or": (mc.logical_or, np.logical_or, None, None, None),
}
COMPARISONS = {"equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
               "logical_and", "logical_or"}
NO_BOOL_BINARY = {"subtract", "floor_divide", "remainder", "power"}


def binary_out(op, ct):
    if op in COMPARISONS:
        return "bool"
    if op == "divide" and ct not in FLOATS:
        return "float32"
    return ct


def binary_ref(op, a, b, out_dt):
    ref_fn = BINARY[op][1]
    with np.errstate(all="ignore"):
        if out_dt in FLOATS:
            return ref_fn(ref_input(a).astype(np.float64), ref_input(b).astype(np.float64))
        if op in COMPARISONS:
            return ref_fn(ref_input(a), ref_input(b))
        return ref_fn(a.astype(np_dtype(out_dt)), b.astype(np_dtype(out_dt)))


def draw_pair(op, rand, sa, sb, dt):
    _, _, _, da, db = BINARY[op]
    if op == "power" and dt in FLOATS:
        db = (-3, 3)
    if op == "power" and kind(dt) != "f":
        da = (0, 4)
    return draw(rand, sa, dt, da), draw(rand, sb, dt, db)


def metal_counted(fn, keys=("dispatches", "command_buffers", "pipeline_compiles", "fallbacks")):
    """(fn(), delta) of the metal device counters, the backend's fallbacks and the executor's
    region count over the call."""
    from metalcandle.backends import metal_backend

    def snap():
        return dict(mc.metal.stats(), fallbacks=metal_backend.get().fallbacks,
                    regions=mc._executor_stats()["fusion_regions"])
    before = snap()
    r = fn()
    after = snap()
    return r, {k: after[k] - before[k] for k in keys}


def run_threads(target, n=4):
    """Run target(k) for k in range(n) on n threads at once; fail if one raised or hung."""
    import threading
    errors = []

    def wrap(k):
        try:
            target(k)
        except BaseException as e:              # noqa: BLE001 - reported by the main thread
            errors.append((k, e))
    threads = [threading.Thread(target=wrap, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, f"{len(errors)} threads failed; first: {errors[0][1]!r}"

"""Reductions against NumPy: every op, every dtype, axis None/int/negative/tuple, keepdims, ddof,
empty axes, NaN, and float16 accumulation."""
import warnings

import numpy as np
import pytest

import metalcandle as mc
from metalcandle.errors import AxisError, ShapeError
from helpers import ALL_DTYPES, FLOATS, assert_close, np_dtype, kind, as_f64

pytestmark = pytest.mark.usefixtures("device")


def _logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros([1] * x.ndim)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(all="ignore"):
        r = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis)


REDUCTIONS = {
    "sum": (mc.sum, np.sum), "mean": (mc.mean, np.mean), "prod": (mc.prod, np.prod),
    "max": (mc.max, np.max), "min": (mc.min, np.min), "argmax": (mc.argmax, np.argmax),
    "argmin": (mc.argmin, np.argmin), "var": (mc.var, np.var), "std": (mc.std, np.std),
    "logsumexp": (mc.logsumexp, _logsumexp), "all": (mc.all, np.all), "any": (mc.any, np.any),
}
ARG = {"argmax", "argmin"}


def out_dtype(op, dt):
    if op in ("sum", "prod"):
        return dt if dt in FLOATS else "int64"
    if op in ("mean", "var", "std", "logsumexp"):
        return dt if dt in FLOATS else "float32"
    if op in ARG:
        return "int64"
    if op in ("all", "any"):
        return "bool"
    return dt


def draw(op, rand, shape, dt):
    if dt == "bool":
        return rand(shape, dt)
    if op == "prod":
        return rand(shape, dt, low=0.6, high=1.6) if dt in FLOATS else rand(shape, dt, low=-2,
                                                                             high=2)
    if op in ("sum", "mean") and kind(dt) in "iu":
        return rand(shape, dt, low=-10 ** 6, high=10 ** 6)   # clipped to the dtype's range
    if op in ("all", "any"):
        a = rand(shape, dt, nonzero=False)
        a.reshape(-1)[::7] = 0
        return a
    return rand(shape, dt)


def reference(op, a, axis, keepdims, out_dt, ddof=0):
    fn = REDUCTIONS[op][1]
    if out_dt in FLOATS or op in ARG or (op in ("max", "min") and kind(out_dt) == "f"):
        x = as_f64(a)
    else:
        x = a
    kw = {} if op not in ("var", "std") else {"ddof": ddof}
    if op in ("sum", "prod") and out_dt == "int64":
        kw["dtype"] = np.int64
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = fn(x, axis=axis, keepdims=keepdims, **kw)
    return np.asarray(r)


def check(op, a, dt, axis=None, keepdims=False, ddof=None):
    fn = REDUCTIONS[op][0]
    out_dt = out_dtype(op, dt)
    kw = {} if ddof is None else {"ddof": ddof}
    t = fn(mc.array(a), axis=axis, keepdims=keepdims, **kw)
    assert_close(t, reference(op, a, axis, keepdims, out_dt, ddof or 0), op, out_dt)
    return t


@pytest.mark.parametrize("dt", ALL_DTYPES)
@pytest.mark.parametrize("op", REDUCTIONS)
def test_reduction_dtypes(op, dt, rand):
    np_dtype(dt)
    a = draw(op, rand, (3, 4, 5), dt)
    check(op, a, dt, axis=None)
    check(op, a, dt, axis=1)


AXES = [None, 0, 1, 2, -1, -3, (0, 2), (-1, 0), (0, 1, 2), ()]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("dt", ["float32", "int32"])
@pytest.mark.parametrize("op", REDUCTIONS)
def test_reduction_axes(op, dt, axis, keepdims, rand):
    if op in ARG and isinstance(axis, tuple):
        with pytest.raises(TypeError, match=op):
            REDUCTIONS[op][0](mc.ones((3, 4, 5)), axis=axis)
        return
    check(op, draw(op, rand, (3, 4, 5), dt), dt, axis, keepdims)


@pytest.mark.parametrize("op", [o for o in REDUCTIONS if o != "logsumexp"])
def test_reduction_methods_match_functions(op, rand):
    a = draw(op, rand, (4, 6), "float32")
    x = mc.array(a)
    m = getattr(x, op)(axis=-1, keepdims=True)
    f = REDUCTIONS[op][0](x, axis=-1, keepdims=True)
    assert m.dtype == f.dtype and m.shape == f.shape
    np.testing.assert_array_equal(m.numpy(), f.numpy())


@pytest.mark.parametrize("shape", [(), (1,), (7,), (1, 1), (2, 1, 3)])
@pytest.mark.parametrize("op", REDUCTIONS)
def test_reduction_small_shapes(op, shape, rand):
    a = draw(op, rand, shape, "float32")
    check(op, a, "float32")
    if len(shape) >= 1:
        check(op, a, "float32", axis=-1, keepdims=True)


@pytest.mark.parametrize("ddof", [0, 1, 2])
@pytest.mark.parametrize("op", ["var", "std"])
def test_ddof(op, ddof, rand):
    a = rand((6, 5), "float32")
    check(op, a, "float32", axis=None, ddof=ddof)
    check(op, a, "float32", axis=0, ddof=ddof)
    check(op, a, "float32", axis=(0, 1), keepdims=True, ddof=ddof)
    check(op, rand((6, 5), "float16"), "float16", axis=1, ddof=ddof)
    t = getattr(mc.array(a), op)(axis=1, ddof=ddof)
    np.testing.assert_allclose(t.numpy(), getattr(np, op)(as_f64(a), axis=1, ddof=ddof),
                               rtol=1e-5)


def test_ddof_must_be_int():
    with pytest.raises(TypeError, match="var"):
        mc.var(mc.ones((3,)), ddof=1.0)
    with pytest.raises(TypeError, match="std"):
        mc.std(mc.ones((3,)), ddof="1")


@pytest.mark.parametrize("op", ["max", "min", "argmax", "argmin"])
def test_empty_axis_without_identity_raises_at_build(op, spy):
    spy.count()
    x = mc.zeros((0, 3))
    with pytest.raises(ShapeError, match=op):
        REDUCTIONS[op][0](x, axis=0)
    with pytest.raises(ShapeError, match=op):
        REDUCTIONS[op][0](x)
    r = REDUCTIONS[op][0](x, axis=1)     # reducing the non-empty axis is fine
    assert r.shape == (0,)
    assert spy.calls == []
    assert r.numpy().shape == (0,)


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:Degrees of freedom")
@pytest.mark.parametrize("op", ["sum", "prod", "mean", "all", "any", "logsumexp", "var"])
def test_empty_axis_with_identity(op):
    a = np.zeros((0, 3), np.float32)
    check(op, a, "float32", axis=0)
    check(op, a, "float32", axis=None)
    check(op, a, "float32", axis=1, keepdims=True)


@pytest.mark.parametrize("dt", FLOATS)
def test_nan_and_inf(dt, rand):
    a = rand((3, 4), dt)
    a[1, 2] = np.nan
    a[2, 0] = np.inf
    for op in ("max", "min", "sum", "mean", "argmax", "argmin", "prod", "logsumexp"):
        check(op, a, dt, axis=None)
        check(op, a, dt, axis=1)
    b = rand((2, 3), dt)
    b[0, :] = -np.inf
    check("logsumexp", b, dt, axis=1)
    check("max", b, dt, axis=1)


def test_integer_sums_do_not_overflow():
    a = np.full((1000,), 200, np.uint8)
    assert mc.sum(mc.array(a)).item() == 200_000
    assert mc.sum(mc.array(np.full((1000,), -100, np.int8))).item() == -100_000
    assert mc.sum(mc.array(a)).dtype == mc.int64
    b = np.full((70,), 2 ** 31 - 1, np.int32)
    assert mc.sum(mc.array(b)).item() == 70 * (2 ** 31 - 1)
    assert mc.sum(mc.array(np.ones(300, bool))).item() == 300
    assert mc.mean(mc.array(b)).dtype == mc.float32
    np.testing.assert_allclose(mc.mean(mc.array(b)).item(), 2 ** 31 - 1, rtol=1e-6)


@pytest.mark.parametrize("dt, rtol", [("float16", 1e-3), ("bfloat16", 1e-2)])
def test_half_accumulation(dt, rtol, rand):
    a = rand((10_000,), dt, low=0.0, high=1.0)
    ref = np.sum(a.astype(np.float32))
    s = mc.sum(mc.array(a))
    assert s.dtype.name == dt
    np.testing.assert_allclose(float(s.item()), ref, rtol=rtol)
    m = mc.mean(mc.array(a))
    np.testing.assert_allclose(float(m.item()), ref / a.size, rtol=rtol)
    v = mc.var(mc.array(a))
    np.testing.assert_allclose(float(v.item()), np.var(a.astype(np.float64)), rtol=rtol * 5)
    rows = mc.sum(mc.array(a.reshape(10, 1000)), axis=1).numpy().astype(np.float64)
    np.testing.assert_allclose(rows, a.reshape(10, 1000).astype(np.float32).sum(1), rtol=rtol)


def test_argmax_ties_pick_first():
    x = mc.array([[1, 3, 3, 0], [5, 5, 5, 5]])
    assert mc.argmax(x, axis=1).tolist() == [1, 0]
    assert mc.argmin(x, axis=1).tolist() == [3, 0]
    assert mc.argmax(x).item() == 4
    assert mc.argmax(x, axis=1, keepdims=True).shape == (2, 1)
    assert mc.argmax(x, keepdims=True).shape == (1, 1)


def test_axis_errors():
    x = mc.ones((2, 3))
    for op, (fn, _) in REDUCTIONS.items():
        with pytest.raises(AxisError, match=op):
            fn(x, axis=2)
        with pytest.raises(IndexError):
            fn(x, axis=-3)
    with pytest.raises(ValueError, match="repeated"):
        mc.sum(x, axis=(0, -2))
    with pytest.raises(TypeError):
        mc.sum(x, axis=1.0)
    with pytest.raises(TypeError):
        mc.sum(x, axis=(0, "1"))


@pytest.mark.parametrize("op", ["mean", "var", "std", "sum", "logsumexp"])
def test_empty_reductions_emit_no_warnings(op):
    # The executor documents IEEE semantics: nan/inf results are values, not warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = REDUCTIONS[op][0](mc.zeros((0, 3)), axis=0).numpy()
    assert r.shape == (3,)

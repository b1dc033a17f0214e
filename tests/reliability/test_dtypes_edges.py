"""Every dtype and the edge shapes: seeded random graphs of edgegen.py (exact NumPy references),
reductions over size-0 axes against NumPy, integer wrap-around, float64 as a CPU-only dtype."""
import importlib.util
import warnings

import numpy as np
import pytest

import helpers as H
import metalcandle as mc
from metalcandle import errors as E
from reliability.edgegen import DTYPES, EdgeGraph, dtypes_here
from reliability.graphgen import run_seeds

pytestmark = pytest.mark.usefixtures("device", "fusion_restored")

BLOCKS, PER_BLOCK, METAL_PER_BLOCK = 6, 500, 50      # 3,000 graphs on the CPU, 300 on Metal


def run_edge_block(seeds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # NumPy's mean of an empty slice
        return run_seeds(seeds, lambda seed: EdgeGraph(seed).build().evaluate())


@pytest.mark.parametrize("block", range(BLOCKS))
def test_edge_graphs(block, device):
    n = METAL_PER_BLOCK if device == "metal" else PER_BLOCK
    ops, fails = run_edge_block(range(10 ** 7 + block * PER_BLOCK, 10 ** 7 + block * PER_BLOCK + n))
    assert not fails, (f"{len(fails)} of {n} graphs failed, seeds {[f[0] for f in fails]}; "
                       f"first:\n{fails[0][1]}")
    assert ops >= 3 * n


def test_edge_generator_covers_every_dtype_and_edge_shape(device):
    dts, shapes, ops = set(), set(), set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for seed in range(10 ** 7, 10 ** 7 + 300):
            g = EdgeGraph(seed).build()
            for nd in g.nodes:
                dts.add(nd.dt)
                shapes.add(nd.ref.shape)
                ops.add((nd.expr.split("(")[0], nd.dt, nd.ref.size == 0))
    assert dts == set(dtypes_here()), f"dtypes never generated: {set(dtypes_here()) - dts}"
    assert ("float64" in dts) == (device == "cpu")
    assert {(), (0,), (3, 0), (0, 3)} <= shapes
    for name in ("mc.sum", "mc.prod", "mc.all", "mc.any", "mc.matmul", "mc.concatenate"):
        assert any(o[0] == name and o[2] for o in ops), f"{name} never on a size-0 tensor"
    for dt in ("int8", "int16", "uint8", "uint32"):
        for name in ("mc.add", "mc.multiply", "mc.floor_divide", "mc.remainder", "mc.sum"):
            assert any(o[0] == name and o[1] in (dt, "int64") for o in ops), (name, dt)


REDUCTIONS = ("sum", "prod", "mean", "max", "min", "argmax", "argmin", "var", "std", "all", "any",
              "logsumexp")


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 3), (2, 0, 4)], ids=str)
def test_reductions_over_size0_axes_match_numpy(shape, device):
    for dt in ("float32", "float16", "int8", "uint32", "bool"):
        a = np.zeros(shape, dt)
        x = mc.asarray(a)
        for op in REDUCTIONS:
            if dt == "bool" and op not in ("sum", "prod", "all", "any"):
                continue
            axes = [None] + list(range(len(shape))) + [tuple(range(len(shape)))]
            for ax in axes:
                if op.startswith("arg") and isinstance(ax, tuple):
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    try:
                        if op == "logsumexp":
                            ref = np.log(np.sum(np.exp(a.astype(np.float64)), axis=ax))
                        else:
                            ref = getattr(np, op)(a, axis=ax)
                    except ValueError:       # NumPy: zero-size array to max/argmax... no identity
                        with pytest.raises(E.ShapeError, match=f"{op}.*zero-size"):
                            getattr(mc, op)(x, axis=ax)
                        continue
                got = np.asarray(getattr(mc, op)(x, axis=ax))
                assert got.shape == np.shape(ref), (op, dt, ax, got.shape)
                np.testing.assert_array_equal(H.as_f64(got), H.as_f64(np.asarray(ref)),
                                              err_msg=f"{op} {dt} {shape} axis={ax}")


@pytest.mark.parametrize("dt", ["int8", "int16", "uint8", "uint32"])
def test_integer_overflow_wraps_like_numpy(dt, device):
    info = np.iinfo(dt)
    a = np.array([info.max, info.min, info.max // 2 + 3, 1, 0], dt)
    b = np.array([1, 1, 3, info.max, info.max], dt)
    x, y = mc.array(a), mc.array(b)
    with np.errstate(all="ignore"):
        cases = {"add": (x + y, a + b), "subtract": (x - y, a - b), "multiply": (x * y, a * b),
                 "negative": (-x, -a), "square": (mc.square(x), np.square(a)),
                 "sum": (mc.sum(x), np.sum(a, dtype=np.int64)),
                 "astype": (x.astype(mc.uint8), a.astype(np.uint8))}
    for op, (t, ref) in cases.items():
        got = np.asarray(t)
        assert got.dtype == ref.dtype and np.array_equal(got, ref), f"{op} {dt}: {got} != {ref}"


def test_float64_is_a_cpu_dtype(device):
    a = np.linspace(-2, 2, 7)
    if device == "cpu":
        y = mc.exp(mc.array(a)) * mc.ones((7,), mc.float64)
        np.testing.assert_allclose(np.asarray(y), np.exp(a), rtol=1e-12)
        assert y.dtype == mc.float64
        return
    for build in (lambda: mc.zeros((2,), mc.float64), lambda: mc.ones((2,)).astype(mc.float64),
                  lambda: mc.array([1.0], dtype=mc.float64)):
        with pytest.raises(E.DTypeError, match="float64"):
            build()
    x = mc.array(a)                      # NumPy's default float becomes float32 (documented)
    assert x.dtype == mc.float32
    np.testing.assert_allclose(np.asarray(mc.exp(x)), np.exp(a), rtol=1e-6)


def test_bfloat16_availability_matches_ml_dtypes(device):
    assert ("bfloat16" in DTYPES) == (importlib.util.find_spec("ml_dtypes") is not None)
    if "bfloat16" not in DTYPES:
        with pytest.raises(E.DTypeError, match="bfloat16"):
            mc.zeros((2,), mc.bfloat16)
        return
    x = mc.array([1.5, -2.0, 0.0], dtype=mc.bfloat16)
    assert np.asarray(x * 2 + 1).tolist() == [4.0, -3.0, 1.0]


def test_edge_oracle_catches_a_wrong_integer_op(device):
    spy = H.ImplSpy()
    spy._patch(spy._code("floor_divide"), lambda orig: lambda node, ins, out: orig(
        node, ins, out) + 1)
    try:
        ops, fails = run_edge_block(range(10 ** 7, 10 ** 7 + 400))
    finally:
        spy.restore()
    assert fails, "a floor_divide that is off by one went unnoticed"
    msg = fails[0][1]
    assert "--- minimal reproduction" in msg and "standalone: reproduces" in msg, msg
    repro = msg.split("--- full graph")[0]
    culprit = repro.split("first mismatching node ")[1].split(",")[0]
    assert f"{culprit} = mc.floor_divide(" in repro, repro

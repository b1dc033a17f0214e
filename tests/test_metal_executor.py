"""The executor on the metal device, counted: dispatches, command buffers, pipeline compiles,
fallbacks, faults. Values are checked against NumPy by the op suites, which run once per device;
these tests check *how* the work reaches the device.

They need a Metal device: on Linux the -Dmetal=mock build (the shim over the mock Metal framework
whose GPU is the MSL simulator running shaders/*.metal; `.ci/run` builds and runs it), on a Mac the
GPU. Without one the module is skipped, with that reason.
"""
import math

import numpy as np
import pytest

import metalcandle as mc
from metalcandle.errors import CommandBufferError, DTypeError

if "metal" not in mc.devices():
    pytest.skip("no metal device in this build (on Linux: pip install . -Csetup-args=-Dmetal=mock)",
                allow_module_level=True)

from metalcandle import _metal                                   # noqa: E402
from metalcandle.backends import metal_backend                  # noqa: E402
from helpers import metal_counted                                # noqa: E402

MOCK = _metal.mock_available()


pytestmark = pytest.mark.usefixtures("on_metal")


def counted(fn):
    """(result of fn(), stats delta) over the device counters and the backend's fallbacks."""
    return metal_counted(fn)


def chain(x, n):
    y = x
    for i in range(n):
        y = y * 1.0001 + 0.5 if i % 2 else mc.tanh(y)
    return y


@pytest.fixture
def no_fusion():
    mc.set_fusion(False)
    yield
    mc.set_fusion(True)


def test_ops_become_dispatches_with_one_sync_and_no_fallback(rng, no_fusion):
    a = rng.standard_normal((8, 33)).astype(np.float32)
    x = mc.array(a)
    y = mc.exp(x) * 2 + x
    _, d = counted(lambda: mc.eval(y))
    assert d["dispatches"] == 3 and d["fallbacks"] == 0, d
    assert d["command_buffers"] == 1, d
    np.testing.assert_allclose(np.asarray(y), np.exp(a) * 2 + a, rtol=2e-6)


def test_elementwise_chain_is_one_dispatch(rng):
    a = rng.standard_normal((8, 33)).astype(np.float32)
    x = mc.array(a)
    y = mc.exp(x) * 2 + x
    _, d = counted(lambda: mc.eval(y))
    assert d["dispatches"] == 1 and d["fallbacks"] == 0, d
    np.testing.assert_allclose(np.asarray(y), np.exp(a) * 2 + a, rtol=2e-6)


def test_batching_bounds_command_buffers(rng, no_fusion):
    x = mc.array(rng.standard_normal(300).astype(np.float32))
    y = chain(x, 67)                       # 100 dispatches (33 tanh + 34 * (mul, add) ... )
    _, d = counted(lambda: mc.eval(y))
    n = d["dispatches"]
    every = mc.metal.stats()["commit_every"]
    assert n == 67 + 33 and d["fallbacks"] == 0
    assert d["command_buffers"] <= math.ceil(n / every) + 1, d


def test_rebuilt_graph_compiles_no_pipeline(rng):
    a = rng.standard_normal((4, 70)).astype(np.float32)

    def build():
        x = mc.array(a)
        return mc.softmax(chain(x, 6), axis=-1)

    first, _ = counted(lambda: build().numpy())
    second, d = counted(lambda: build().numpy())
    assert d["pipeline_compiles"] == 0 and d["dispatches"] == 2, d   # a 9-op region, softmax
    np.testing.assert_array_equal(first, second)


def composite_softmax(x):
    e = mc.exp(x - mc.max(x, axis=-1, keepdims=True))
    return e / mc.sum(e, axis=-1, keepdims=True)


@pytest.mark.parametrize("form", ["fused", "composite"])
def test_softmax_and_rms_norm_are_one_dispatch_each(rng, form):
    a = rng.standard_normal((6, 130)).astype(np.float32)
    w = rng.standard_normal(130).astype(np.float32)
    x, wt = mc.array(a), mc.array(w)
    if form == "fused":
        s, r = mc.softmax(x, axis=-1), mc.fast.rms_norm(x, wt, 1e-5)
    else:  # (the intermediate `e` must not outlive the expression: a held node is never fused)
        s = composite_softmax(x)
        r = x * mc.rsqrt(mc.mean(x * x, axis=-1, keepdims=True) + 1e-5) * wt
    _, d = counted(lambda: mc.eval(s, r))
    assert d["dispatches"] == 2 and d["fallbacks"] == 0, d
    e = np.exp(a - a.max(-1, keepdims=True))
    np.testing.assert_allclose(np.asarray(s), e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    ref = a / np.sqrt((a.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(np.asarray(r), ref, rtol=1e-5, atol=1e-6)


def test_op_without_kernel_falls_back_on_the_same_memory(rng):
    a = rng.standard_normal((5, 7)).astype(np.float32)
    x = mc.array(a)
    y = mc.erf(x) + 1                      # erf has no shipped kernel: NumPy after a sync
    _, d = counted(lambda: mc.eval(y))
    assert d["fallbacks"] == 1 and d["dispatches"] == 1, d
    import math as m
    np.testing.assert_allclose(np.asarray(y), np.vectorize(m.erf)(a) + 1, rtol=1e-6, atol=3e-7)


def test_astype_of_strided_views_runs_the_strided_copy_kernel(rng):
    a = rng.standard_normal((6, 10)).astype(np.float32)
    x = mc.array(a)
    mc.eval(x)
    for view, ref in ((x.T, a.T), (x[:, ::3], a[:, ::3]), (x[::-1], a[::-1])):
        v = view
        mc.eval(v)                          # the view itself is the NumPy fallback's business
        y, d = counted(lambda: v.astype(mc.float16).numpy())
        assert d["dispatches"] == 1 and d["fallbacks"] == 0, d
        np.testing.assert_array_equal(y, ref.astype(np.float16))


def test_results_are_device_memory_viewed_without_copy(rng):
    y = mc.array(rng.standard_normal(64).astype(np.float32)) * 3
    arr = np.asarray(y)
    assert metal_backend.get().binding(arr) is not None
    assert np.shares_memory(arr, np.asarray(y))


def test_float64_is_refused_when_built():
    x = mc.array([1.0, 2.0])
    with pytest.raises(DTypeError, match="astype: float64 is not supported on the metal device"):
        x.astype(mc.float64)
    assert x.tolist() == [1.0, 2.0]


@pytest.mark.skipif(not MOCK, reason="fault injection needs the mock Metal framework")
def test_command_buffer_fault_leaves_graph_pending_and_recovers(rng):
    a = rng.standard_normal(100).astype(np.float32)
    x = mc.array(a)
    y = mc.tanh(x * 2)
    _metal.mock_fail_command_buffers(1)
    with pytest.raises(CommandBufferError, match="injected"):
        mc.eval(y)
    with pytest.raises(CommandBufferError):   # sticky: nothing silently computes garbage
        mc.eval(y)
    mc.metal.reset()
    np.testing.assert_allclose(np.asarray(y), np.tanh(a * 2), rtol=2e-6)
    np.testing.assert_array_equal(np.asarray(x), a)

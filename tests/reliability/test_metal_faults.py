"""Fault injection on the metal device (the mock Metal framework's injection hooks): an
out-of-memory, a command-buffer fault and a shader compile error during `eval`. Each must raise its
typed error, leave every requested tensor pending and its inputs intact, give back the device memory
it took, and a later eval once the cause is gone must give NumPy's answer.

Needs the -Dmetal=mock build (`.ci/run` builds and runs it); elsewhere the module is not collected
(see the skip reason)."""
import gc

import numpy as np
import pytest

import metalcandle as mc
from metalcandle.errors import CommandBufferError, DeviceOutOfMemory, ShaderCompileError

_metal = pytest.importorskip("metalcandle._metal", reason="built without the native device")
if "metal" not in mc.devices() or not _metal.mock_available():
    pytest.skip("fault injection needs the -Dmetal=mock build", allow_module_level=True)

from metalcandle.backends import metal_backend  # noqa: E402

pytestmark = pytest.mark.usefixtures("on_metal")


def graph(rng):
    a = rng.standard_normal((64, 48)).astype(np.float32)
    w = rng.standard_normal((48, 32)).astype(np.float32)
    x, wt = mc.array(a), mc.array(w)
    mc.eval(x, wt)
    y = mc.softmax(mc.tanh(x @ wt) * 2.0 + 1.0, axis=-1)
    z = mc.sum(y * y, axis=0)
    h = np.tanh(a.astype(np.float64) @ w) * 2 + 1
    e = np.exp(h - h.max(-1, keepdims=True))
    ref_y = e / e.sum(-1, keepdims=True)
    return (x, wt, a, w), (y, z), (ref_y, (ref_y ** 2).sum(0))


def check_intact_and_retry(inputs, outs, refs):
    x, wt, a, w = inputs
    np.testing.assert_array_equal(np.asarray(x), a)
    np.testing.assert_array_equal(np.asarray(wt), w)
    mc.eval(*outs)
    for t, r in zip(outs, refs):
        np.testing.assert_allclose(np.asarray(t), r, rtol=2e-5, atol=2e-6)


def active_bytes():
    gc.collect()
    return mc.metal.stats()["active_bytes"]


def test_out_of_memory_mid_graph(rng):
    inputs, outs, refs = graph(rng)
    mc.metal.clear_cache()
    before = active_bytes()
    _metal.mock_fail_allocations(1000)        # the retry after flushing the cache fails too
    try:
        with pytest.raises(DeviceOutOfMemory):
            mc.eval(*outs)
    finally:
        _metal.mock_fail_allocations(0)
    assert not any(t.is_evaluated for t in outs)
    mc.metal.reset()
    assert active_bytes() == before
    check_intact_and_retry(inputs, outs, refs)


def test_single_allocation_failure_is_absorbed_by_the_retry(rng):
    inputs, outs, refs = graph(rng)
    retries = mc.metal.stats()["oom_retries"]
    _metal.mock_fail_allocations(1)
    check_intact_and_retry(inputs, outs, refs)
    assert mc.metal.stats()["oom_retries"] == retries + 1


def test_command_buffer_fault_mid_graph(rng):
    inputs, outs, refs = graph(rng)
    before = active_bytes()
    _metal.mock_fail_command_buffers(1)
    with pytest.raises(CommandBufferError):
        mc.eval(*outs)
    assert not any(t.is_evaluated for t in outs)
    with pytest.raises(CommandBufferError):        # sticky until reset: no silent garbage
        mc.eval(outs[0])
    mc.metal.reset()
    assert active_bytes() == before
    check_intact_and_retry(inputs, outs, refs)


@pytest.fixture
def fresh_device():
    """The backend on a freshly opened device (no shader library loaded yet), restored after:
    a compile error can only be injected where a library is still to be compiled."""
    be = metal_backend.get()
    saved = be.dev, set(be.missing)
    be.dev = _metal.Device("metal", shader_dir=mc.metal.shader_dir())
    be.missing.clear()
    yield be.dev
    be.dev.sync()
    be.dev, be.missing = saved[0], saved[1]


def test_shader_compile_error_then_recovery(rng, fresh_device):
    a = rng.standard_normal((8, 40)).astype(np.float32)
    x = mc.array(a)
    y = mc.exp(x) * 0.5 + 1.0                       # a region: needs program.metal compiled
    _metal.mock_fail_compiles(1)
    with pytest.raises(ShaderCompileError, match="injected"):
        mc.eval(y)
    assert not y.is_evaluated
    np.testing.assert_array_equal(np.asarray(x), a)
    compiles = fresh_device.stats()["pipeline_compiles"]
    np.testing.assert_allclose(y.numpy(), np.exp(a.astype(np.float64)) * 0.5 + 1, rtol=1e-6)
    assert fresh_device.stats()["pipeline_compiles"] == compiles + 1   # compiled on the retry


def test_no_live_mock_objects_leak_from_faults(rng):
    gc.collect()
    base = _metal.mock_live_objects()
    for inject in (_metal.mock_fail_command_buffers, _metal.mock_fail_allocations):
        inputs, outs, refs = graph(rng)
        mc.metal.clear_cache()              # (a cached buffer would satisfy the allocation)
        inject(1000 if inject is _metal.mock_fail_allocations else 1)
        with pytest.raises((CommandBufferError, DeviceOutOfMemory)):
            mc.eval(*outs)
        _metal.mock_fail_allocations(0)
        mc.metal.reset()
        check_intact_and_retry(inputs, outs, refs)
        del inputs, outs
    mc.metal.clear_cache()
    gc.collect()
    assert _metal.mock_live_objects() <= base

"""The metal device under load: the buffer cache never holds more than its limit (checked after
every eval and every free), the limit is restored afterwards, device memory returns to its level,
and no mock Metal object (buffer, command buffer, encoder...) outlives the tensors that used it.
Needs the -Dmetal=mock build; tests/reliability/conftest.py does not collect it elsewhere."""
import gc
import time

import numpy as np
import pytest

import metalcandle as mc
from metalcandle import _metal

pytestmark = pytest.mark.usefixtures("on_metal", "fusion_restored")


def live_mock_objects(baseline, timeout=5.0):
    """Live mock objects above ``baseline`` once the mock GPU thread has dropped its references
    to finished command buffers (as tests/native/conftest.py counts them)."""
    deadline = time.monotonic() + timeout
    while _metal.mock_live_objects() > baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    return _metal.mock_live_objects() - baseline


def graph(rng, n):
    """Buffers of many sizes: an elementwise region, a reduction, a matmul, softmax, a cast."""
    a = rng.standard_normal((n, 64)).astype(np.float32)
    x = mc.array(a)
    y = mc.softmax(mc.tanh(x * 0.5) @ mc.ones((64, 32)) * 0.1, axis=-1)
    z = mc.sum(y * y, axis=0) + mc.max(x).astype(mc.float16).astype(mc.float32)
    h = np.tanh(a.astype(np.float64) * 0.5) @ np.ones((64, 32)) * 0.1
    e = np.exp(h - h.max(-1, keepdims=True))
    e = e / e.sum(-1, keepdims=True)
    return (y, z), (e, (e * e).sum(0) + np.float16(a.max()))


@pytest.mark.parametrize("limit", [0, 64 * 1024, 1 << 20])
def test_buffer_cache_respects_its_limit(limit, rng):
    old = mc.metal.set_cache_limit(limit)
    seen = []
    try:
        assert mc.metal.stats()["cache_limit"] == limit
        for i in range(24):
            outs, refs = graph(rng, (1, 7, 64, 300, 1000)[i % 5])
            mc.eval(*outs)
            seen.append(mc.metal.stats()["cached_bytes"])
            assert seen[-1] <= limit, f"cached {seen[-1]} > limit {limit} after eval {i}"
            for t, r in zip(outs, refs):
                np.testing.assert_allclose(np.asarray(t), r, rtol=1e-4, atol=1e-5)
            del outs
            gc.collect()                   # the results' buffers go back to the cache (or die)
            seen.append(mc.metal.stats()["cached_bytes"])
            assert seen[-1] <= limit, f"cached {seen[-1]} > limit {limit} after free {i}"
    finally:
        assert mc.metal.set_cache_limit(old) == limit
    assert mc.metal.stats()["cache_limit"] == old
    print(f"\n[metal cache] limit {limit:,} B: cached_bytes max {max(seen):,} B over "
          f"{len(seen)} checks")
    if limit >= 1 << 20:
        assert max(seen) > 0, "a 1 MiB cache never cached anything"


def test_no_mock_objects_or_device_memory_outlive_the_tensors(rng):
    gc.collect()
    mc.metal.clear_cache()
    base = _metal.mock_live_objects()
    active = mc.metal.stats()["active_bytes"]
    held = []
    for i in range(40):
        outs, refs = graph(rng, (3, 50, 400)[i % 3])
        if i % 4 == 0:
            held.append(outs)                  # some results stay alive across later evals
        mc.eval(*outs)
    assert _metal.mock_live_objects() > base
    for outs in held:
        np.asarray(outs[0])
    del held, outs
    gc.collect()
    mc.metal.clear_cache()
    left = live_mock_objects(base)
    print(f"\n[metal live objects] {left} above the baseline {base}; active bytes "
          f"{mc.metal.stats()['active_bytes'] - active:+,}")
    assert left <= 0, f"{left} mock Metal objects leaked"
    assert mc.metal.stats()["active_bytes"] <= active

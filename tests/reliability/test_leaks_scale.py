"""Leaks at scale: a million nodes built and evaluated on the CPU (1,000 evals of 1,000-node
chains, then mixed graphs of ~1,000 nodes with fan-in, reductions, matmul, layout and fused ops)
keep Python memory (tracemalloc) and the RSS flat after warm-up, and leave no Tensor objects behind.
The figures are printed (``pytest -s``) and recorded in docs/reliability.md. The metal device runs a
smaller load (the MSL simulator is slow); its buffer cache and mock objects are in
test_metal_leaks.py."""
import gc
import tracemalloc

import numpy as np
import pytest

import metalcandle as mc
from reliability.test_leaks_threads import RSS_LIMIT, device_bytes, rss, tensors

pytestmark = pytest.mark.usefixtures("device", "fusion_restored")


def chain(base, length, lib=mc):
    """A chain of ``length`` nodes after the leaf (one node per step: the count is exact); with
    ``lib=np`` the float64 NumPy reference of the same chain."""
    x = mc.asarray(base) if lib is mc else base.astype(np.float64)
    y = x
    for j in range(length):
        k = j % 5
        y = (y * 0.5 if k == 0 else y + 0.25 if k == 1 else lib.tanh(y) if k == 2 else y - x
             if k == 3 else lib.maximum(y, -1.0))
    return y


def mixed(base, i, length):
    """~``length`` nodes: elementwise work with fan-in, and every 10 steps a reduction, a matmul,
    a layout op or a fused op folded back in; a failed build each time."""
    x = mc.asarray(base)
    y, acc = x, []
    while len(acc) < length // 21:            # 21 nodes per step
        for _ in range(6):
            y = mc.tanh(y * 0.9 + x * 0.1)
        k = len(acc) % 5
        z = (mc.sum(y, axis=-1, keepdims=True) * 0.01 if k == 0 else (y @ y.T)[:, :1] * 1e-3
             if k == 1 else y.T.T[::1] * 0.5 if k == 2 else mc.softmax(y, axis=-1) if k == 3 else
             mc.fast.rms_norm(y, None, 1e-5) * 0.1)
        y = y + z
        acc.append(y)
        try:
            y + mc.ones((3,))
        except mc.errors.BroadcastError:
            pass
    out = mc.sum(mc.stack(acc[-4:]), axis=0) + i
    if i % 7 == 0:
        mc.eval(out, acc[len(acc) // 2])          # keep an intermediate this time
    else:
        out.eval()
    return out


def measure(run, n_warm, n_traced, n_total):
    """Warm up; then tracemalloc growth between the 1st and 2nd half of the traced runs; RSS and
    live tensors over everything after warm-up."""
    for i in range(n_warm):
        run(i)
    gc.collect()
    t0, r0, d0 = tensors(), rss(), device_bytes()
    tracemalloc.start()
    try:
        for i in range(n_warm, n_warm + n_traced // 2):
            run(i)
        gc.collect()
        m1, _ = tracemalloc.get_traced_memory()
        for i in range(n_warm + n_traced // 2, n_warm + n_traced):
            run(i)
        gc.collect()
        m2, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for i in range(n_warm + n_traced, n_total):
        run(i)
    gc.collect()
    return dict(traced_growth=m2 - m1, traced_peak=peak, rss_growth=rss() - r0,
                tensors=tensors() - t0, device_growth=device_bytes() - d0)


def report(name, nodes, f):
    print(f"\n[leaks] {name} on {mc.default_device()}: {nodes:,} nodes run; tracemalloc growth "
          f"{f['traced_growth']:,} B (peak {f['traced_peak']:,} B), RSS growth "
          f"{f['rss_growth'] / 2 ** 20:.2f} MiB, tensors {f['tensors']:+d}, device "
          f"{f['device_growth']:,} B")


def test_a_million_chain_nodes_keep_memory_flat(device, rand):
    metal = device == "metal"
    n_chains, length = (30, 200) if metal else (1000, 1000)
    base = rand((16,), "float32")
    ref = chain(base, length, np)
    nodes0 = mc._executor.stats()["nodes"]

    def run(i):
        y = chain(base, length)
        y.eval()
        if i % 50 == 0:
            np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-5)
    f = measure(run, 10 if metal else 100, 10 if metal else 200, n_chains)
    nodes = mc._executor.stats()["nodes"] - nodes0
    report(f"{n_chains} chains x {length}", nodes, f)
    assert nodes == n_chains * length
    assert f["traced_growth"] < 64 * 1024, f
    assert f["rss_growth"] < RSS_LIMIT, f
    assert f["tensors"] <= 2 and f["device_growth"] <= 64 * 1024, f


def test_mixed_thousand_node_graphs_keep_memory_flat(device, rand):
    metal = device == "metal"
    n_graphs, length = (6, 100) if metal else (150, 1000)
    base = rand((8, 16), "float32")
    nodes0 = mc._executor.stats()["nodes"]
    first = mixed(base, 0, length).tolist()
    again = mixed(base, 0, length).tolist()
    assert first == again                               # deterministic, so comparable

    def run(i):
        mixed(base, i, length)
    f = measure(run, 2 if metal else 20, 2 if metal else 60, n_graphs)
    nodes = mc._executor.stats()["nodes"] - nodes0
    report(f"{n_graphs} mixed graphs", nodes, f)
    assert nodes >= n_graphs * length * 0.9
    assert f["traced_growth"] < 64 * 1024, f
    assert f["rss_growth"] < RSS_LIMIT, f
    assert f["tensors"] <= 2 and f["device_growth"] <= 64 * 1024, f
    assert np.isfinite(first).all()

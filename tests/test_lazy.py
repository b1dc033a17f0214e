"""Laziness and the executor: nothing runs before eval, metadata never evaluates, evaluated nodes
detach from their inputs, failures leave the graph intact, deep chains, buffer release."""
import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import metalcandle as mc
from helpers import assert_close, as_f64, run_threads

pytestmark = pytest.mark.usefixtures("device")


def _stats():
    st = mc._executor.stats()
    return st["evals"], st["nodes"]


def test_nothing_runs_before_eval(spy, rand):
    spy.count()
    before = _stats()
    a = rand((3, 4), "float32")
    x = mc.array(a)
    y = mc.exp(x * 2 + 1).sum(axis=0) @ mc.ones((4, 2))
    z = mc.zeros((1000, 1000)) + mc.arange(1000) + mc.random.normal((1000,))
    w = mc.concatenate([x, x])[::2].reshape(-1).T
    i = (mc.array(rand((5,), "int32")) * 3).astype(mc.int8)
    assert spy.calls == [] and _stats() == before
    for t in (y, z, w, i):
        assert not t.is_evaluated
        _ = (t.shape, t.dtype, t.ndim, t.size, t.nbytes, t.itemsize, t.op, len(t))
        assert not t.is_evaluated
    assert spy.calls == [] and _stats() == before
    assert (y.shape, y.dtype, y.ndim, y.size) == ((2,), mc.float32, 1, 2)
    assert (z.shape, w.shape, i.dtype) == ((1000, 1000), (12,), mc.int8)
    y.eval()
    assert y.is_evaluated and not z.is_evaluated and not w.is_evaluated and not i.is_evaluated
    assert _stats()[0] == before[0] + 1
    ref = np.exp(as_f64(a) * 2 + 1).sum(0) @ np.ones((4, 2))
    assert_close(y, ref, "matmul", "float32")


def test_each_node_runs_once(spy, rand):
    # int32 data: every node goes through the NumPy backend table the spy wraps.
    spy.count("add", "multiply")
    x = mc.array(rand((4,), "int32"))
    a = x + 1
    b = a * a
    c = a * 3
    mc.eval(b, c)
    assert sorted(spy.calls) == ["add", "multiply", "multiply"]
    n0 = _stats()[1]
    b.eval()
    mc.eval(b, c)
    _ = b.numpy(), c.tolist(), repr(b)
    assert sorted(spy.calls) == ["add", "multiply", "multiply"]
    assert _stats()[1] == n0
    d = b + c     # built on evaluated nodes: only the new node runs
    d.eval()
    assert sorted(spy.calls) == ["add", "add", "multiply", "multiply"]
    assert _stats()[1] == n0 + 1
    xv = x.numpy().astype(np.int64)
    assert d.tolist() == ((xv + 1) ** 2 + (xv + 1) * 3).tolist()


@pytest.mark.parametrize("use", ["item", "tolist", "numpy", "repr", "bool", "float", "array",
                                 "eval_method", "mc_eval"])
def test_every_access_evaluates(use):
    x = mc.array([2.0]) * 3
    assert not x.is_evaluated
    r = {"item": lambda: x.item(), "tolist": lambda: x.tolist(), "numpy": lambda: x.numpy(),
         "repr": lambda: repr(x), "bool": lambda: bool(x), "float": lambda: float(x),
         "array": lambda: np.asarray(x), "eval_method": lambda: x.eval(),
         "mc_eval": lambda: mc.eval(x)}[use]()
    assert x.is_evaluated
    assert x.item() == 6.0
    assert r is not None or use == "mc_eval"


def test_detach_after_eval_frees_intermediates(rand):
    x = mc.array(rand((100,), "float32"))
    a = x + 1
    ref_a = weakref.ref(a)
    b = mc.exp(a)
    ref_b = weakref.ref(b)
    c = b * 2
    del a, b
    assert ref_a() is not None and ref_b() is not None   # still held by the pending graph
    assert len(c._inputs) == 1
    c.eval()
    assert c._inputs == ()
    gc.collect()
    assert ref_a() is None and ref_b() is None
    assert c.is_evaluated


def test_kept_intermediate_is_evaluated_and_detached(rand):
    a_np = rand((10,), "float32")
    x = mc.array(a_np)
    a = x + 1          # the user holds it: eval of c stores its value too
    c = a * 2
    c.eval()
    assert a.is_evaluated and a._inputs == ()
    assert_close(a, as_f64(a_np) + 1, "add", "float32")
    assert_close(c, (as_f64(a_np) + 1) * 2, "multiply", "float32")


def test_repeated_eval_is_stable(rand):
    a_np = rand((3, 3), "float32")
    y = mc.array(a_np) @ mc.array(a_np)
    v1 = y.numpy().copy()
    for _ in range(3):
        y.eval()
        mc.eval(y)
    np.testing.assert_array_equal(y.numpy(), v1)
    # the same buffer every time (no recompute, no copy), seen through read-only views
    assert np.shares_memory(y.numpy(), y.numpy())
    assert not y.numpy().flags.writeable and not np.asarray(y).flags.writeable


def test_one_op_on_evaluated_inputs_counts_once(rand):
    # (on the CPU this takes the executor's single-node shortcut; elsewhere the general path)
    a_np, b_np = rand((5,), "float32"), rand((5,), "float32")
    a, b = mc.array(a_np), mc.array(b_np)
    for build, ref, nodes in ((lambda: a + 1.0, a_np + np.float32(1), 1),
                              (lambda: a * b, a_np * b_np, 1),
                              (lambda: mc.exp(a * 2.0), np.exp(a_np * np.float32(2)), 2)):
        y = build()
        s0 = mc._executor_stats()
        mc.eval(y)
        s1 = mc._executor_stats()
        assert (s1["evals"] - s0["evals"], s1["nodes"] - s0["nodes"]) == (1, nodes)
        assert y.is_evaluated
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6)
    np.testing.assert_array_equal(a.numpy(), a_np)


def test_numpy_views_are_read_only_and_copies_are_not(rand):
    a_np = rand((3, 4), "float32")
    x = mc.array(a_np)
    y = x * 2.0
    v = np.asarray(x)
    with pytest.raises(ValueError, match="read-only"):
        v[0, 0] = 123.0
    with pytest.raises(ValueError, match="read-only"):
        x.numpy()[...] = 0.0
    c = np.array(x)            # np.array copies: writable, and writing it leaves x alone
    c[...] = 0.0
    np.testing.assert_array_equal(x.numpy(), a_np)
    np.testing.assert_array_equal(y.numpy(), a_np * 2.0)
    assert np.asarray(x, dtype=np.float64).flags.writeable   # a dtype change is a new array


def test_eval_nested_containers(rand):
    x = mc.array(rand((4,), "float32"))
    ts = [x + i for i in range(6)]
    mc.eval([ts[0], {"k": (ts[1], [ts[2]]), "z": {"deep": ts[3]}}], ts[4], "not a tensor", 7, None)
    assert all(t.is_evaluated for t in ts[:5])
    assert not ts[5].is_evaluated
    mc.eval()
    mc.eval([], {}, ())
    for i, t in enumerate(ts[:5]):
        np.testing.assert_allclose(t.numpy(), x.numpy() + i, rtol=1e-6)


def test_failing_eval_leaves_graph_pending(spy, rand):
    a_np = rand((3, 4), "int32")
    x = mc.array(a_np)
    a = x + 1                      # held by the user and computed before the failure
    y = mc.abs(a) * 2
    z = y.sum()
    inputs_before = (z._inputs, y._inputs, a._inputs)
    spy.fail("multiply", RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom") as info:
        z.eval()
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "multiply" in notes
    for t in (z, y, a):
        assert not t.is_evaluated
    assert (z._inputs, y._inputs, a._inputs) == inputs_before
    assert all(u is v for u, v in zip(z._inputs, inputs_before[0]))
    with pytest.raises(RuntimeError, match="boom"):
        mc.eval(y, a)
    assert not a.is_evaluated
    spy.restore()
    ref = np.abs(a_np + 1) * 2
    assert_close(z, ref.sum(dtype=np.int64), "sum", "int64")
    assert_close(y, ref, "multiply", "int32")
    assert_close(a, a_np + 1, "add", "int32")


def test_failure_in_first_node_then_retry(spy):
    spy.fail("arange", ValueError("no arange today"))
    t = mc.arange(5) * 2
    with pytest.raises(ValueError, match="no arange today"):
        t.tolist()
    spy.restore()
    assert t.tolist() == [0, 2, 4, 6, 8]


def test_deep_chain_builds_evaluates_and_frees():
    x = mc.array(np.array([0.0, 1.0], np.float64))
    y = x
    for _ in range(100_000):
        y = y + 1.0
    assert not y.is_evaluated
    assert y.tolist() == [100_000.0, 100_001.0]
    # a deep pending chain can also be dropped without evaluating (no recursive dealloc crash)
    z = x
    for _ in range(100_000):
        z = z * 1.0
    del z
    gc.collect()


def test_deep_chain_of_mixed_ops():
    y = mc.array(np.array([1.0], np.float32))
    for i in range(20_000):
        y = (y + 1) if i % 2 else mc.reshape(y, (1,)) * 1
    assert y.item() == 10_001.0


def test_long_chain_releases_buffers():
    n = 1 << 20                                    # 4 MiB of float32 per buffer
    x = mc.asarray(np.ones(n, np.float32))
    y = x
    for i in range(40):
        y = y * 1.0001 + 0.5 if i % 2 else mc.exp(y * 1e-3)
    r = y.sum()
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        r.eval()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 40+ intermediates of 4 MiB each would be >160 MiB if kept; a few may be alive at once.
    assert peak < 4 * n * 4, f"peak {peak / 2**20:.1f} MiB during a chain of 4 MiB buffers"
    assert np.isfinite(r.item())


def test_buffer_release_keeps_values_the_user_holds():
    # Donation must never overwrite a buffer the user can still see.
    base = np.arange(6, dtype=np.float32)
    x = mc.asarray(base)
    a = x + 1
    b = a * 2                                   # a is held: it may not be donated to b
    c = b - 1                                   # b is held too
    mc.eval(c)
    np.testing.assert_array_equal(a.numpy(), base + 1)
    np.testing.assert_array_equal(b.numpy(), (base + 1) * 2)
    np.testing.assert_array_equal(c.numpy(), (base + 1) * 2 - 1)
    np.testing.assert_array_equal(x.numpy(), np.arange(6, dtype=np.float32))
    v = x.reshape(2, 3)
    w = (v + 1).reshape(6) * 3                  # views of leaves are not donated either
    w.eval()
    np.testing.assert_array_equal(base, np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(w.numpy(), (np.arange(6) + 1) * 3)


def test_views_of_dying_intermediates_stay_correct(rand):
    a_np = rand((4, 4), "float32")
    a = mc.array(a_np) + 1
    # a feeds a transposed view and an elementwise op: the op may not reuse a's buffer while the
    # view still needs it, whichever runs first.
    r1 = a.T + a * 2
    r2 = a * 2 + a.T
    mc.eval(r1, r2)
    ref = (as_f64(a_np) + 1).T + (as_f64(a_np) + 1) * 2
    assert_close(r1, ref, "add", "float32")
    assert_close(r2, ref, "add", "float32")



def test_reversed_view_of_dying_intermediate(rand):
    a_np = rand((4, 4), "float32")
    b = mc.array(a_np) * 3
    r3 = b.reshape(16)[::-1].reshape(4, 4) + b
    r3_ref = (as_f64(a_np) * 3).reshape(16)[::-1].reshape(4, 4) + as_f64(a_np) * 3
    assert_close(r3, r3_ref, "add", "float32")


# ---------------------------------------------------------------- eval-time rewrites

def _softmax(x, axis):
    e = mc.exp(x - mc.max(x, axis=axis, keepdims=True))
    return e / mc.sum(e, axis=axis, keepdims=True)


def _np_softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("dt", ["float32", "float16"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_handwritten_softmax_matches_numpy(dt, axis, rand):
    a = rand((5, 7), dt)
    assert_close(_softmax(mc.array(a), axis), _np_softmax(as_f64(a), axis), "exp", dt)


def test_handwritten_norms_and_lora_match_numpy(rand):
    a, w, b = rand((4, 16), "float32"), rand((16,), "float32"), rand((16,), "float32")
    x = mc.array(a)
    af = as_f64(a)
    rms = x * mc.rsqrt(mc.mean(x * x, axis=-1, keepdims=True) + 1e-5) * mc.array(w)
    rms_ref = af / np.sqrt((af * af).mean(-1, keepdims=True) + 1e-5) * as_f64(w)
    ln = (x - mc.mean(x, axis=-1, keepdims=True)) * mc.rsqrt(
        mc.var(x, axis=-1, keepdims=True) + 1e-5) * mc.array(w) + mc.array(b)
    ln_ref = (af - af.mean(-1, keepdims=True)) / np.sqrt(af.var(-1, keepdims=True) + 1e-5) \
        * as_f64(w) + as_f64(b)
    la, lb = rand((16, 3), "float32"), rand((3, 5), "float32")
    lora = (x @ mc.array(la)) @ mc.array(lb) * 0.5
    lora_ref = (af @ as_f64(la)) @ as_f64(lb) * 0.5
    mc.eval(rms, ln, lora)
    assert_close(rms, rms_ref, "rsqrt", "float32")
    assert_close(ln, ln_ref, "rsqrt", "float32")
    assert_close(lora, lora_ref, "matmul", "float32")


def test_rewrite_keeps_intermediates_the_user_holds(rand):
    a = rand((3, 6), "float32")
    x = mc.array(a)
    m = mc.max(x, axis=-1, keepdims=True)
    e = mc.exp(x - m)                      # held: must be computed even if a rewrite fires
    s = e / mc.sum(e, axis=-1, keepdims=True)
    s.eval()
    assert e.is_evaluated and m.is_evaluated
    af = as_f64(a)
    assert_close(e, np.exp(af - af.max(-1, keepdims=True)), "exp", "float32")
    assert_close(m, af.max(-1, keepdims=True), "max", "float32")
    assert_close(s, _np_softmax(af, -1), "exp", "float32")
    # and the same graph shape with nothing held gives the same values
    np.testing.assert_allclose(_softmax(mc.array(a), -1).numpy(), s.numpy(), rtol=1e-6,
                               atol=1e-7)


def test_dying_buffers_are_donated_and_held_ones_are_not(rand):
    """An elementwise node writes into its input's buffer when nothing else holds it; a tensor the
    user holds (or an evaluated leaf) is never overwritten."""
    a = rand((257,), "float32")
    x = mc.array(a)
    held = mc.exp(x) * 0.5
    y = held
    for _ in range(6):
        y = mc.tanh(y) + 1
    before = mc._executor_stats()["donated"]
    mc.eval(y)
    if mc.default_device() == "cpu":   # (metal pools device buffers instead of donating)
        assert mc._executor_stats()["donated"] - before >= 10
    ref = np.exp(a.astype(np.float64)) * 0.5
    np.testing.assert_allclose(np.asarray(held), ref, rtol=1e-6)
    for _ in range(6):
        ref = np.tanh(ref) + 1
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(x), a)


def test_threads_evaluating_one_shared_pending_graph(device, rand):
    # Planning is serialized (scratch fields of shared nodes), the runs overlap; every thread
    # gets the right value and nothing crashes (this used to write out of bounds).
    a = rand((24, 24), "float32")
    x = mc.array(a)
    mc.eval(x)
    ref = as_f64(a)
    for i in range(12):
        ref = np.tanh(ref @ as_f64(a) * 0.01) + ref if i % 2 else ref * 2.0 - 1.0
    for _ in range(5 if device == "cpu" else 2):
        y = x
        for i in range(12):
            y = mc.tanh(y @ x * 0.01) + y if i % 2 else y * 2.0 - 1.0
        got = [None] * 4

        def work(j):
            got[j] = np.array(y.numpy())
        run_threads(work)
        for g in got:
            np.testing.assert_allclose(g, ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("n", [3, 100_000])            # C fast path, NumPy path
def test_ieee_results_without_warnings_and_errstate_restored(device, n, spy):
    import warnings
    before = np.geterr()
    z = mc.array(np.zeros(n, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = (mc.log(z) + z / z).numpy()      # -inf + nan
        assert np.isnan(r).all()
        spy.fail("sum")                       # a failing eval leaves errstate as it was too
        with pytest.raises(RuntimeError):
            mc.eval(mc.sum(z / z))
    assert np.geterr() == before

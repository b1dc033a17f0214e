"""The thread rule of docs/reliability.md, pattern by pattern, with 4 threads on every device:
evaluated tensors are shared read-only (values, tolist, item, repr, np.asarray from all threads at
once, while others build on them); building new graphs from shared evaluated inputs is fine; a
pending graph may be handed to another thread, which evaluates it (one evaluating thread per
pending graph at a time); and the results a thread evaluated may then be shared read-only."""
import queue

import numpy as np
import pytest

import metalcandle as mc
from helpers import as_f64, run_threads

pytestmark = pytest.mark.usefixtures("device", "fusion_restored")


def _sm(v):
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_shared_evaluated_tensors_are_read_while_other_threads_build_on_them(device, rand):
    iters = 8 if device == "metal" else 60
    base = rand((16, 24), "float32")
    keep = base.copy()
    x = mc.exp(mc.asarray(base) * 0.1)
    w = mc.array(rand((24, 8), "float32"))
    mc.eval(x, w)
    xv, wv = np.asarray(x).copy(), np.asarray(w).copy()
    x64, w64 = as_f64(xv), as_f64(wv)

    def work(k):
        for i in range(iters):
            if k % 2:                                # readers
                assert np.array_equal(np.asarray(x), xv) and x.tolist() == xv.tolist()
                assert x[0, 0].item() == float(xv[0, 0]) and "tensor(" in repr(w)
            else:                                    # builders and evaluators
                y = mc.softmax(x @ w * (k + 1), axis=-1) + i
                z = mc.sum(mc.tanh(x), axis=0)
                mc.eval(y, z)
                np.testing.assert_allclose(as_f64(np.asarray(y)), _sm(x64 @ w64 * (k + 1)) + i,
                                           rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(as_f64(np.asarray(z)), np.tanh(x64).sum(0), rtol=1e-5)
    run_threads(work)
    assert np.array_equal(np.asarray(x), xv) and np.array_equal(np.asarray(w), wv)
    assert np.array_equal(base, keep)


def evaluated_on_device(a, scale):
    """An evaluated tensor computed on the current device (a * scale), and its float64 value."""
    t = mc.asarray(a) * scale
    t.eval()
    return t, as_f64(np.asarray(t))


def test_pending_graphs_handed_to_other_threads_for_evaluation(device, rand):
    n = 6 if device == "metal" else 40
    x, x64 = evaluated_on_device(rand((8, 12), "float32"), 1.0)
    todo, done = queue.Queue(), queue.Queue()

    def work(k):
        if k < 2:                                    # producers: build, never evaluate
            for i in range(n):
                y = mc.fast.rms_norm(x * (i + 1), None, 1e-5) + mc.mean(x, axis=0) * k
                todo.put((k, i, y))
        else:                                        # consumers: each graph evaluated once
            for _ in range(n):
                kk, i, y = todo.get(timeout=60)
                y.eval()
                done.put((kk, i, y))
    run_threads(work)
    results = [done.get() for _ in range(done.qsize())]
    assert len(results) == 2 * n
    for k, i, y in results:
        v = x64 * (i + 1)
        ref = v / np.sqrt((v * v).mean(-1, keepdims=True) + 1e-5) + x64.mean(0) * k
        np.testing.assert_allclose(as_f64(np.asarray(y)), ref, rtol=1e-5, atol=1e-5)
    # the results, evaluated by other threads, are now shared read-only by all four
    total = sum(as_f64(np.asarray(y)).sum() for _, _, y in results)

    def read(k):
        assert sum(as_f64(np.asarray(y)).sum() for _, _, y in results) == total
        t = mc.stack([y for _, _, y in results]).sum()
        assert abs(t.item() - total) <= 1e-3 * abs(total) + 1e-2
    run_threads(read)


def test_each_thread_evaluates_its_own_graphs_over_shared_inputs(device, rand):
    iters = 6 if device == "metal" else 50
    shared, s64 = evaluated_on_device(rand((32, 32), "float32"), 0.5)

    def work(k):
        own = mc.array(np.full((32, 32), k + 1, np.float32))
        for i in range(iters):
            h = mc.tanh(shared @ own * 0.01 + i)        # a pending chain only this thread sees
            e = mc.exp(h - mc.max(h, axis=-1, keepdims=True))
            y = e / mc.sum(e, axis=-1, keepdims=True)     # fusion rewrites it to softmax
            y.eval()
            ref = _sm(np.tanh(s64 @ np.full((32, 32), k + 1.0) * 0.01 + i))
            np.testing.assert_allclose(as_f64(np.asarray(y)), ref, rtol=1e-5, atol=1e-7)
    run_threads(work)
    assert np.array_equal(np.asarray(shared), s64.astype(np.float32))

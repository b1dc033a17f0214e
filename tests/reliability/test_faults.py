"""Fault injection: a primitive's implementation raises in the middle of a graph (ImplSpy.fail).
``eval`` raises that exception (with a note naming the op), every requested tensor stays pending
with its inputs, held intermediates are not half-committed, the user's input buffers are intact,
and evaluating again after the fault is removed gives the right values."""
import numpy as np
import pytest

import metalcandle as mc
from metalcandle import errors as E
from helpers import ImplSpy, as_f64

pytestmark = pytest.mark.usefixtures("device", "fusion_restored")


def _sm(a, ax=-1):
    e = np.exp(a - a.max(axis=ax, keepdims=True))
    return e / e.sum(axis=ax, keepdims=True)


# name of the primitive that fails -> (builder on a (4, 6) float32 tensor, float64 reference)
MID = {
    "matmul": (lambda a: a @ mc.ones((6, 5)), lambda a: a @ np.ones((6, 5))),
    "sum": (lambda a: mc.sum(a, axis=1, keepdims=True) * a, lambda a: a.sum(1, keepdims=True) * a),
    "transpose": (lambda a: a.T.reshape(4, 6) * 1.5, lambda a: a.T.reshape(4, 6) * 1.5),
    "getitem": (lambda a: a[::-1, 1:5:2] + 1, lambda a: a[::-1, 1:5:2] + 1),
    "concatenate": (lambda a: mc.concatenate([a, a * 2], axis=0), lambda a: np.concatenate(
        [a, a * 2], 0)),
    "softmax": (lambda a: mc.softmax(a, axis=-1), _sm),
    "rms_norm": (lambda a: mc.fast.rms_norm(a, mc.ones((6,)), 1e-5),
                 lambda a: a / np.sqrt((a * a).mean(-1, keepdims=True) + 1e-5)),
    "layer_norm": (lambda a: mc.fast.layer_norm(a, None, None, 1e-5), lambda a: (
        a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + 1e-5)),
    "var": (lambda a: mc.var(a, axis=0), lambda a: a.var(0)),
    "take": (lambda a: mc.take(a, mc.array([3, 0, 0]), axis=0), lambda a: a[[3, 0, 0]]),
    "argmax": (lambda a: mc.argmax(a, axis=1).astype(mc.float32) + a[:, 0],
               lambda a: a.argmax(1) + a[:, 0]),
}
FAULTS = {"runtime": (RuntimeError, "injected backend failure"),
          "memory": (MemoryError, "injected: out of memory"),
          "device-oom": (E.DeviceOutOfMemory, "injected: mc_buffer_alloc failed"),
          "command-buffer": (E.CommandBufferError, "injected: command buffer failed"),
          "value": (ValueError, "injected bad value")}


def build(rand, mid):
    """x (user's buffer) -> a (held) -> mid (fails) -> b -> root; returns tensors and refs."""
    base = rand((4, 6), "float32")
    keep = base.copy()
    x = mc.asarray(base)
    a = mc.tanh(x) * 2 + 0.5                        # held by the user: computed before the fault
    m = MID[mid][0](a)
    b = m * 3 - 1
    root = mc.sum(b)
    ra = np.tanh(as_f64(base)) * 2 + 0.5
    rb = MID[mid][1](ra) * 3 - 1
    return base, keep, x, (a, m, b, root), (ra, MID[mid][1](ra), rb, rb.sum())


def assert_values(ts, refs):
    for t, r in zip(ts, refs):
        np.testing.assert_allclose(as_f64(np.asarray(t)), r, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("mid", MID)
@pytest.mark.parametrize("fusion", [True, False], ids=["fusion", "nofusion"])
def test_fault_in_the_middle_leaves_everything_pending(mid, fusion, rand):
    # each failing op gets two of the fault kinds (fusion on, fusion off): all kinds are covered
    fault = list(FAULTS)[(list(MID).index(mid) * 2 + fusion) % len(FAULTS)]
    mc.set_fusion(fusion)
    base, keep, x, ts, refs = build(rand, mid)
    a, m, b, root = ts
    inputs = [t._inputs for t in ts]
    exc_type, text = FAULTS[fault]
    spy = ImplSpy()
    try:
        for request in ([root], [root, b], [a, root], [m]):
            spy.fail(mid, exc_type(text))               # a fresh instance: notes do not pile up
            with pytest.raises(exc_type) as info:
                mc.eval(*request)
            assert "injected" in str(info.value)
            notes = getattr(info.value, "__notes__", [])
            assert len(notes) == 1 and mid in notes[0], f"expected a note naming {mid}: {notes}"
            assert not any(t.is_evaluated for t in ts), "a tensor was committed by a failed eval"
            assert all(u == v and all(p is q for p, q in zip(u, v))
                       for u, v in zip(inputs, (t._inputs for t in ts))), "inputs were dropped"
            assert np.array_equal(base, keep), "the user's buffer was written to"
        assert mid in spy.calls
    finally:
        spy.restore()
    mc.eval(root)
    assert root.is_evaluated and a.is_evaluated and b.is_evaluated
    assert_values(ts, refs)
    assert np.array_equal(base, keep) and np.array_equal(np.asarray(x), keep)


def test_fault_after_donation_keeps_user_buffers(rand):
    base = rand((64, 64), "float32")
    keep = base.copy()
    x = mc.asarray(base)
    y = x
    for i in range(30):                          # dying intermediates are donated along the chain
        y = mc.exp(y * 0.01) if i % 3 == 0 else y * 1.0001 + 0.25
    z = mc.sum(y @ mc.ones((64, 2)), axis=0)
    spy = ImplSpy().fail("matmul", RuntimeError("injected"))
    try:
        with pytest.raises(RuntimeError):
            z.eval()
    finally:
        spy.restore()
    assert np.array_equal(base, keep) and not z.is_evaluated and not y.is_evaluated
    ref = as_f64(base)
    for i in range(30):
        ref = np.exp(ref * 0.01) if i % 3 == 0 else ref * 1.0001 + 0.25
    np.testing.assert_allclose(np.asarray(z), (ref @ np.ones((64, 2))).sum(0), rtol=1e-4)
    assert np.array_equal(base, keep)


@pytest.mark.parametrize("where", ["first", "last"])
def test_fault_at_the_ends_of_a_deep_chain(where, rand):
    a = rand((8,), "float32")
    x = mc.array(a)
    h = mc.transpose(x.reshape(2, 4)).reshape(8) if where == "first" else x
    y = h
    for _ in range(2000):
        y = y + 0.5
    z = mc.sum(y) if where == "last" else y
    spy = ImplSpy().fail("transpose" if where == "first" else "sum", MemoryError("injected"))
    try:
        with pytest.raises(MemoryError):
            z.eval()
        assert not z.is_evaluated and not y.is_evaluated and h.is_evaluated == (h is x)
    finally:
        spy.restore()
    ref = a.reshape(2, 4).T.reshape(8).astype(np.float64) if where == "first" else as_f64(a)
    ref = ref + 1000.0
    np.testing.assert_allclose(as_f64(np.asarray(z)), ref.sum() if where == "last" else ref,
                               rtol=1e-5)


def test_interrupt_during_eval_leaves_graph_pending(rand):
    # KeyboardInterrupt is a BaseException: the commit-or-nothing rule must hold for it too.
    a = rand((3, 4), "float32")
    held = mc.exp(mc.array(a))
    z = mc.sum(held @ mc.ones((4, 4)))
    spy = ImplSpy().fail("matmul", KeyboardInterrupt())
    try:
        with pytest.raises(KeyboardInterrupt):
            mc.eval(z, held)
        assert not z.is_evaluated and not held.is_evaluated and len(z._inputs) == 1
    finally:
        spy.restore()
    np.testing.assert_allclose(z.item(), (np.exp(as_f64(a)) @ np.ones((4, 4))).sum(), rtol=1e-5)


def test_handwritten_softmax_fails_in_fused_primitive_then_recovers(rand):
    # With fusion on, the composite runs as the fused primitive: its failure must not leave the
    # rewritten inner nodes half-done; with the fault gone (or fusion off) the value is right.
    mc.set_fusion(True)
    a = rand((5, 7), "float32")
    x = mc.array(a)
    e = mc.exp(x - mc.max(x, axis=-1, keepdims=True))
    y = e / mc.sum(e, axis=-1, keepdims=True)
    del e
    spy = ImplSpy().fail("softmax", RuntimeError("injected")).fail("divide", RuntimeError("x"))
    try:
        with pytest.raises(RuntimeError):
            y.eval()
        assert not y.is_evaluated
    finally:
        spy.restore()
    np.testing.assert_allclose(as_f64(np.asarray(y)), _sm(as_f64(a)), rtol=1e-5, atol=1e-7)


def test_failed_eval_of_one_graph_does_not_affect_a_sibling(rand):
    a = rand((4, 4), "float32")
    shared = mc.exp(mc.array(a))                      # held, feeds both graphs
    bad = mc.sum(shared @ shared)
    good = mc.max(shared, axis=0)
    spy = ImplSpy().fail("matmul", RuntimeError("injected"))
    try:
        with pytest.raises(RuntimeError):
            mc.eval(good, bad)
        assert not good.is_evaluated and not shared.is_evaluated
        mc.eval(good)                                  # no matmul needed: succeeds under the fault
    finally:
        spy.restore()
    assert good.is_evaluated and shared.is_evaluated and not bad.is_evaluated
    np.testing.assert_allclose(np.asarray(good), np.exp(as_f64(a)).max(0), rtol=1e-6)
    np.testing.assert_allclose(bad.item(), (np.exp(as_f64(a)) @ np.exp(as_f64(a))).sum(),
                               rtol=1e-5)


# ---------------------------------------------------------------- found by the random graphs

def test_pattern_whose_inner_node_was_evaluated_earlier(rand):
    # Random graph seed 59 (first version of the generator): fusion's softmax matcher indexed
    # s.inputs[0] of an already evaluated (detached) sum and raised IndexError inside eval.
    mc.set_fusion(True)
    a = rand((2, 4), "float32")
    x = mc.array(a)
    e = mc.exp(x - mc.max(x, axis=-1, keepdims=True))
    s = mc.sum(e, axis=-1, keepdims=True)
    y = e / s
    del e
    s.eval()
    np.testing.assert_allclose(as_f64(np.asarray(y)), _sm(as_f64(a)), rtol=1e-5, atol=1e-7)


def test_cast_of_a_strided_view_of_a_computed_bool(rand):
    # Random graph seed 68 (first version) on Metal: astype of a transposed, already evaluated
    # device bool dispatched copy_strided_from_bool_f32 with contiguous arguments.
    a = rand((2, 3), "bool")
    s = mc.logical_or(mc.array(a), False).T
    s.eval()
    assert s.astype(mc.float32).tolist() == a.T.astype(np.float32).tolist()


@pytest.mark.parametrize("weight", ["broadcast", "strided"])
def test_rms_norm_with_a_non_contiguous_weight(weight, rand):
    # Random graph seed 50082 on Metal: rms_norm read a broadcast (stride 0) or strided weight
    # as if it were contiguous (metal_backend._k_rows checks only x's layout).
    a = rand((4, 3), "float32")
    w = (mc.broadcast_to(mc.array(np.array([2.0], np.float32)), (3,)) if weight == "broadcast"
         else mc.array(np.array([1.0, 9.0, 2.0, 9.0, 3.0], np.float32))[::2])
    ref = as_f64(a) / np.sqrt((as_f64(a) ** 2).mean(-1, keepdims=True) + 1e-5) * (
        2.0 if weight == "broadcast" else np.array([1.0, 2.0, 3.0]))
    y = mc.fast.rms_norm(mc.array(a), w, 1e-5)
    np.testing.assert_allclose(as_f64(np.asarray(y)), ref, rtol=1e-5, atol=1e-6)

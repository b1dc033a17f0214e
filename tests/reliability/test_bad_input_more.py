"""More bad input: NumPy inputs that are not plain contiguous writeable arrays (strided views,
transposes, negative strides, broadcast views with zero strides, Fortran order, read-only arrays
and read-only memory) give NumPy's results and are never written to, on every op path (the CPU fast
path, NumPy with buffer donation, the Metal kernels); objects that are not arrays (sets,
generators, custom objects, None, ...) raise typed errors naming the op at build time."""
import numpy as np
import pytest

import metalcandle as mc
from helpers import as_f64
from reliability.test_bad_input import check, world  # noqa: F401 - the fixture is used below

pytestmark = pytest.mark.usefixtures("device", "fusion_restored")


def _ro(a):
    a = a.copy()
    a.setflags(write=False)
    return a


VIEWS = {
    "step2": lambda a: a[::2],
    "transpose": lambda a: a.T,
    "negative-steps": lambda a: a[::-1, ::-2],
    "offset-slice": lambda a: a[1:, 1:-1],
    "broadcast": lambda a: np.broadcast_to(a[:1], a.shape),
    "fortran": np.asfortranarray,
    "read-only": _ro,
    "read-only-transpose": lambda a: _ro(a).T,
    "read-only-bytes": lambda a: np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape),
}


def graphs(x):
    """Builders on one input tensor: elementwise chains (donation candidates), reductions,
    matmul, layout, fused ops and a cast; each with its float64 NumPy reference."""
    def sm(v):
        e = np.exp(v - v.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return [
        (mc.exp(x * 0.1) * 2 + 1, lambda v: np.exp(v * 0.1) * 2 + 1),
        ((x + 1) * (x - 1), lambda v: (v + 1) * (v - 1)),
        (mc.sum(x, axis=0) + mc.max(x), lambda v: v.sum(0) + v.max()),
        (x @ x.T, lambda v: v @ v.T),
        (x.T[::-1] * 3, lambda v: v.T[::-1] * 3),
        (mc.softmax(x, axis=-1), sm),
        (mc.fast.rms_norm(x, None, 1e-5), lambda v: v / np.sqrt((v * v).mean(-1, keepdims=True)
                                                                 + 1e-5)),
        (x.astype(mc.float16).astype(mc.float32) * 1, lambda v: v.astype(np.float16).astype(
            np.float64)),
    ]


@pytest.mark.parametrize("shape", [(6, 8), (256, 96)], ids=["small", "large"])
@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("maker", ["array", "asarray"])
def test_strided_and_read_only_inputs(view, shape, maker, rand):
    base = rand(shape, "float32")
    a = VIEWS[view](base)
    keep_a, keep_base = a.copy(), base.copy()
    flags = (a.flags.writeable, a.flags.c_contiguous, a.strides)
    x = getattr(mc, maker)(a)
    ref_in = as_f64(keep_a)
    cases = graphs(x)
    del x                                    # the leaf dies: the graphs hold the only reference
    mc.eval([t for t, _ in cases[::2]])      # half at once, the rest one by one
    for t, ref in cases:
        tol = 2e-3 if t.dtype == mc.float32 and ref is cases[-1][1] else 1e-4
        np.testing.assert_allclose(as_f64(np.asarray(t)), ref(ref_in), rtol=tol, atol=tol * 1e-2
                                   + 1e-5 * np.abs(ref_in).max() * (shape[1] if t.ndim else 1))
    assert np.array_equal(a, keep_a) and np.array_equal(base, keep_base), "input written to"
    assert (a.flags.writeable, a.flags.c_contiguous, a.strides) == flags


def test_read_only_input_survives_a_long_donating_chain(rand):
    base = _ro(rand((128, 160), "float32"))     # > the C fast path: NumPy with donation
    keep = base.copy()
    x = mc.asarray(base)
    y = x
    for i in range(40):
        y = mc.tanh(y) * 1.5 + 0.25 if i % 2 else y * 0.5 - x
    mc.eval(y)
    ref = as_f64(keep)
    r = ref
    for i in range(40):
        r = np.tanh(r) * 1.5 + 0.25 if i % 2 else r * 0.5 - ref
    np.testing.assert_allclose(as_f64(np.asarray(y)), r, rtol=1e-4, atol=1e-5)
    assert np.array_equal(base, keep) and not base.flags.writeable
    assert np.array_equal(np.asarray(x), keep)


class Custom:
    """An object that is not an array and has no __array__."""


NOT_ARRAYS = {"set": lambda: {1.0, 2.0}, "frozenset": lambda: frozenset([1]),
              "generator": lambda: (i for i in range(2)), "custom": Custom, "None": lambda: None,
              "dict": lambda: {"a": 1}, "complex": lambda: 1j, "bytes": lambda: b"ab"}
BUILDERS = {
    "array": lambda y, o: mc.array(o), "asarray": lambda y, o: mc.asarray(o),
    "exp": lambda y, o: mc.exp(o), "sum": lambda y, o: mc.sum(o),
    "add": lambda y, o: mc.add(y, o), "multiply": lambda y, o: mc.multiply(o, y),
    "maximum": lambda y, o: mc.maximum(y, o), "matmul": lambda y, o: mc.matmul(y, o),
    "where": lambda y, o: mc.where(o, y, y), "concatenate": lambda y, o: mc.concatenate([y, o]),
    "stack": lambda y, o: mc.stack([y, o]), "reshape": lambda y, o: mc.reshape(o, (2,)),
    "transpose": lambda y, o: mc.transpose(o), "astype": lambda y, o: mc.astype(o, "float32"),
    "softmax": lambda y, o: mc.softmax(o), "layer_norm": lambda y, o: mc.fast.layer_norm(
        o, None, None, 1e-5), "take": lambda y, o: mc.take(y, o),
    "broadcast_to": lambda y, o: mc.broadcast_to(o, (2,)), "zeros_like": lambda y, o:
    mc.zeros_like(o),
}


@pytest.mark.parametrize("obj", NOT_ARRAYS)
def test_objects_that_are_not_arrays_raise_typed_errors_naming_the_op(obj, spy, world):  # noqa: F811
    for op, build in BUILDERS.items():
        check(spy, world, mc.errors.MetalcandleError,
              lambda y, yi, yb: build(y, NOT_ARRAYS[obj]()), (op,))


@pytest.mark.parametrize("obj", ["set", "generator", "custom"])
def test_operators_with_non_array_objects_raise_type_error(obj, spy, world):  # noqa: F811
    for f in (lambda y, o: y + o, lambda y, o: o * y, lambda y, o: y @ o, lambda y, o: y >= o):
        check(spy, world, TypeError, lambda y, yi, yb: f(y, NOT_ARRAYS[obj]()), (), typed=False)

"""User mistakes raise typed errors from metalcandle.errors when the graph is *built*, naming the
op, the shapes and the dtypes; nothing runs, and the graph built before the mistake still works."""
import numpy as np
import pytest

import metalcandle as mc
from metalcandle import errors as E
from helpers import assert_close, as_f64

pytestmark = pytest.mark.usefixtures("device")


@pytest.fixture
def pending(rand):
    """A pending graph built before the mistake, and its reference value."""
    a = rand((2, 3), "float32")
    return mc.exp(mc.array(a)) * 2 + 1, np.exp(as_f64(a)) * 2 + 1


def _stats():
    st = mc._executor.stats()
    return st["evals"], st["nodes"]


def check_build_error(spy, pending, exc, fn, *needles, typed=True):
    """``fn(y)`` raises ``exc`` (a metalcandle.errors type when ``typed``) whose message contains
    every needle, without running anything; then the pending graph ``y`` still evaluates."""
    y, ref = pending
    was_evaluated = y.is_evaluated
    spy.count()
    before = _stats()
    with pytest.raises(exc) as info:
        fn(y)
    msg = str(info.value)
    if typed:
        assert isinstance(info.value, E.MetalcandleError), \
            f"{type(info.value).__name__} is not a MetalcandleError: {msg}"
    for n in needles:
        assert n in msg, f"{n!r} not in message {msg!r}"
    assert spy.calls == [] and _stats() == before, f"backend ran before the error: {spy.calls}"
    assert y.is_evaluated == was_evaluated
    spy.restore()
    assert_close(y, ref, "exp", "float32")
    return info.value


BROADCAST_CASES = [
    ("add", lambda y: y + mc.ones((4,)), ("add", "(2, 3)", "(4,)", "float32")),
    ("multiply", lambda y: mc.multiply(y, mc.ones((3, 3), mc.int8)),
     ("multiply", "(2, 3)", "(3, 3)", "float32", "int8")),
    ("less", lambda y: y < mc.zeros((2, 2), mc.float16),
     ("less", "(2, 3)", "(2, 2)", "float16")),
    ("maximum", lambda y: mc.maximum(mc.ones((5, 1, 4)), y),
     ("maximum", "(5, 1, 4)", "(2, 3)")),
    ("where", lambda y: mc.where(mc.ones((2, 4), mc.bool_), y, 0.0), ("where", "(2, 4)", "(2, 3)")),
    ("list", lambda y: y + [1.0, 2.0], ("add", "(2, 3)", "(2,)")),
]


@pytest.mark.parametrize("case", BROADCAST_CASES, ids=lambda c: c[0])
def test_mismatched_broadcast(case, spy, pending):
    e = check_build_error(spy, pending, E.BroadcastError, case[1], *case[2])
    assert isinstance(e, ValueError) and isinstance(e, E.ShapeError)


@pytest.mark.parametrize("other, needles", [
    (mc.ones((4, 5)), ("matmul", "(2, 3)", "(4, 5)", "float32")),
    (mc.ones((2,), mc.float16), ("matmul", "(2, 3)", "(2,)", "float16")),
    (mc.ones((7, 4, 2)), ("matmul", "(2, 3)", "(7, 4, 2)")),
    (mc.array(1.0), ("matmul", "()", "(2, 3)")),
])
def test_bad_matmul(other, needles, spy, pending):
    def build(y):
        return other @ y if other.ndim == 0 else y @ other
    check_build_error(spy, pending, E.ShapeError, build, *needles)


def test_bad_matmul_batch(spy, pending):
    check_build_error(spy, pending, E.BroadcastError,
                      lambda y: mc.ones((4, 2, 3)) @ mc.ones((5, 3, 2)),
                      "matmul", "(4, 2, 3)", "(5, 3, 2)", "float32")


@pytest.mark.parametrize("build, op", [
    (lambda y: y.sum(axis=2), "sum"), (lambda y: mc.mean(y, axis=-3), "mean"),
    (lambda y: mc.argmax(y, axis=5), "argmax"), (lambda y: mc.max(y, axis=(0, 2)), "max"),
    (lambda y: mc.swapaxes(y, 0, 2), "swapaxes"), (lambda y: mc.moveaxis(y, 3, 0), "moveaxis"),
    (lambda y: mc.concatenate([y, y], axis=2), "concatenate"),
    (lambda y: mc.stack([y, y], axis=4), "stack"), (lambda y: mc.split(y, 1, axis=-3), "split"),
    (lambda y: mc.take(y, [0], axis=2), "take"), (lambda y: mc.squeeze(y, 2), "squeeze"),
    (lambda y: mc.expand_dims(y, 4), "expand_dims"),
    (lambda y: mc.var(y, axis=2), "var"), (lambda y: mc.logsumexp(y, axis=-4), "logsumexp"),
])
def test_bad_axis(build, op, spy, pending):
    e = check_build_error(spy, pending, E.AxisError, build, op)
    assert isinstance(e, IndexError) and isinstance(e, ValueError)



@pytest.mark.parametrize("build, op", [
    (lambda y: y.sum(axis=2), "sum"), (lambda y: mc.swapaxes(y, 0, 2), "swapaxes"),
    (lambda y: mc.concatenate([y, y], axis=2), "concatenate"),
])
def test_bad_axis_message_names_shape_and_dtype(build, op, spy, pending):
    check_build_error(spy, pending, E.AxisError, build, op, "(2, 3)", "float32")


@pytest.mark.parametrize("target", [(4, 2), (-1, 4), (7,), (2, -1, -1), (-2, 3), (0, -1)],
                         ids=str)
def test_bad_reshape(target, spy, pending):
    check_build_error(spy, pending, E.ShapeError, lambda y: y.reshape(target), "reshape",
                      "(2, 3)", "float32", str(target).replace(" ", "")[:2])


def test_bad_reshape_message_has_everything(spy, pending):
    check_build_error(spy, pending, E.ShapeError, lambda y: y.reshape(4, 2), "reshape", "(2, 3)",
                      "float32", "6 elements", "(4, 2)")


@pytest.mark.parametrize("obj", [["a", "b"], "text", b"bytes", [1 + 2j], np.array([1 + 1j]),
                                 np.array([object()], dtype=object), np.array([1], np.uint64),
                                 np.array(["x"]), np.array([1], "datetime64[s]"),
                                 [[1, 2], [3, "x"]]], ids=repr)
def test_unsupported_element_types(obj, spy, pending):
    e = check_build_error(spy, pending, E.DTypeError, lambda y: mc.array(obj), "array")
    assert isinstance(e, TypeError)
    with pytest.raises(E.DTypeError):
        mc.asarray(obj)


def test_uint64_message_suggests_alternative(spy, pending):
    check_build_error(spy, pending, E.DTypeError, lambda y: mc.array(np.ones(3, np.uint64)),
                      "uint64", "int64")


@pytest.mark.parametrize("dtype", ["uint64", "complex64", "string", np.complex128, object, "int4",
                                   str], ids=repr)
def test_unsupported_dtype_spec(dtype, spy, pending):
    for build in (lambda y: mc.zeros((2,), dtype), lambda y: y.astype(dtype),
                  lambda y: mc.array([1, 2], dtype=dtype), lambda y: mc.arange(3, dtype=dtype)):
        check_build_error(spy, pending, E.DTypeError, build)
    check_build_error(spy, pending, E.DTypeError, lambda y: y.astype(dtype), "astype")


@pytest.mark.parametrize("build, op", [
    (lambda y: y.astype(mc.bool_) - mc.ones((2, 3), mc.bool_), "subtract"),
    (lambda y: -y.astype(mc.bool_), "negative"),
    (lambda y: mc.sign(y.astype(mc.bool_)), "sign"),
    (lambda y: ~y, "invert"), (lambda y: y & y, "logical_and"),
    (lambda y: y.astype(mc.int32) | y.astype(mc.bool_), "logical_or"),
    (lambda y: mc.take(y, mc.array([0.5])), "take"),
    (lambda y: mc.take_along_axis(y, y, 1), "take_along_axis"),
    (lambda y: mc.random.uniform(shape=(2,), dtype=mc.int32), "uniform"),
    (lambda y: mc.random.randint(0, 3, (2,), dtype=mc.float32), "randint"),
])
def test_bad_dtype_for_op(build, op, spy, pending):
    check_build_error(spy, pending, E.DTypeError, build, op)


def test_bool_op_message_has_shape_and_dtype(spy, pending):
    check_build_error(spy, pending, E.DTypeError,
                      lambda y: mc.power(y.astype(mc.bool_), mc.ones((2, 3), mc.bool_)), "power",
                      "(2, 3)", "bool")


@pytest.mark.parametrize("obj", [[[1, 2], [3]], [1, [2, 3]], [[[1], [2]], [[3]]]], ids=repr)
def test_ragged_lists(obj, spy, pending):
    check_build_error(spy, pending, E.ShapeError, lambda y: mc.array(obj), "array", "ragged")


@pytest.mark.parametrize("build, op", [
    (lambda y: mc.zeros((2 ** 40, 2 ** 40)), "zeros"),
    (lambda y: mc.ones((2 ** 31, 2 ** 31, 4)), "ones"),
    (lambda y: mc.full((2 ** 62, 2 ** 62), 1.0), "full"),
    (lambda y: mc.broadcast_to(y, (2 ** 40, 2 ** 40, 3)), "broadcast_to"),
    (lambda y: mc.random.normal((2 ** 33, 2 ** 33)), "random"),
    (lambda y: mc.eye(2 ** 40, 2 ** 40), "eye"),
    (lambda y: mc.reshape(y, (2 ** 40, 2 ** 40, 0)), "reshape"),
])
def test_element_count_overflow(build, op, spy, pending):
    check_build_error(spy, pending, E.ShapeError, build, op)



@pytest.mark.parametrize("shape", [(2 ** 100,), (2 ** 64, 1), (1, 2 ** 63)], ids=str)
def test_huge_dimension_is_an_error_not_clamped(shape, spy, pending):
    # A dimension beyond 2**62 must be refused, not silently replaced by 2**62.
    check_build_error(spy, pending, E.ShapeError, lambda y: mc.zeros(shape), "zeros")


@pytest.mark.parametrize("shape, dtype", [
    ((2 ** 62,), "float32"), ((2 ** 61,), "float64"), ((2 ** 31, 2 ** 31), "int64"),
    ((2 ** 60, 2), "int16"), ((2 ** 40,), "float64")], ids=str)
def test_byte_count_overflow(shape, dtype):
    # Either the shape is refused, or nbytes is the true byte count (never a wrapped value).
    try:
        t = mc.zeros(shape, dtype)
    except E.ShapeError:
        return
    assert t.nbytes == t.size * t.itemsize


@pytest.mark.parametrize("build, op", [
    (lambda y: mc.zeros((-1, 2)), "zeros"), (lambda y: mc.ones((3, -2)), "ones"),
    (lambda y: mc.full((-5,), 1.0), "full"), (lambda y: mc.random.uniform(shape=(-1,)), "random"),
    (lambda y: mc.broadcast_to(y, (-2, 3)), "broadcast_to"), (lambda y: mc.eye(-1), "eye"),
    (lambda y: y.reshape(-3, -2), "reshape"),
])
def test_negative_dims(build, op, spy, pending):
    check_build_error(spy, pending, E.ShapeError, build, op)


def test_too_many_dims(spy, pending):
    check_build_error(spy, pending, E.ShapeError, lambda y: mc.zeros((1,) * 17), "zeros", "17")


@pytest.mark.parametrize("key", [(0, 0, 0), (0, 1, Ellipsis, 2), (None, 0, 0, 0)], ids=repr)
def test_too_many_indices(key, spy, pending):
    e = check_build_error(spy, pending, IndexError, lambda y: y[key], "getitem", "too many",
                          "(2, 3)", "float32", typed=False)
    assert isinstance(e, IndexError)


@pytest.mark.parametrize("key", [2, -3, (0, 3), (slice(None), -4)], ids=repr)
def test_index_out_of_bounds(key, spy, pending):
    check_build_error(spy, pending, IndexError, lambda y: y[key], "getitem", "out of bounds",
                      "(2, 3) float32", typed=False)


@pytest.mark.parametrize("build", [lambda y: mc.take(y, [0, 3], axis=1),
                                   lambda y: mc.take(y, mc.array([-7]), axis=None),
                                   lambda y: mc.take(y, np.array([[2, 0]]), axis=0)])
def test_take_with_known_indices_checks_bounds_when_built(build, spy, pending):
    check_build_error(spy, pending, IndexError, build, "take", "out of bounds", "(2, 3)",
                      "float32")


@pytest.mark.parametrize("build,needles", [
    (lambda y: mc.expand_dims(y, 4), ("expand_dims", "axis 4", "(2, 3) float32")),
    (lambda y: mc.transpose(y, (1, 1)), ("transpose", "repeated", "(2, 3) float32")),
    (lambda y: mc.random.bernoulli(1.5, (2,)), ("bernoulli", "[0, 1]", "1.5")),
    (lambda y: mc.fast.scaled_dot_product_attention(
        mc.ones((1, 3, 4, 8)), mc.ones((1, 2, 4, 8)), mc.ones((1, 2, 4, 8)), scale=1.0),
     ("scaled_dot_product_attention", "(1, 3, 4, 8)", "(1, 2, 4, 8)", "float32")),
], ids=["expand_dims", "transpose", "bernoulli", "sdpa_heads"])
def test_messages_name_the_tensor(build, needles, spy, pending):
    check_build_error(spy, pending, (ValueError, IndexError), build, *needles)


@pytest.mark.parametrize("key", [(Ellipsis, Ellipsis), 1.5, "a", ([0], 1)], ids=repr)
def test_unsupported_index(key, spy, pending):
    check_build_error(spy, pending, IndexError, lambda y: y[key], "getitem", typed=False)


def test_boolean_mask_index_explains_itself(spy, pending):
    check_build_error(spy, pending, IndexError, lambda y: y[y > 1.0], "getitem", "boolean mask",
                      "(2, 3) float32", "(2, 3) bool", "mc.where")


def test_weak_scalar_overflow_names_op_and_dtype(spy, pending):
    def build(y):
        return y.astype(mc.int8) + 300
    spy.count()
    with pytest.raises(OverflowError) as info:
        build(pending[0])
    assert "add" in str(info.value) and "int8" in str(info.value) and "300" in str(info.value)
    assert spy.calls == []
    spy.restore()
    assert_close(pending[0], pending[1], "exp", "float32")


MISUSE = {
    "repeated_axis": (ValueError, lambda y: mc.sum(y, axis=(0, 0))),
    "clip_no_bounds": (ValueError, lambda y: mc.clip(y)),
    "concatenate_empty": (ValueError, lambda y: mc.concatenate([])),
    "arange_step0": (ValueError, lambda y: mc.arange(0, 4, 0)),
    "split_zero": (ValueError, lambda y: mc.split(y, 0)),
    "linspace_negative": (ValueError, lambda y: mc.linspace(0, 1, -2)),
    "gelu_mode": (ValueError, lambda y: mc.gelu(y, approximate="fast")),
    "unknown_device": (ValueError, lambda y: mc.set_default_device("tpu")),
    "too_many_indices": (IndexError, lambda y: y[0, 0, 0]),
    "index_out_of_bounds": (IndexError, lambda y: y[5]),
    "two_ellipses": (IndexError, lambda y: y[..., ...]),
    "float_index": (IndexError, lambda y: y[1.5]),
    "full_fill_string": (TypeError, lambda y: mc.full((2,), "a")),
    "ddof_float": (TypeError, lambda y: mc.var(y, ddof=0.5)),
    "axis_float": (TypeError, lambda y: mc.sum(y, axis=1.0)),
    "shape_float": (TypeError, lambda y: mc.zeros((2.0, 3))),
}


@pytest.mark.parametrize("case", MISUSE)
def test_other_misuse(case, spy, pending):
    exc, build = MISUSE[case]
    check_build_error(spy, pending, exc, build, typed=False)


@pytest.mark.parametrize("case", MISUSE)
def test_every_deliberate_error_is_a_metalcandle_error(case, spy, pending):
    # errors.py: MetalcandleError is the "base class of every error metalcandle raises on purpose"
    exc, build = MISUSE[case]
    check_build_error(spy, pending, exc, build)


def test_error_hierarchy():
    assert issubclass(E.AxisError, IndexError) and issubclass(E.AxisError, E.ShapeError)
    assert issubclass(E.BroadcastError, E.ShapeError) and issubclass(E.ShapeError, ValueError)
    assert issubclass(E.DTypeError, TypeError)
    assert issubclass(E.DeviceOutOfMemory, MemoryError) and issubclass(E.NoDeviceError,
                                                                         E.DeviceError)
    for name in E.__all__:
        assert issubclass(getattr(E, name), E.MetalcandleError)

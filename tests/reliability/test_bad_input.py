"""Bad input, op family by op family: wrong shapes, dtypes, axes, strings, ragged lists and
overflowing shapes raise the typed errors of metalcandle.errors when the expression is *built*
(no backend call, no eval), the message names the op (and the shapes and dtypes involved), and
tensors built before the mistake -- pending or evaluated -- still evaluate to the right values."""
import gc

import numpy as np
import pytest

import metalcandle as mc
from metalcandle import errors as E
from helpers import BINARY, assert_close, as_f64

pytestmark = pytest.mark.usefixtures("device")

F, I, B = "(2, 3) float32", "(2, 3) int32", "(2, 3) bool"


@pytest.fixture
def world(rand):
    """Operands for the bad expressions, and tensors built before them with their references."""
    a, i = rand((2, 3), "float32"), rand((2, 3), "int32")
    x = mc.array(a)
    done = mc.tanh(x) + 1                       # evaluated before the mistake
    done.eval()
    y = mc.exp(x) * 2 + 1                       # pending float32 (2, 3)
    yi = mc.array(i) * 3                        # pending int32 (2, 3)
    yb = y > 3.0                                # pending bool (2, 3)
    red = mc.sum(y @ mc.ones((3, 4)), axis=0)   # pending, a few ops deep
    e = np.exp(as_f64(a)) * 2 + 1
    refs = [(done, np.tanh(as_f64(a)) + 1, "tanh", "float32"), (y, e, "exp", "float32"),
            (yi, i.astype(np.int64) * 3, "multiply", "int32"), (yb, e > 3.0, "greater", "bool"),
            (red, (e @ np.ones((3, 4))).sum(axis=0), "sum", "float32")]
    return (y, yi, yb), refs


def _evals():
    return mc._executor.stats()["evals"]


def check(spy, world, exc, fn, needles, typed=True):
    """``fn(y, yi, yb)`` raises ``exc`` at build time with every needle in the message."""
    ops, refs = world
    was = [t.is_evaluated for t, *_ in refs]
    spy.count()
    before = _evals()
    with pytest.raises(exc) as info:
        fn(*ops)
    msg = str(info.value)
    if typed:
        assert isinstance(info.value, E.MetalcandleError), f"untyped {type(info.value)}: {msg}"
    for n in needles:
        assert n in msg, f"{n!r} missing from the message {msg!r}"
    assert spy.calls == [] and _evals() == before, f"something ran at build time: {spy.calls}"
    spy.restore()
    assert [t.is_evaluated for t, *_ in refs] == was, "the mistake evaluated something"
    assert was[1:] == [False] * 4 or was == [True] * 5
    for t, ref, op, dt in refs:
        assert_close(t, ref, op, dt)


def _cases():
    c = []
    for op in BINARY:
        c.append((f"broadcast-{op}", E.BroadcastError,
                  lambda y, yi, yb, op=op: getattr(mc, op)(y, mc.ones((4,), mc.float16)),
                  (op, "(2, 3)", "(4,)", "float32", "float16")))
    for op in ("subtract", "floor_divide", "remainder", "power"):
        c.append((f"bool-{op}", E.DTypeError,
                  lambda y, yi, yb, op=op: getattr(mc, op)(yb, yb), (op, "(2, 3)", "bool")))
    for op in ("negative", "sign"):
        c.append((f"bool-{op}", E.DTypeError, lambda y, yi, yb, op=op: getattr(mc, op)(yb),
                  (op, B)))
    for op in ("sum", "mean", "prod", "max", "min", "argmax", "argmin", "var", "std",
               "logsumexp", "all", "any"):
        c.append((f"axis-{op}", E.AxisError, lambda y, yi, yb, op=op: getattr(mc, op)(y, axis=2),
                  (op, F)))
        c.append((f"axis-neg-{op}", E.AxisError,
                  lambda y, yi, yb, op=op: getattr(mc, op)(y, axis=-3), (op, F)))
        c.append((f"axis-str-{op}", E.ArgumentTypeError,
                  lambda y, yi, yb, op=op: getattr(mc, op)(y, axis="0"), (op, "'0'")))
        if not op.startswith("arg"):
            c.append((f"axis-repeated-{op}", E.ArgumentError,
                      lambda y, yi, yb, op=op: getattr(mc, op)(y, axis=(1, -1)), (op,)))
    c += [
        ("argmax-tuple", E.ArgumentTypeError, lambda y, yi, yb: mc.argmax(y, axis=(0, 1)),
         ("argmax",)),
        ("ddof-float", E.ArgumentTypeError, lambda y, yi, yb: mc.var(y, ddof=0.5), ("var",)),
        ("matmul-inner", E.ShapeError, lambda y, yi, yb: y @ y, ("matmul", F, "3 != 2")),
        ("matmul-0d", E.ShapeError, lambda y, yi, yb: mc.matmul(y, mc.array(2.0)),
         ("matmul", F, "()")),
        ("matmul-batch", E.BroadcastError,
         lambda y, yi, yb: mc.ones((4, 2, 3)) @ mc.ones((5, 3, 2), mc.float16),
         ("matmul", "(4, 2, 3)", "(5, 3, 2)", "float16")),
        ("where-3way", E.BroadcastError, lambda y, yi, yb: mc.where(mc.ones((4,), mc.bool_), y, 0),
         ("where", "(4,)", "(2, 3)", "bool", "float32")),
        ("where-string", E.DTypeError, lambda y, yi, yb: mc.where(yb, y, "x"), ("where", "'x'")),
        ("reshape-count", E.ShapeError, lambda y, yi, yb: y.reshape(4, 2),
         ("reshape", F, "(4, 2)")),
        ("reshape-two-minus-one", E.ShapeError, lambda y, yi, yb: y.reshape(-1, -1),
         ("reshape", F)),
        ("reshape-string", E.ArgumentTypeError, lambda y, yi, yb: y.reshape("a"), ("reshape",)),
        ("transpose-length", E.AxisError, lambda y, yi, yb: mc.transpose(y, (0,)),
         ("transpose", F)),
        ("transpose-oob", E.AxisError, lambda y, yi, yb: mc.transpose(y, (0, 2)),
         ("transpose", F)),
        ("transpose-repeated", E.AxisError, lambda y, yi, yb: mc.transpose(y, (0, 0)),
         ("transpose", "(0, 0)")),
        ("swapaxes", E.AxisError, lambda y, yi, yb: mc.swapaxes(yi, 0, 2), ("swapaxes", I)),
        ("moveaxis", E.AxisError, lambda y, yi, yb: mc.moveaxis(yb, 3, 0), ("moveaxis", B)),
        ("squeeze-size", E.ShapeError, lambda y, yi, yb: mc.squeeze(y, 0), ("squeeze", F)),
        ("expand_dims", E.AxisError, lambda y, yi, yb: mc.expand_dims(y, 5), ("expand_dims",)),
        ("broadcast_to", E.BroadcastError, lambda y, yi, yb: mc.broadcast_to(y, (3, 3)),
         ("broadcast_to", F, "(3, 3)")),
        ("concatenate-ndim", E.ShapeError, lambda y, yi, yb: mc.concatenate([y, mc.ones((3,))]),
         ("concatenate", F, "(3,) float32")),
        ("concatenate-shape", E.ShapeError,
         lambda y, yi, yb: mc.concatenate([y, yi.T], axis=1), ("concatenate", F, "(3, 2) int32")),
        ("concatenate-axis", E.AxisError, lambda y, yi, yb: mc.concatenate([y, y], axis=2),
         ("concatenate", F)),
        ("stack-shape", E.ShapeError, lambda y, yi, yb: mc.stack([y, y.T]),
         ("stack", F, "(3, 2) float32")),
        ("split-uneven", E.ShapeError, lambda y, yi, yb: mc.split(y, 2, axis=1), ("split", F)),
        ("take-float-index", E.DTypeError, lambda y, yi, yb: mc.take(y, mc.array([0.5])),
         ("take", "float32")),
        ("take_along_axis-shape", E.BroadcastError,
         lambda y, yi, yb: mc.take_along_axis(y, mc.zeros((5, 5), mc.int32), 1),
         ("take_along_axis", "(5, 5) int32", F)),
        ("getitem-oob", E.IndexingError, lambda y, yi, yb: y[5], ("getitem", "out of bounds")),
        ("getitem-string", E.IndexingError, lambda y, yi, yb: y["a"], ("getitem", "'a'")),
        ("getitem-too-many", E.IndexingError, lambda y, yi, yb: y[0, 0, 0],
         ("getitem", "too many", F)),
        ("astype-float128", E.DTypeError, lambda y, yi, yb: y.astype("float128"),
         ("astype", "float128")),
        ("astype-uint64", E.DTypeError, lambda y, yi, yb: mc.astype(yi, np.uint64),
         ("astype", "uint64")),
        ("gelu-mode", E.ArgumentError, lambda y, yi, yb: mc.gelu(y, approximate="fast"),
         ("gelu", "'fast'")),
        ("softmax-axis", E.AxisError, lambda y, yi, yb: mc.softmax(y, axis=2), ("softmax", F)),
        ("softmax-axis-float", E.ArgumentTypeError, lambda y, yi, yb: mc.softmax(y, axis=1.0),
         ("softmax",)),
        ("log_softmax-0d", E.AxisError, lambda y, yi, yb: mc.log_softmax(mc.array(1.0)),
         ("log_softmax", "float32")),
        ("rms_norm-weight", E.ShapeError,
         lambda y, yi, yb: mc.fast.rms_norm(y, mc.ones((2,)), 1e-5), ("rms_norm", F, "(2,)")),
        ("rms_norm-eps", E.ArgumentError, lambda y, yi, yb: mc.fast.rms_norm(y, None, -1.0),
         ("rms_norm", "-1.0")),
        ("rms_norm-eps-string", E.ArgumentTypeError,
         lambda y, yi, yb: mc.fast.rms_norm(y, None, "1e-5"), ("rms_norm",)),
        ("layer_norm-bias", E.ShapeError,
         lambda y, yi, yb: mc.fast.layer_norm(y, None, mc.ones((2,)), 1e-5),
         ("layer_norm", F, "(2,)")),
        ("rope-odd", E.ArgumentError, lambda y, yi, yb: mc.fast.rope(y, 3), ("rope", F)),
        ("rope-1d", E.ShapeError, lambda y, yi, yb: mc.fast.rope(y[0], 2), ("rope", "(3,)")),
        ("sdpa-3d", E.ShapeError,
         lambda y, yi, yb: mc.fast.scaled_dot_product_attention(y, y, y, scale=1.0),
         ("scaled_dot_product_attention", F)),
        ("sdpa-mask", E.ArgumentError, lambda y, yi, yb: mc.fast.scaled_dot_product_attention(
            *(mc.ones((1, 2, 3, 4)),) * 3, scale=1.0, mask="future"),
         ("scaled_dot_product_attention", "'future'")),
        ("sdpa-head-dim", E.ShapeError, lambda y, yi, yb: mc.fast.scaled_dot_product_attention(
            mc.ones((1, 2, 3, 4)), mc.ones((1, 2, 5, 8)), mc.ones((1, 2, 5, 8)), scale=1.0),
         ("scaled_dot_product_attention", "(1, 2, 3, 4)", "(1, 2, 5, 8)")),
        ("lora-shape", E.ShapeError,
         lambda y, yi, yb: mc.fast.lora(y, mc.ones((4, 2)), mc.ones((2, 5)), 1.0),
         ("lora", F, "(4, 2)")),
        ("array-ragged", E.ShapeError, lambda y, yi, yb: mc.array([[1, 2], [3]]),
         ("array", "ragged")),
        ("array-ragged-deep", E.ShapeError, lambda y, yi, yb: mc.array([[[1.0], [2.0]], [[3.0]]]),
         ("array", "ragged")),
        ("operand-ragged", E.ShapeError, lambda y, yi, yb: y + [[1, 2], [3]], ("add", "ragged")),
        ("array-strings", E.DTypeError, lambda y, yi, yb: mc.array(["a", "b"]), ("array",)),
        ("array-mixed", E.DTypeError, lambda y, yi, yb: mc.array([1, "a"]), ("array",)),
        ("array-none", E.DTypeError, lambda y, yi, yb: mc.array([1, None]), ("array",)),
        ("array-uint64", E.DTypeError, lambda y, yi, yb: mc.array(np.ones(2, np.uint64)),
         ("uint64",)),
        ("zeros-overflow", E.ShapeError, lambda y, yi, yb: mc.zeros((2 ** 40, 2 ** 40)),
         ("zeros", "too many elements")),
        ("ones-huge-dim", E.ShapeError, lambda y, yi, yb: mc.ones((2 ** 100,)), ("ones",)),
        ("random-overflow", E.ShapeError, lambda y, yi, yb: mc.random.normal((2 ** 33, 2 ** 33)),
         ("random",)),
        ("broadcast-overflow", E.ShapeError,
         lambda y, yi, yb: mc.broadcast_to(y, (2 ** 40, 2 ** 40, 3)), ("broadcast_to",)),
        ("reshape-overflow", E.ShapeError, lambda y, yi, yb: y.reshape(2 ** 40, 2 ** 40, 0),
         ("reshape",)),
        ("zeros-negative", E.ShapeError, lambda y, yi, yb: mc.zeros((-1, 2)), ("zeros", "(-1, 2)")),
        ("zeros-17-dims", E.ShapeError, lambda y, yi, yb: mc.zeros((1,) * 17), ("zeros", "17")),
        ("zeros-float-shape", E.ArgumentTypeError, lambda y, yi, yb: mc.zeros((2.0, 3)),
         ("zeros",)),
        ("full-string", E.ArgumentTypeError, lambda y, yi, yb: mc.full((2,), "x"), ("full",)),
        ("zeros-dtype", E.DTypeError, lambda y, yi, yb: mc.zeros((2,), "float8"),
         ("zeros", "float8")),
        ("arange-step0", E.ArgumentError, lambda y, yi, yb: mc.arange(0, 4, 0), ("arange",)),
        ("arange-string", E.ArgumentTypeError, lambda y, yi, yb: mc.arange("a"), ("arange",)),
        ("linspace-negative", E.ArgumentError, lambda y, yi, yb: mc.linspace(0, 1, -1),
         ("linspace",)),
        ("eye-float", E.ArgumentTypeError, lambda y, yi, yb: mc.eye(2.5), ("eye",)),
        ("normal-int-dtype", E.DTypeError, lambda y, yi, yb: mc.random.normal((2,), mc.int32),
         ("normal", "int32")),
        ("randint-range", E.ArgumentError, lambda y, yi, yb: mc.random.randint(5, 1, (2,)),
         ("randint",)),
        ("uniform-negative-dim", E.ShapeError, lambda y, yi, yb: mc.random.uniform(shape=(-1,)),
         ("random",)),
        ("set-device", E.ArgumentError, lambda y, yi, yb: mc.set_default_device("tpu"),
         ("set_default_device", "'tpu'")),
    ]
    return c


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_typed_error_at_build_time(case, spy, world):
    _, exc, fn, needles = case
    check(spy, world, exc, fn, needles)


@pytest.mark.parametrize("op, value", [("add", 300), ("multiply", -129), ("maximum", 2 ** 40)])
def test_weak_scalar_overflow(op, value, spy, world):
    # docs/dtypes.md: an int scalar that does not fit an integer tensor raises OverflowError
    check(spy, world, OverflowError, lambda y, yi, yb: getattr(mc, op)(yi.astype(mc.int8), value),
          (op, "int8", str(value)), typed=False)


def test_operators_with_foreign_operands_raise_type_error(spy, world):
    # The operator protocol: Tensor returns NotImplemented, so Python raises TypeError.
    for bad in ("a", None, 1j, {}, object()):
        for f in (lambda y: y + bad, lambda y: bad * y, lambda y: y < bad, lambda y: y @ bad):
            check(spy, world, TypeError, lambda y, yi, yb: f(y), (), typed=False)


def test_function_forms_reject_foreign_operands(spy, world):
    # mc.add(y, "a") must raise a DTypeError/ArgumentTypeError naming the op, not return a value.
    for op in list(BINARY) + ["where_x", "clip"]:
        for bad in ("a", None, 1j, {}):
            if op == "clip" and bad is None:
                continue            # clip(y, 0, None): no upper bound, as in NumPy
            def build(y, yi, yb, op=op, bad=bad):
                if op == "where_x":
                    return mc.where(yb, y, bad)
                r = mc.clip(y, 0, bad) if op == "clip" else getattr(mc, op)(y, bad)
                raise AssertionError(f"mc.{op}(y, {bad!r}) returned {r!r} instead of raising")
            check(spy, world, TypeError, build, (op.split("_x")[0],))


def test_many_mistakes_in_a_row_leave_no_nodes_behind(world):
    (y, yi, yb), refs = world
    gc.collect()
    count = sum(type(o) is mc.Tensor for o in gc.get_objects())
    for _, exc, fn, _ in CASES * 3:
        try:
            fn(y, yi, yb)
        except (E.MetalcandleError, OverflowError):
            pass
    gc.collect()
    after = sum(type(o) is mc.Tensor for o in gc.get_objects())
    assert after <= count, f"{after - count} tensors left behind by failed builds"
    for t, ref, op, dt in refs:
        assert_close(t, ref, op, dt)

"""Matmul and layout ops against NumPy: matmul rules and dtypes, reshape, transposes,
expand/squeeze, broadcast_to, concatenate/stack/split, basic indexing, take, take_along_axis."""
import numpy as np
import pytest

import metalcandle as mc
from metalcandle.errors import AxisError, ShapeError, BroadcastError
from helpers import ALL_DTYPES, FLOATS, assert_close, np_dtype, as_f64, ref_input

pytestmark = pytest.mark.usefixtures("device")

MATMUL_SHAPES = [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)),
                 ((5, 2, 3), (3, 4)), ((3,), (5, 3, 4)), ((5, 2, 3), (3,)),
                 ((2, 1, 2, 3), (5, 3, 4)), ((5, 2, 3), (5, 3, 4)), ((1, 2, 3), (4, 3, 2)),
                 ((0, 3), (3, 4)), ((2, 0), (0, 4)), ((2, 3), (3, 0)), ((1, 1), (1, 1))]


def matmul_ref(a, b, out_dt):
    if out_dt in FLOATS:
        return np.matmul(as_f64(a), as_f64(b))
    return np.matmul(a.astype(out_dt), b.astype(out_dt))


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
@pytest.mark.parametrize("dt", ["float32", "int32"])
def test_matmul_shapes(shapes, dt, rand):
    a, b = rand(shapes[0], dt, -3, 3), rand(shapes[1], dt, -3, 3)
    ref = matmul_ref(a, b, dt)
    assert_close(mc.matmul(mc.array(a), mc.array(b)), ref, "matmul", dt)
    assert_close(mc.array(a) @ mc.array(b), ref, "matmul", dt)


@pytest.mark.parametrize("dt", ALL_DTYPES)
def test_matmul_dtypes(dt, rand):
    np_dtype(dt)
    lo, hi = (-3, 3) if dt not in ("uint8", "uint32") else (0, 3)
    a, b = rand((2, 3, 16), dt, lo, hi), rand((16, 5), dt, lo, hi)
    assert_close(mc.array(a) @ mc.array(b), matmul_ref(a, b, dt), "matmul", dt)


@pytest.mark.parametrize("dts, out", [(("int32", "float32"), "float32"),
                                      (("float16", "bfloat16"), "float32"),
                                      (("uint8", "int8"), "int16"),
                                      (("int8", "float16"), "float16"),
                                      (("float32", "float64"), "float64"),
                                      (("bool", "int32"), "int32")])
def test_matmul_mixed_dtypes(dts, out, rand):
    np_dtype(dts[0]), np_dtype(dts[1])
    a, b = rand((3, 8), dts[0], -3, 3), rand((8, 2), dts[1], -3, 3)
    t = mc.array(a) @ mc.array(b)
    ref = np.matmul(ref_input(a).astype(np.float64 if out in FLOATS else out),
                    ref_input(b).astype(np.float64 if out in FLOATS else out))
    assert_close(t, ref, "matmul", out)


@pytest.mark.parametrize("dt", ["float16", "bfloat16"])
def test_matmul_half_accumulates_in_float32(dt, rand):
    # k = 256 positive terms: accumulating in the half type would lose several ulps.
    a, b = rand((4, 256), dt, 0.0, 1.0), rand((256, 3), dt, 0.0, 1.0)
    t = mc.array(a) @ mc.array(b)
    assert_close(t, matmul_ref(a, b, dt), "matmul", dt)


def test_matmul_with_lists(rand):
    a = rand((3, 2), "float32")
    x = mc.array(a)
    assert_close([[1.0, 2.0, 3.0]] @ x, np.array([[1.0, 2.0, 3.0]]) @ as_f64(a), "matmul",
                 "float32")
    assert_close(x @ [1.0, -1.0], as_f64(a) @ np.array([1.0, -1.0]), "matmul", "float32")


@pytest.mark.parametrize("target", [(-1,), (2, -1), (4, 3), (1, 12, 1), (2, 2, 3), (-1, 2, 1),
                                    (12,), (3, 4)], ids=str)
def test_reshape(target, rand):
    a = rand((3, 4), "float32")
    assert_close(mc.reshape(mc.array(a), target), a.reshape(target), "reshape", "float32")
    # a non-contiguous source reshapes in logical (C) order
    assert_close(mc.array(a).T.reshape(target), a.T.reshape(target), "reshape", "float32")


def test_reshape_forms_and_dtypes(rand):
    for dt in ("int8", "bool", "bfloat16") + (("float64",) if mc.default_device() == "cpu" else ()):
        a = rand((2, 6), dt)
        x = mc.array(a)
        for t in (x.reshape(3, 4), x.reshape((3, 4)), x.reshape([3, 4])):
            assert_close(t, a.reshape(3, 4), "reshape", dt)
        assert_close(x.flatten(), a.reshape(-1), "reshape", dt)
        assert_close(mc.flatten(x), a.reshape(-1), "reshape", dt)
    assert_close(mc.zeros((0, 3)).reshape(3, 0), np.zeros((3, 0)), "reshape", "float32")
    assert_close(mc.array(np.float32(2.5)).reshape(1, 1), np.full((1, 1), 2.5), "reshape",
                 "float32")


@pytest.mark.parametrize("dt", ["float32", "int16", "bfloat16", "bool"])
def test_transposes(dt, rand):
    np_dtype(dt)
    a = rand((2, 3, 4), dt)
    x = mc.array(a)
    cases = [
        (mc.transpose(x), a.transpose()), (x.T, a.T), (x.transpose(1, 0, 2), a.transpose(1, 0, 2)),
        (x.transpose((2, 0, 1)), a.transpose(2, 0, 1)), (mc.transpose(x, (-1, 0, 1)),
                                                       a.transpose(2, 0, 1)),
        (mc.swapaxes(x, 0, -1), np.swapaxes(a, 0, -1)), (x.swapaxes(1, 2), a.swapaxes(1, 2)),
        (mc.moveaxis(x, 0, -1), np.moveaxis(a, 0, -1)), (mc.moveaxis(x, -1, 0),
                                                        np.moveaxis(a, -1, 0)),
        (mc.moveaxis(x, 1, 1), a), (mc.transpose(x, (0, 1, 2)), a),
    ]
    for t, ref in cases:
        assert_close(t, ref, "transpose", dt)
    # transposes of transposes, then an elementwise op (strided inputs)
    assert_close(x.T.transpose(1, 0, 2) + x.T.transpose(1, 0, 2),
                 (ref_input(a).T.transpose(1, 0, 2) * 2 if dt != "bool"
                  else a.T.transpose(1, 0, 2)), "add", dt)


def test_expand_squeeze_broadcast(rand):
    a = rand((3, 1, 4), "float32")
    x = mc.array(a)
    cases = [
        (mc.expand_dims(x, 0), np.expand_dims(a, 0)),
        (mc.expand_dims(x, -1), np.expand_dims(a, -1)),
        (mc.expand_dims(x, (0, 2)), np.expand_dims(a, (0, 2))),
        (mc.expand_dims(x, (-1, 0)), np.expand_dims(a, (-1, 0))),
        (mc.squeeze(x), np.squeeze(a)), (x.squeeze(1), np.squeeze(a, 1)),
        (mc.squeeze(x, -2), np.squeeze(a, -2)), (mc.squeeze(mc.array(a[:1, :, :1])),
                                                 np.squeeze(a[:1, :, :1])),
        (mc.broadcast_to(x, (2, 3, 5, 4)), np.broadcast_to(a, (2, 3, 5, 4))),
        (mc.broadcast_to(x, (3, 1, 4)), a),
        (mc.broadcast_to(mc.array(a[0, 0, 0]), (2, 2)), np.broadcast_to(a[0, 0, 0], (2, 2))),
        (mc.broadcast_to(mc.array(a[0, 0]), (3, 4)), np.broadcast_to(a[0, 0], (3, 4))),
        (mc.broadcast_to(x, (3, 0, 4)), np.broadcast_to(a, (3, 0, 4))),
    ]
    for t, ref in cases:
        assert_close(t, ref, "layout", "float32")
    # a broadcast view feeding an elementwise op and a reduction
    y = mc.broadcast_to(x, (2, 3, 5, 4))
    assert_close((y * 2).sum(axis=0), np.broadcast_to(as_f64(a), (2, 3, 5, 4)).sum(0) * 2, "sum",
                 "float32")
    with pytest.raises(ShapeError, match="squeeze"):
        mc.squeeze(x, 0)
    with pytest.raises(BroadcastError, match="broadcast_to"):
        mc.broadcast_to(x, (3, 2, 5))
    with pytest.raises(BroadcastError, match="broadcast_to"):
        mc.broadcast_to(x, (4,))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_stack_split(axis, rand):
    a, b, c = rand((2, 3), "float32"), rand((2, 3), "float32"), rand((2, 3), "float32")
    xs = [mc.array(v) for v in (a, b, c)]
    assert_close(mc.concatenate(xs, axis=axis), np.concatenate([a, b, c], axis=axis),
                 "concatenate", "float32")
    assert_close(mc.stack(xs, axis=axis), np.stack([a, b, c], axis=axis), "stack", "float32")
    big = rand((6, 6), "float32")
    for spec in (3, [1, 4], [2], [0, 6], [5, 2], [10]):
        parts = mc.split(mc.array(big), spec, axis=axis)
        refs = np.split(big, spec, axis=axis)
        assert len(parts) == len(refs)
        for p, r in zip(parts, refs):
            assert_close(p, r, "split", "float32")



@pytest.mark.parametrize("axis", [0, 1])
def test_split_negative_indices(axis, rand):
    big = rand((6, 6), "float32")
    for spec in ([-2], [1, -1], [-4, -2]):
        parts = mc.split(mc.array(big), spec, axis=axis)
        refs = np.split(big, spec, axis=axis)
        assert [p.shape for p in parts] == [r.shape for r in refs]
        for p, r in zip(parts, refs):
            assert_close(p, r, "split", "float32")


def test_concatenate_promotes_and_handles_empty(rand):
    a, b = rand((2, 3), "int8"), rand((1, 3), "float16")
    assert_close(mc.concatenate([mc.array(a), mc.array(b)]),
                 np.concatenate([a.astype(np.float64), b.astype(np.float64)]), "concatenate",
                 "float16")
    e = np.zeros((0, 3), np.float32)
    c = rand((2, 3), "float32")
    assert_close(mc.concatenate([mc.array(e), mc.array(c), mc.array(e)]), c, "concatenate",
                 "float32")
    assert_close(mc.concatenate([mc.array(c)]), c, "concatenate", "float32")
    i, j = rand((2,), "uint8"), rand((3,), "int8")
    assert_close(mc.concatenate([mc.array(i), mc.array(j)]),
                 np.concatenate([i.astype(np.int16), j.astype(np.int16)]), "concatenate", "int16")
    assert_close(mc.stack([mc.array(c[0]), mc.array(c[1])]), c, "stack", "float32")
    with pytest.raises(ShapeError, match="split"):
        mc.split(mc.array(c), 4, axis=1)


KEYS = [0, -1, 2, slice(1, 3), slice(None, None, 2), slice(None, None, -1),
        slice(None, None, -2), slice(3, 0, -1), slice(-2, None), slice(10, 20),
        slice(-10, 2), slice(2, 2), (1, 2), (-1, -2, -3), (slice(None), 1), (Ellipsis, 1),
        (1, Ellipsis), (None,), (None, 1, None), (Ellipsis, None),
        (slice(1, None, 2), Ellipsis, slice(None, None, -3)), (0, slice(None), None, -1),
        (slice(None, None, -1), slice(None, None, -1)), (Ellipsis,), (),
        (np.int64(1), np.int32(-1)), (slice(4, None, -2), 3), (slice(4, 0, -2), 3),
        (slice(None), slice(5, 1, -1))]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_basic_indexing(key, rand):
    a = rand((4, 5, 6), "int32")
    t = mc.array(a)[key]
    ref = a[key]
    assert_close(t, ref, "getitem", "int32")
    # the view feeding another op
    assert_close(t + 1, ref + 1, "add", "int32")


def test_indexing_a_view_of_a_pending_tensor(rand):
    a = rand((6, 4), "float32")
    y = mc.array(a) * 2
    assert_close(y[::-2, 1:][1], (as_f64(a) * 2)[::-2, 1:][1], "getitem", "float32")
    assert_close(y.T[::-1], (as_f64(a) * 2).T[::-1], "getitem", "float32")


def test_integer_array_index_gathers_axis0(rand):
    a = rand((5, 3), "float32")
    x = mc.array(a)
    assert_close(x[[2, 0, 2]], a[[2, 0, 2]], "take", "float32")
    assert_close(x[[-1, 1]], a[[-1, 1]], "take", "float32")
    assert_close(x[mc.array([1, 4])], a[np.array([1, 4])], "take", "float32")
    assert_close(x[np.array([[0, 1], [3, 3]])], a[np.array([[0, 1], [3, 3]])], "take", "float32")
    assert_close(x[mc.array(3)], a[np.array(3)], "take", "float32")
    assert_close(x[mc.array(np.array([1, 2], np.uint8))], a[[1, 2]], "take", "float32")


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_take(axis, rand):
    a = rand((4, 5), "int16")
    idx = np.array([[3, -1, 0], [1, 1, 2]])
    t = mc.take(mc.array(a), mc.array(idx), axis=axis)
    assert_close(t, np.take(a, idx, axis=axis), "take", "int16")
    assert_close(mc.take(mc.array(a), [2, 0], axis=axis), np.take(a, [2, 0], axis=axis), "take",
                 "int16")
    assert_close(mc.take(mc.array(a), 1, axis=axis), np.take(a, 1, axis=axis), "take", "int16")
    assert_close(mc.take(mc.array(a), np.zeros((0,), np.int64), axis=axis),
                 np.take(a, np.zeros((0,), np.int64), axis=axis), "take", "int16")


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_take_along_axis(axis, rand):
    a = rand((4, 5), "float32")
    idx = np.argsort(a, axis=axis)
    assert_close(mc.take_along_axis(mc.array(a), mc.array(idx), axis),
                 np.take_along_axis(a, idx, axis), "take_along_axis", "float32")
    # indices broadcast on the other axes
    part = np.argmax(a, axis=axis)
    part = np.expand_dims(part, axis)
    assert_close(mc.take_along_axis(mc.array(a), mc.array(part), axis),
                 np.take_along_axis(a, part, axis), "take_along_axis", "float32")
    # indices computed lazily by the library itself
    am = mc.expand_dims(mc.argmax(mc.array(a), axis=axis), axis)
    assert_close(mc.take_along_axis(mc.array(a), am, axis), np.max(a, axis=axis, keepdims=True),
                 "take_along_axis", "float32")


def test_take_along_axis_none(rand):
    a = rand((3, 4), "float32")
    idx = np.array([11, 0, 5])
    assert_close(mc.take_along_axis(mc.array(a), mc.array(idx), None),
                 np.take_along_axis(a, idx, None), "take_along_axis", "float32")


def test_layout_errors():
    x = mc.ones((2, 3))
    with pytest.raises(ShapeError, match="reshape"):
        x.reshape(4, -1)
    with pytest.raises(ShapeError, match="reshape"):
        x.reshape(-1, -1)
    with pytest.raises(AxisError, match="transpose"):
        x.transpose(0, 0)
    with pytest.raises(AxisError, match="transpose"):
        x.transpose(0, 1, 2)
    with pytest.raises(AxisError, match="swapaxes"):
        mc.swapaxes(x, 0, 2)
    with pytest.raises(AxisError, match="expand_dims"):
        mc.expand_dims(x, 3)
    with pytest.raises(ShapeError, match="concatenate"):
        mc.concatenate([x, mc.ones((2, 4))])
    with pytest.raises(ShapeError, match="concatenate"):
        mc.concatenate([x, mc.ones((3,))])
    with pytest.raises(ShapeError, match="stack"):
        mc.stack([x, mc.ones((3, 2))])
    with pytest.raises(ValueError):
        mc.concatenate([])
    with pytest.raises(TypeError, match="take"):
        mc.take(x, mc.array([0.5]))
    with pytest.raises(ShapeError, match="take_along_axis"):
        mc.take_along_axis(x, mc.array([0, 1]), 1)

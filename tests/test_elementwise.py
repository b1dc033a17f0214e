"""Elementwise ops against NumPy: every unary and binary op and operator, every dtype each
supports, broadcasting, weak Python scalars, the promotion table, where/clip/astype, NaN/inf."""
import numpy as np
import pytest

import metalcandle as mc
from metalcandle.errors import DTypeError, BroadcastError
from helpers import (ALL_DTYPES, FLOATS, UNSIGNED, assert_close, mc_dtype, np_dtype, kind,
                     ref_input, as_f64, draw, weak_result, expected_promotion,
                     UNARY, NO_BOOL, unary_out, unary_ref,
                     BINARY, NO_BOOL_BINARY, binary_out, binary_ref, draw_pair)

pytestmark = pytest.mark.usefixtures("device")


def check_unary(op, a, dt):
    fn = UNARY[op][0]
    out_dt = unary_out(op, dt)
    t = fn(mc.array(a))
    assert_close(t, unary_ref(op, a, out_dt), op, out_dt)


def _unary_dtype_cases():
    for op in UNARY:
        for dt in ALL_DTYPES:
            yield pytest.param(op, dt, id=f"{op}-{dt}")


@pytest.mark.parametrize("op, dt", list(_unary_dtype_cases()))
def test_unary_dtypes(op, dt, rand):
    np_dtype(dt)
    if dt == "bool" and op in NO_BOOL:
        with pytest.raises(DTypeError, match=op):
            UNARY[op][0](mc.array([True, False]))
        return
    check_unary(op, draw(rand, (3, 4), dt, UNARY[op][2]), dt)


@pytest.mark.parametrize("shape", [(), (0,), (2, 0), (5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("dt", ["float32", "int32"])
@pytest.mark.parametrize("op", UNARY)
def test_unary_shapes(op, dt, shape, rand):
    check_unary(op, draw(rand, shape, dt, UNARY[op][2]), dt)


@pytest.mark.parametrize("op", UNARY)
def test_unary_strided_input(op, rand):
    # A transposed (non-contiguous) view as the input.
    a = draw(rand, (4, 6), "float32", UNARY[op][2])
    t = UNARY[op][0](mc.array(a).T)
    assert_close(t, unary_ref(op, a.T, unary_out(op, "float32")), op, unary_out(op, "float32"))


def test_method_and_operator_forms(rand):
    a = rand((3, 4), "float32", low=0.1, high=4)
    x = mc.array(a)
    assert_close(-x, -a, "negative", "float32")
    assert_close(+x, a, "pos", "float32")
    assert_close(abs(mc.array(-a)), a, "abs", "float32")
    assert_close(x.exp(), np.exp(as_f64(a)), "exp", "float32")
    assert_close(x.log(), np.log(as_f64(a)), "log", "float32")
    assert_close(x.sqrt(), np.sqrt(as_f64(a)), "sqrt", "float32")
    assert_close(x.abs(), a, "abs", "float32")
    assert_close(x.square(), as_f64(a) ** 2, "square", "float32")
    assert_close(mc.gelu(x, approximate="tanh"), mc.gelu_approx(x).numpy(), "gelu_approx",
                 "float32")


def test_round_half_to_even():
    a = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.4999, 0.5001], np.float32)
    assert_close(mc.round(mc.array(a)), np.rint(a), "round", "float32")


@pytest.mark.parametrize("dt", ALL_DTYPES)
@pytest.mark.parametrize("op", BINARY)
def test_binary_dtypes(op, dt, rand):
    np_dtype(dt)
    fn, _, opr, _, _ = BINARY[op]
    a, b = draw_pair(op, rand, (3, 4), (3, 4), dt)
    if dt == "bool" and op in NO_BOOL_BINARY:
        with pytest.raises(DTypeError, match=op):
            fn(mc.array(a), mc.array(b))
        return
    out_dt = binary_out(op, dt)
    ref = binary_ref(op, a, b, out_dt)
    assert_close(fn(mc.array(a), mc.array(b)), ref, op, out_dt)
    if opr is not None:
        assert_close(opr(mc.array(a), mc.array(b)), ref, op, out_dt)


BCAST = [((), ()), ((), (3, 4)), ((3, 4), ()), ((0,), (0,)), ((2, 0), (2, 1)), ((0, 3), (3,)),
         ((5,), (5,)), ((3, 4), (3, 4)), ((2, 3), (3,)), ((4, 1), (1, 5)), ((2, 1, 3), (4, 1)),
         ((1,), (2, 3, 1))]


@pytest.mark.parametrize("shapes", BCAST, ids=str)
@pytest.mark.parametrize("dt", ["float32", "int32"])
@pytest.mark.parametrize("op", BINARY)
def test_binary_broadcast(op, dt, shapes, rand):
    fn, _, _, _, _ = BINARY[op]
    a, b = draw_pair(op, rand, shapes[0], shapes[1], dt)
    out_dt = binary_out(op, dt)
    assert_close(fn(mc.array(a), mc.array(b)), binary_ref(op, a, b, out_dt), op, out_dt)


@pytest.mark.parametrize("op", ["add", "multiply", "maximum", "less"])
def test_binary_strided_inputs(op, rand):
    a, b = draw_pair(op, rand, (5, 3), (3, 10), "float32")
    fn = BINARY[op][0]
    out_dt = binary_out(op, "float32")
    t = fn(mc.array(a).T, mc.array(b)[:, 1::2])
    assert_close(t, binary_ref(op, a.T, b[:, 1::2], out_dt), op, out_dt)


SCALAR_DTYPES = ["bool", "uint8", "int8", "int32", "int64", "float16", "bfloat16", "float32",
                 "float64"]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("scalar", [3, 1.5], ids=["int", "float"])
@pytest.mark.parametrize("dt", SCALAR_DTYPES)
@pytest.mark.parametrize("op", BINARY)
def test_binary_weak_scalar(op, dt, scalar, side, rand):
    np_dtype(dt)
    fn, _, opr, da, _ = BINARY[op]
    if op == "power" and kind(dt) != "f":
        da = (0, 3) if side == "right" else (0, 4)
    a = draw(rand, (3, 4), dt, da)
    ct = weak_result(dt, scalar)
    if ct == "bool" and op in NO_BOOL_BINARY:
        pytest.skip("bool operands are rejected (checked in test_binary_dtypes)")
    out_dt = binary_out(op, ct)
    s_arr = np.full((), scalar, dtype=np.float64 if type(scalar) is float else np.int64)
    l, r = (a, s_arr) if side == "right" else (s_arr, a)
    ref = binary_ref(op, np.asarray(l).astype(np_dtype(ct)) if kind(ct) != "f" else l,
                     np.asarray(r).astype(np_dtype(ct)) if kind(ct) != "f" else r, out_dt)
    x = mc.array(a)
    args = (x, scalar) if side == "right" else (scalar, x)
    assert_close(fn(*args), ref, op, out_dt)
    if opr is not None:
        assert_close(opr(*args), ref, op, out_dt)


def test_weak_scalar_rules():
    h = mc.array(np.array([1.0, 2.0], np.float16))
    assert (h * 1.5).dtype == mc.float16
    assert (1.5 * h).dtype == mc.float16
    assert (h + 1).dtype == mc.float16
    i32 = mc.array([1, 2])
    assert i32.dtype == mc.int32
    r = i32 * 2.5
    assert r.dtype == mc.float32
    assert r.tolist() == [2.5, 5.0]
    assert (mc.array([True, False]) + 1).dtype == mc.int32
    assert (mc.array([True, False]) + True).dtype == mc.bool_
    assert (mc.array([True, False]) * 1.5).dtype == mc.float32
    assert (mc.array(np.array([1], np.int64)) + 2 ** 40).tolist() == [2 ** 40 + 1]
    if mc.default_device() == "cpu":
        assert (mc.array(np.array([1.0], np.float64)) * 1.5).dtype == mc.float64
    else:  # float64 lives on the CPU only: NumPy float64 data arrives as float32 (as in MLX)
        assert (mc.array(np.array([1.0], np.float64)) * 1.5).dtype == mc.float32
        with pytest.raises(mc.errors.DTypeError, match="float64"):
            mc.array([1.0], dtype=mc.float64)
    assert mc.result_type(mc.float16, 1.5) == mc.float16
    assert mc.result_type(mc.int8, mc.uint8) == mc.int16
    assert mc.result_type(mc.int32, 2.0) == mc.float32
    assert mc.result_type(1, 2) == mc.int32
    assert mc.result_type(1, 2.0) == mc.float32
    assert mc.result_type(True) == mc.bool_


@pytest.mark.parametrize("dt, s", [("int8", 300), ("int8", -129), ("uint8", -1), ("uint8", 256),
                                   ("int16", 40000), ("int32", 2 ** 40), ("uint32", 2 ** 32),
                                   ("int64", 2 ** 64)])
def test_weak_int_scalar_overflow(dt, s, rand):
    x = mc.array(rand((3,), dt))
    with pytest.raises(OverflowError, match=dt):
        x + s
    with pytest.raises(OverflowError, match="add"):
        s + x
    with pytest.raises(OverflowError):
        mc.maximum(x, s)


@pytest.mark.parametrize("b", ALL_DTYPES)
@pytest.mark.parametrize("a", ALL_DTYPES)
def test_promotion_table(a, b, rand):
    np_dtype(a), np_dtype(b)
    exp = expected_promotion(a, b)
    assert mc.result_type(mc_dtype(a), mc_dtype(b)) == mc_dtype(exp)
    assert mc.result_type(a, b) == mc_dtype(exp)
    # Values chosen so a product overflows int8/uint8 but not the promoted type: the op must
    # compute in the promoted dtype, not in either input's.
    x, y = rand((3, 4), a), rand((3, 4), b)
    for op, fn in (("multiply", mc.multiply), ("add", mc.add)):
        t = fn(mc.array(x), mc.array(y))
        if kind(exp) == "f":
            ref = BINARY[op][1](as_f64(x), as_f64(y))
        else:
            ref = BINARY[op][1](x.astype(exp), y.astype(exp))
        assert_close(t, ref, op, exp)


def test_mixed_sign_comparison():
    # int32 -1 against uint32 4e9 must compare in int64, not wrap.
    a = mc.array(np.array([-1, 5], np.int32))
    b = mc.array(np.array([4_000_000_000, 5], np.uint32))
    assert (a < b).tolist() == [True, False]
    assert (a == b).tolist() == [False, True]


def test_list_and_tuple_operands(rand):
    a = rand((3,), "float32")
    x = mc.array(a)
    assert_close([1.0, 2.0, 3.0] + x, np.array([1, 2, 3]) + as_f64(a), "add", "float32")
    assert_close(x - (1.0, 2.0, 3.0), as_f64(a) - np.array([1, 2, 3]), "subtract", "float32")
    assert_close(x * np.float32(2), as_f64(a) * 2, "multiply", "float32")


def test_foreign_operand_gives_type_error():
    x = mc.array([1.0])
    with pytest.raises(TypeError):
        x + "a"
    with pytest.raises(TypeError):
        object() * x
    assert (x == None) is False  # noqa: E711  (Python's identity fallback)


def test_bool_operators(rand):
    a, b = rand((4, 5), "bool"), rand((4, 5), "bool")
    x, y = mc.array(a), mc.array(b)
    assert_close(x & y, a & b, "logical_and", "bool")
    assert_close(x | y, a | b, "logical_or", "bool")
    assert_close(~x, ~a, "logical_not", "bool")
    assert_close(x & True, a & True, "logical_and", "bool")
    assert_close(False | x, a | False, "logical_or", "bool")
    for bad in (mc.array([1, 2]), mc.array([1.0, 2.0])):
        with pytest.raises(DTypeError):
            ~bad
        with pytest.raises(DTypeError):
            bad & mc.array([True, False])
        with pytest.raises(DTypeError):
            mc.array([True, False]) | bad


@pytest.mark.parametrize("dt", ["int8", "float16", "float32", "bfloat16", "uint8"])
def test_logical_of_numbers(dt, rand):
    a, b = rand((3, 4), dt, nonzero=False), rand((3, 4), dt, nonzero=False)
    a.reshape(-1)[:3] = 0
    assert_close(mc.logical_and(mc.array(a), mc.array(b)), np.logical_and(as_f64(a), as_f64(b)),
                 "logical_and", "bool")
    assert_close(mc.logical_not(mc.array(a)), np.logical_not(as_f64(a)), "logical_not", "bool")


# ---------------------------------------------------------------- NaN / inf

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5])
UNARY_SPECIAL = ["negative", "abs", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "square",
                 "reciprocal", "sin", "cos", "tanh", "sigmoid", "relu", "erf", "floor", "ceil",
                 "round", "sign"]


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("op", UNARY_SPECIAL)
def test_unary_special_values(op, dt):
    a = SPECIALS.astype(np_dtype(dt))
    check_unary(op, a, dt)


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("op", [o for o in UNARY if o != "logical_not"])
def test_unary_nan_propagates(op, dt):
    r = UNARY[op][0](mc.array(np.array([np.nan, 1.0], np_dtype(dt)))).numpy()
    assert np.isnan(as_f64(r)[0])


BINARY_SPECIAL = ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum",
                  "equal", "not_equal", "less", "less_equal", "greater", "greater_equal"]


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("op", BINARY_SPECIAL)
def test_binary_special_values(op, dt):
    a = SPECIALS.astype(np_dtype(dt)).reshape(-1, 1)
    b = SPECIALS.astype(np_dtype(dt)).reshape(1, -1)
    out_dt = binary_out(op, dt)
    assert_close(BINARY[op][0](mc.array(a), mc.array(b)), binary_ref(op, a, b, out_dt), op,
                 out_dt)


def test_division_by_zero():
    x = mc.array([1.0, -1.0, 0.0])
    r = (x / 0.0).numpy()
    assert r[0] == np.inf and r[1] == -np.inf and np.isnan(r[2])
    assert_close(mc.array([1, -2, 0]) / mc.array([0, 0, 0]),
                 np.array([np.inf, -np.inf, np.nan]), "divide", "float32")


# ---------------------------------------------------------------- where / clip / astype

@pytest.mark.parametrize("dts", [("float32", "float32"), ("int8", "uint8"), ("float16", "int32"),
                                 ("bool", "int16"), ("bfloat16", "float16"), ("int64", "float64")])
def test_where_dtypes(dts, rand):
    np_dtype(dts[0]), np_dtype(dts[1])
    c = rand((3, 4), "bool")
    a, b = rand((3, 4), dts[0]), rand((3, 4), dts[1])
    exp = expected_promotion(*dts)
    t = mc.where(mc.array(c), mc.array(a), mc.array(b))
    ref = np.where(c, ref_input(a), ref_input(b))
    assert_close(t, ref if kind(exp) == "f" else ref.astype(exp), "where", exp)


def test_where_broadcast_and_truthiness(rand):
    c = rand((3, 1), "int32", low=-1, high=1, nonzero=False)
    c[0, 0], c[1, 0] = 0, 2
    a, b = rand((1, 4), "float32"), rand((4,), "float32")
    t = mc.where(mc.array(c), mc.array(a), mc.array(b))
    assert_close(t, np.where(c != 0, a, b), "where", "float32")
    with pytest.raises(BroadcastError, match="where"):
        mc.where(mc.array([True, False]), mc.ones((3,)), 1.0)


def test_where_weak_scalars(rand):
    c = rand((5,), "bool")
    h = rand((5,), "float16")
    assert_close(mc.where(mc.array(c), 1.5, mc.array(h)), np.where(c, 1.5, h.astype(np.float64)),
                 "where", "float16")
    i8 = rand((5,), "int8")
    assert_close(mc.where(mc.array(c), mc.array(i8), 2), np.where(c, i8, np.int8(2)), "where",
                 "int8")
    assert_close(mc.where(mc.array(c), 1, 2.5), np.where(c, 1.0, 2.5), "where", "float32")
    assert_close(mc.where(mc.array(c), 1, 2), np.where(c, 1, 2).astype(np.int32), "where", "int32")
    with pytest.raises(OverflowError):
        mc.where(mc.array(c), mc.array(i8), 300)


@pytest.mark.parametrize("dt", ["float32", "float16", "bfloat16", "int8", "uint8", "int64",
                                "float64"])
def test_clip(dt, rand):
    np_dtype(dt)
    a = rand((4, 5), dt)
    lo, hi = (-2, 3) if dt != "uint8" else (5, 30)
    x = mc.array(a)
    assert_close(mc.clip(x, lo, hi), np.clip(ref_input(a), lo, hi), "clip", dt)
    assert_close(mc.clip(x, lo, None), np.maximum(ref_input(a), lo), "clip", dt)
    assert_close(mc.clip(x, None, hi), np.minimum(ref_input(a), hi), "clip", dt)
    if dt in FLOATS:
        assert_close(mc.clip(x, -1.5, 1.5), np.clip(ref_input(a), -1.5, 1.5), "clip", dt)
    with pytest.raises(ValueError):
        mc.clip(x)


def test_clip_tensor_bounds_and_nan(rand):
    a = rand((3, 4), "float32")
    a[0, 0] = np.nan
    lo, hi = rand((4,), "float32", -2, -0.5), rand((3, 1), "float32", 0.5, 2)
    t = mc.clip(mc.array(a), mc.array(lo), mc.array(hi))
    assert_close(t, np.minimum(np.maximum(a, lo), hi), "clip", "float32")


def astype_values(rand, src, dst):
    if "bool" in (src, dst):
        return rand((3, 5), "bool").astype(np_dtype(src))
    lo = -100 if src not in UNSIGNED and dst not in UNSIGNED else 0
    v = rand((3, 5), "int16", low=lo, high=100).astype(np.float64)
    if kind(src) == "f" and kind(dst) == "f":
        v = v / 4 if src in FLOATS else v  # quarter steps within +-25: exact in every float
    return v.astype(np_dtype(src))


@pytest.mark.parametrize("dst", ALL_DTYPES)
@pytest.mark.parametrize("src", ALL_DTYPES)
def test_astype_all_pairs(src, dst, rand):
    np_dtype(src), np_dtype(dst)
    a = astype_values(rand, src, dst)
    x = mc.array(a)
    t = x.astype(mc_dtype(dst))
    if src == dst:
        assert t is x
    ref = a.astype(np_dtype(dst))
    assert_close(t, ref, "astype", dst, rtol=0, atol=0)
    assert_close(mc.astype(x, dst), ref, "astype", dst, rtol=0, atol=0)


def test_astype_truncates_and_spellings():
    x = mc.array([1.7, -1.7, 2.5, -0.5])
    assert x.astype(mc.int32).tolist() == [1, -1, 2, 0]
    assert x.astype("float16").dtype == mc.float16
    assert x.astype(np.float16).dtype == mc.float16
    assert x.astype(np.dtype("int8")).dtype == mc.int8
    assert x.astype("half").dtype == mc.float16
    if mc.default_device() == "cpu":
        assert x.astype("double").dtype == mc.float64
    else:
        with pytest.raises(mc.errors.DTypeError, match="astype: float64"):
            x.astype("double")
    assert x.astype(float).dtype == mc.float32
    assert x.astype(int).dtype == mc.int32
    assert x.astype(bool).dtype == mc.bool_
    assert mc.float32 == "float32" and mc.float32 == np.float32 and mc.int8 != mc.uint8


# ---------------------------------------------------------------- half precision

HALF_UNARY = ["exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "reciprocal", "sin", "cos", "tanh",
              "sigmoid", "silu", "gelu", "gelu_approx", "erf", "square"]


def _half_cases():
    for op in HALF_UNARY:
        for dt in ("float16", "bfloat16"):
            yield pytest.param(op, dt, id=f"{op}-{dt}")


@pytest.mark.parametrize("op, dt", list(_half_cases()))
def test_half_unary_within_one_ulp(op, dt, rand):
    # "Half types compute in float32": the result is the float32 value rounded once, so within
    # one half-precision ulp of the exact value (a chain of half roundings is not).
    a = draw(rand, (4000,), dt, UNARY[op][2])
    got = as_f64(UNARY[op][0](mc.array(a)).numpy())
    ref = unary_ref(op, a, dt)
    bits, tiny = (11, 2.0 ** -24) if dt == "float16" else (8, 2.0 ** -133)
    ulp = np.maximum(np.ldexp(1.0, np.frexp(np.abs(ref))[1] - bits), tiny)
    err = np.abs(got - ref) / ulp
    assert err.max() <= 1.0, f"{op} {dt}: {err.max():.1f} ulp at x={as_f64(a)[err.argmax()]}"

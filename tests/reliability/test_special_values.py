"""NaN, +inf, -inf and -0.0 through every unary and binary elementwise op, the reductions, casts,
fused elementwise chains and softmax, on every device (Metal kernels included): the result must be
NumPy's (float64 NumPy rounded to the dtype): NaN where NumPy gives NaN, the same infinities, finite
values within the op's tolerance, and the IEEE sign of a zero result -- except for maximum,
minimum and relu, whose sign of zero IEEE 754-2008 leaves open (NumPy returns the second operand).
Small arrays take the CPU's C fast path, large ones NumPy (and the Metal kernels either way)."""
import numpy as np
import pytest

import helpers as H
import metalcandle as mc

pytestmark = pytest.mark.usefixtures("device", "fusion_restored")

S = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1.0, 2.5, -2.5, 0.5, -0.5, 3.0])
FLOATS = ["float32", "float16", "bfloat16", "float64"]     # float64: the cpu device only
SIZES = {"small": 1, "large": 400}                          # repeats of S
ZERO_SIGN_FREE = {"maximum", "minimum", "relu"}


def same(got, ref, dt, op, where=""):
    """NumPy semantics with equal_nan, exact infinities, the op's tolerance, signed zeros."""
    got = H.as_f64(np.asarray(got))
    with np.errstate(over="ignore"):
        ref = H.as_f64(np.asarray(ref).astype(H.np_dtype(dt)))
    assert got.shape == ref.shape, f"{op}: shape {got.shape} != {ref.shape}"
    rtol, atol = H.tol(op, dt)
    with np.errstate(invalid="ignore"):
        ok = np.where(np.isnan(ref), np.isnan(got), np.where(
            np.isinf(ref), got == ref, np.isfinite(got) & (np.abs(got - ref) <= atol + rtol * np.abs(
                ref))))
    if op not in ZERO_SIGN_FREE:
        ok &= ~((ref == 0) & (got == 0) & (np.signbit(ref) != np.signbit(got)))
    if not ok.all():
        i = np.argwhere(~ok)[:5].tolist()
        pairs = [(got[tuple(j)], ref[tuple(j)]) for j in i]
        raise AssertionError(f"{op} {dt} {where}: (got, NumPy) at {i}: {pairs}")


def arr(values, dt):
    return np.asarray(values, np.float64).astype(H.np_dtype(dt))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("op", [o for o in H.UNARY if o != "logical_not"])
def test_unary_ops_on_special_values(op, dt, size):
    a = arr(np.tile(S, SIZES[size]), dt)
    with np.errstate(all="ignore"):
        ref = H.UNARY[op][1](H.as_f64(a))
    same(H.UNARY[op][0](mc.array(a)), ref, dt, op, f"of {np.tile(S, 1).tolist()}")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dt", FLOATS)
def test_binary_ops_on_all_pairs_of_special_values(dt, size):
    a = arr(np.tile(np.repeat(S, len(S)), SIZES[size]), dt)
    b = arr(np.tile(np.tile(S, len(S)), SIZES[size]), dt)
    for op, (fn, ref_fn, *_) in H.BINARY.items():
        if op.startswith("logical"):
            continue
        with np.errstate(all="ignore"):
            ref = ref_fn(H.as_f64(a), H.as_f64(b))
        got = fn(mc.array(a), mc.array(b))
        if op in H.COMPARISONS:
            assert np.array_equal(np.asarray(got), ref), f"{op} {dt}"
        else:
            same(got, ref, dt, op, "(a, b) = all pairs")
        # broadcasting form (strided kernels): a column against a row
        col, row = mc.array(a[:len(S) ** 2:len(S)].reshape(-1, 1)), mc.array(b[:len(S)])
        with np.errstate(all="ignore"):
            ref2 = ref_fn(H.as_f64(a[:len(S) ** 2:len(S)]).reshape(-1, 1), H.as_f64(b[:len(S)]))
        got2 = fn(col, row)
        if op in H.COMPARISONS:
            assert np.array_equal(np.asarray(got2), ref2), f"{op} {dt} broadcast"
        else:
            same(got2, ref2, dt, op, "broadcast column x row")


@pytest.mark.parametrize("dt", FLOATS)
def test_weak_scalar_specials(dt):
    a = arr(S, dt)
    for v in (float("nan"), float("inf"), -float("inf"), -0.0):
        for op in ("add", "subtract", "multiply", "divide", "maximum", "minimum", "power"):
            with np.errstate(all="ignore"):
                ref = getattr(np, op)(H.as_f64(a), v)
                ref_r = getattr(np, op)(v, H.as_f64(a))
            same(getattr(mc, op)(mc.array(a), v), ref, dt, op, f"x op {v}")
            same(getattr(mc, op)(v, mc.array(a)), ref_r, dt, op, f"{v} op x")
        assert np.array_equal(np.asarray(mc.array(a) < v), H.as_f64(a) < v)


def _lse(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.log(np.sum(np.exp(x - m), axis=axis)) + np.squeeze(m, axis)


@pytest.mark.parametrize("n", [12, 1500], ids=["short-rows", "long-rows"])
@pytest.mark.parametrize("dt", FLOATS)
def test_reductions_propagate_special_values(dt, n):
    rows = [np.where(np.arange(n) == (7 * i) % n, s, 1.0) for i, s in enumerate(S)]
    rows += [np.r_[[np.nan, np.inf], np.ones(n - 2)], np.r_[[np.inf, -np.inf], np.ones(n - 2)],
             np.r_[[-np.inf, -np.inf], -np.ones(n - 2)], -np.zeros(n), np.full(n, np.inf)]
    a = arr(np.stack(rows), dt)
    x = mc.array(a)
    af = H.as_f64(a)
    with np.errstate(all="ignore"):
        for op in ("sum", "prod", "mean", "max", "min", "var", "std", "logsumexp", "argmax",
                   "argmin"):
            for ax in (1, None):
                ref = _lse(af, ax) if op == "logsumexp" else getattr(np, op)(af, axis=ax)
                got = getattr(mc, op)(x, axis=ax)
                if op.startswith("arg"):
                    assert np.array_equal(np.asarray(got), ref), f"{op} {dt} axis={ax}"
                else:   # the sign of a zero sum depends on the order: not checked
                    same(mc.abs(got) if op in ("sum", "mean") else got,
                         np.abs(ref) if op in ("sum", "mean") else ref, dt, op, f"axis={ax}")


@pytest.mark.parametrize("dt", FLOATS)
def test_fused_elementwise_chain_and_softmax_with_specials(dt):
    a = arr(np.tile(S, 40), dt)
    b = arr(np.roll(np.tile(S, 40), 5), dt)
    af, bf = H.as_f64(a), H.as_f64(b)
    for fusion in (True, False):
        mc.set_fusion(fusion)
        x, y = mc.array(a), mc.array(b)
        chain = mc.tanh(x * 0.5 + y) - mc.abs(y) * x + mc.maximum(x, y) / 2
        with np.errstate(all="ignore"):
            ref = np.tanh(af * 0.5 + bf) - np.abs(bf) * af + np.maximum(af, bf) / 2
        same(chain, ref, dt, "tanh", f"fused chain, fusion={fusion}")
        # attention-style masking: -inf entries get probability 0; a NaN poisons its row
        m = np.where(np.arange(48).reshape(4, 12) % 5 == 0, -np.inf, 0.5)
        m[3, 4] = np.nan
        v = arr(m, dt)
        e = np.exp(H.as_f64(v) - np.nanmax(H.as_f64(v), axis=-1, keepdims=True))
        sm = e / e.sum(-1, keepdims=True)
        same(mc.softmax(mc.array(v), axis=-1), sm, dt, "exp", f"softmax, fusion={fusion}")
        xv = mc.array(v)
        ex = mc.exp(xv - mc.max(xv, axis=-1, keepdims=True))
        same(ex / mc.sum(ex, axis=-1, keepdims=True), sm, dt, "exp", "hand-written softmax")


@pytest.mark.parametrize("dt", ["float16", "bfloat16", "float32"])
def test_casts_keep_special_values(dt):
    a = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e6, -1e6, 70000.0, 3.0], np.float32)
    for to in ("float16", "bfloat16", "float32"):
        with np.errstate(over="ignore"):
            src = a.astype(H.np_dtype(dt))
        got = mc.array(src).astype(H.mc_dtype(to))
        same(got, H.as_f64(src), to, "astype", f"{dt} -> {to}")

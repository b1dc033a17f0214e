"""round(decimals) and isnan/isinf/isfinite against NumPy on every device, with NaN/inf mixed in."""
import numpy as np
import pytest

import metalcandle as mc
from metalcandle.errors import ArgumentTypeError, DTypeError
from helpers import assert_close, np_dtype

pytestmark = pytest.mark.usefixtures("device")

SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, 1.5, 2.5, -2.5, 125.0]


def with_specials(rand, shape, dt):
    a = (rand(shape, "float32", low=-300, high=300)).astype(np_dtype(dt))
    flat = a.reshape(-1)
    flat[:len(SPECIAL)] = np.array(SPECIAL).astype(np_dtype(dt))
    return a


@pytest.mark.parametrize("dt", ["float32", "float16"])
@pytest.mark.parametrize("decimals", [0, 1, 2, 3, -1, -2])
def test_round_decimals_matches_numpy(dt, decimals, rand):
    a = with_specials(rand, (6, 7), dt)
    got = mc.round(mc.array(a), decimals)
    # np.round computes in the input's dtype by the same method: scale, rint, scale back (so
    # float16 * 1000 overflows to inf there and here alike).
    with np.errstate(over="ignore"):
        ref = np.round(a, decimals)
    assert_close(got, ref, "round", dt, rtol=0, atol=0)
    assert_close(mc.array(a).round(decimals), ref, "round", dt, rtol=0, atol=0)


def test_round_integers(rand):
    a = rand((5,), "int32", low=-1000, high=1000)
    assert_close(mc.round(mc.array(a), 2), a, "round", "int32")
    with pytest.raises(DTypeError, match=r"round: negative decimals .*int32"):
        mc.round(mc.array(a), -1)
    with pytest.raises(ArgumentTypeError, match="round: decimals must be an int"):
        mc.round(mc.array(a), 1.5)


@pytest.mark.parametrize("dt", ["float32", "float16", "bfloat16", "int32", "bool"])
def test_isnan_isinf_isfinite(dt, rand):
    if dt in ("int32", "bool"):
        a = rand((4, 5), dt)
    else:
        a = with_specials(rand, (4, 5), dt)
    x = mc.array(a)
    ref = np.asarray(a, np.float64) if dt == "bfloat16" else a
    assert_close(mc.isnan(x), np.isnan(ref), "isnan", "bool")
    assert_close(mc.isinf(x), np.isinf(ref), "isinf", "bool")
    assert_close(mc.isfinite(x), np.isfinite(ref), "isfinite", "bool")


def test_classify_builds_lazily_and_checks_input():
    with pytest.raises(DTypeError, match="isnan"):
        mc.isnan("not an array")
    x = mc.array([1.0, float("nan")])
    y = mc.isnan(x)
    assert y.shape == (2,) and y.dtype == mc.bool_ and not y.is_evaluated

"""Self-tests of the MSL simulator's runtime: bugs it must catch, and the MSL it must run right."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import mslsim

from ._helpers import SELFTEST_DIR

pytestmark = pytest.mark.sim


def marker_line(name: str, marker: str) -> int:
    lines = (SELFTEST_DIR / name).read_text().splitlines()
    return next(i + 1 for i, line in enumerate(lines) if marker in line)


@pytest.fixture(scope="module")
def buggy():
    return mslsim.compile_file(SELFTEST_DIR / "buggy.metal")


@pytest.fixture(scope="module")
def probe():
    return mslsim.compile_file(SELFTEST_DIR / "selftest.metal")


# ------------------------------------------------------------------ bugs that must show

def test_missing_barrier_reads_nan_poison(buggy, rng):
    x = rng.uniform(0.5, 1.5, 256).astype(np.float32)
    out = np.zeros(1, np.float32)
    buggy.kernel("sum_missing_barrier")(x, out, grid=1, threadgroup=256)
    assert np.isnan(out[0]), "thread 0 must see the poison of slots not yet written"
    buggy.kernel("sum_with_barrier")(x, out, grid=1, threadgroup=256)
    np.testing.assert_allclose(out[0], x.astype(np.float64).sum(), rtol=1e-5)


def test_stale_threadgroup_data_shows_in_reverse_order(buggy, rng):
    x = rng.uniform(0.5, 1.5, 64).astype(np.float32)
    forward, backward = np.zeros(64, np.float32), np.zeros(64, np.float32)
    buggy.kernel("stale_reuse")(x, forward, grid=1, threadgroup=64)
    buggy.kernel("stale_reuse")(x, backward, grid=1, threadgroup=64, reverse=True)
    assert not np.array_equal(forward, backward), "a missing barrier must make the thread order matter"


def test_divergent_barrier_is_reported_with_both_lines(buggy):
    out = np.zeros(64, np.float32)
    with pytest.raises(mslsim.DispatchError) as e:
        buggy.kernel("divergent_barrier")(out, grid=1, threadgroup=64)
    assert e.value.status == 2
    msg = str(e.value)
    assert "different call sites" in msg
    assert f"buggy.metal:{marker_line('buggy.metal', 'DIVERGENT_A')}" in msg
    assert f"buggy.metal:{marker_line('buggy.metal', 'DIVERGENT_B')}" in msg


def test_early_return_before_barrier_is_reported(buggy):
    out = np.zeros(64, np.float32)
    with pytest.raises(mslsim.DispatchError, match="not reached by all threads: 24 of 64") as e:
        buggy.kernel("early_return")(out, np.uint32(40), grid=1, threadgroup=64)
    assert f"buggy.metal:{marker_line('buggy.metal', 'EARLY_RETURN')}" in str(e.value)
    buggy.kernel("early_return")(out, np.uint32(40), grid=1, threadgroup=64, strict=False)
    assert (out[:40] == 3).all() and (out[40:] == 0).all()


def test_shuffle_from_inactive_lane_is_nan(buggy):
    out = np.zeros(32, np.float32)
    buggy.kernel("shuffle_inactive_lane")(out, grid=1, threadgroup=32)
    assert np.isnan(out[:16]).all()
    np.testing.assert_array_equal(out[16:], np.arange(16, 32))


def test_threadgroup_memory_limit(buggy):
    with pytest.raises(mslsim.DispatchError, match="threadgroup memory exceeds 32768") as e:
        buggy.kernel("too_much_threadgroup_memory")(np.zeros(32, np.float32), grid=1, threadgroup=32)
    assert e.value.status == 3


# ------------------------------------------------------------------ launch argument checks

def test_launch_argument_errors(probe):
    k = probe.kernel("histogram")
    x, bins = np.ones(8, np.uint32), np.zeros(16, np.uint32)
    with pytest.raises(mslsim.DispatchError, match="no buffer bound at index 2 .parameter 'n'"):
        k(x, bins, threads=8, threadgroup=8)
    with pytest.raises(mslsim.DispatchError, match="buffer 2 .parameter 'n'. holds 2 bytes, .* needs 4"):
        k(x, bins, np.uint16(8), threads=8, threadgroup=8)
    with pytest.raises(mslsim.DispatchError, match="at most 1024"):
        k(x, bins, np.uint32(8), threads=8, threadgroup=2048)
    with pytest.raises(ValueError, match="written by the kernel but the array is read-only"):
        bins.flags.writeable = False
        k(x, bins, np.uint32(8), threads=8, threadgroup=8)
    with pytest.raises(TypeError, match="np.uint32"):
        k(x, np.zeros(16, np.uint32), 8, threads=8, threadgroup=8)
    with pytest.raises(ValueError, match="exactly one of grid"):
        k(x, np.zeros(16, np.uint32), np.uint32(8), threadgroup=8)
    with pytest.raises(KeyError, match="no kernel 'nope'"):
        probe.kernel("nope")


# ------------------------------------------------------------------ MSL semantics

def _simd_expected(x: np.ndarray, active: int) -> np.ndarray:
    """Expected rows of simd_probe for one SIMD-group with `active` lanes (full groups: shuffles too)."""
    v = x[:active].astype(np.int64)
    rows = np.zeros((active, 8), np.int64)
    rows[:, 0], rows[:, 1], rows[:, 2] = v.sum(), v.max(), v.min()
    rows[:, 3] = np.cumsum(v) - v
    rows[:, 4] = np.cumsum(v)
    if active == 32:
        lanes = np.arange(32)
        rows[:, 5] = v[lanes ^ 5]
        rows[:, 6] = np.where(lanes + 3 < 32, v[np.minimum(lanes + 3, 31)], v)
        rows[:, 7] = v[7] + np.where(lanes == 0, 1000, 0)
    return rows


def test_simd_collectives_full_and_partial_groups(probe, rng):
    x = rng.integers(-100, 100, 48).astype(np.int32)
    out = np.full((48, 8), -12345, np.int32)
    probe.kernel("simd_probe")(x, out, threads=48, threadgroup=48)  # SIMD-groups of 32 and 16 lanes
    np.testing.assert_array_equal(out[:32], _simd_expected(x[:32], 32))
    np.testing.assert_array_equal(out[32:, :5], _simd_expected(x[32:], 16)[:, :5])


def test_atomics_across_workers(probe, rng):
    x = rng.integers(0, 1000, 10000).astype(np.uint32)
    bins = np.zeros(16, np.uint32)
    probe.kernel("histogram")(x, bins, np.uint32(x.size), threads=x.size, threadgroup=256, workers=2)
    np.testing.assert_array_equal(bins, np.bincount(x % 16, minlength=16))


def test_threadgroup_memory_argument(probe, rng):
    x = rng.standard_normal(256).astype(np.float32)
    y = np.full_like(x, np.nan)
    probe.kernel("reverse_through_tg_arg")(x, y, grid=4, threadgroup=64, threadgroup_memory=[64 * 4])
    np.testing.assert_array_equal(y, x.reshape(4, 64)[:, ::-1].ravel())
    with pytest.raises(mslsim.DispatchError, match="no threadgroup memory length set at index 0"):
        probe.kernel("reverse_through_tg_arg")(x, y, grid=4, threadgroup=64)


def test_function_constants(probe):
    y = np.full(40, np.nan, np.float32)
    probe.kernel("constants_probe", {"fc_negate": True, "fc_scale": 0.5})(y, threads=40, threadgroup=32)
    np.testing.assert_array_equal(y, -0.5 * np.arange(40))
    probe.kernel("constants_probe", {0: False, "fc_scale": 2.0, "fc_optional": 7})(y, threads=40, threadgroup=32)
    np.testing.assert_array_equal(y, 2.0 * np.arange(40) + 7)
    with pytest.raises(mslsim.DispatchError, match="function constant 'fc_scale' .* has no value"):
        probe.kernel("constants_probe", {"fc_negate": True})(y, threads=40, threadgroup=32)
    with pytest.raises(ValueError, match="no function constant 'fc_nope'"):
        probe.kernel("constants_probe", {"fc_nope": 1})


def test_dispatch_threads_edge_groups(probe):
    size = np.array([10, 7], np.uint32)
    out = np.zeros((7, 10, 4), np.uint32)
    probe.kernel("grid_probe")(out, size, threads=(10, 7), threadgroup=(4, 4))
    gx, gy = np.meshgrid(np.arange(10) // 4, np.arange(7) // 4)
    np.testing.assert_array_equal(out[..., 0], np.where(gx == 2, 2, 4))  # 10 = 4 + 4 + 2
    np.testing.assert_array_equal(out[..., 1], np.where(gy == 1, 3, 4))  # 7 = 4 + 3
    np.testing.assert_array_equal(out[..., 2], gx + 100 * gy)
    np.testing.assert_array_equal(out[..., 3], 1)


def test_vector_layouts_and_bfloat(probe, rng):
    import ml_dtypes
    v = rng.standard_normal((8, 4)).astype(np.float16)
    p = np.zeros((8, 4), np.float32)  # float3 occupies 16 bytes in Metal
    p[:, :3] = rng.standard_normal((8, 3))
    b = rng.standard_normal(8).astype(ml_dtypes.bfloat16)
    v0, p0, b0 = v.astype(np.float64), p.astype(np.float64), b.astype(np.float64)
    probe.kernel("vector_probe")(v, p, b, np.float32(0.25), threads=8, threadgroup=8)
    np.testing.assert_allclose(v.astype(np.float64), v0 * 0.25 + 0.5, rtol=2e-3, atol=1e-3)
    np.testing.assert_allclose(p[:, 0], (p0[:, :3] ** 2).sum(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(p[:, 1], p0[:, 1])
    np.testing.assert_array_equal(p[:, 2], np.maximum(p0[:, 0], p0[:, 2]))
    np.testing.assert_array_equal(b.astype(np.float64), b0 * 2)  # exact: a power of two


def test_subset_coverage_probe(probe):
    out = np.zeros((4, 8), np.float32)
    counter = np.zeros(1, np.int32)
    probe.kernel("coverage_probe")(out, counter, threads=4, threadgroup=4)
    x = 0.25 + np.arange(4)
    v1 = -x
    np.testing.assert_allclose(out[:, 0], 1.5 + (x >= 0.5) + np.clip(x, 0, 1) - 1, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], np.clip(v1, -1, 1) + x + np.where(x > 1, 2, 1), rtol=1e-6)
    np.testing.assert_allclose(out[:, 2], 2 + (x - np.floor(x)) + np.trunc(-x) + np.round(x), rtol=1e-6)
    np.testing.assert_allclose(out[:, 3], 1 / x + 1 + 8 + 3, rtol=1e-6)
    np.testing.assert_array_equal(out[:, 4], 2)
    np.testing.assert_allclose(out[:, 5], x + [1, 2, 2, 3], rtol=1e-6)
    assert counter[0] == 3
    np.testing.assert_array_equal(out[:, 6], 2 + 1)
    np.testing.assert_array_equal(out[:, 7], 2.0 ** np.arange(1, 5) + 1)

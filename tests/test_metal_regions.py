"""Elementwise regions on the metal device: connected float elementwise ops become one dispatch of
the register-program kernel (shaders/program.metal), with the same values as the unfused ops.

Needs a Metal device (on Linux the -Dmetal=mock build that `.ci/run` builds and runs)."""
import numpy as np
import pytest

import metalcandle as mc

if "metal" not in mc.devices():
    pytest.skip("no metal device in this build (on Linux: pip install . -Csetup-args=-Dmetal=mock)",
                allow_module_level=True)

from metalcandle.backends import metal_backend                  # noqa: E402
from helpers import metal_counted                                # noqa: E402

try:
    import ml_dtypes
    HALVES = ["float16", "bfloat16"]
except ImportError:      # bfloat16 needs ml_dtypes
    ml_dtypes = None
    HALVES = ["float16"]


pytestmark = pytest.mark.usefixtures("on_metal")


def counted(fn):
    return metal_counted(fn, ("dispatches", "fallbacks", "regions"))


def both(build, *arrays):
    """(fused result, stats, unfused result) of build(*tensors) on fresh tensors each time."""
    y, d = counted(lambda: build(*[mc.array(a) for a in arrays]).numpy())
    mc.set_fusion(False)
    try:
        ref = build(*[mc.array(a) for a in arrays]).numpy()
    finally:
        mc.set_fusion(True)
    return y, d, ref


def chain20(x, b):
    y = x
    for i in range(20):
        y = [lambda v: v * 0.9 + b, mc.tanh, lambda v: mc.maximum(v, -0.5), mc.sigmoid,
             lambda v: 1.5 - v][i % 5](y)
    return y


def test_twenty_op_chain_is_one_dispatch(rng):
    x = rng.standard_normal((16, 33)).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    y, d, ref = both(chain20, x, b)
    assert d == {"dispatches": 1, "fallbacks": 0, "regions": 1}, d
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    xv, bv = x.astype(np.float64), b.astype(np.float64)
    r = xv
    for i in range(20):
        r = [lambda v: v * 0.9 + bv, np.tanh, lambda v: np.maximum(v, -0.5),
             lambda v: 1 / (1 + np.exp(-v)), lambda v: 1.5 - v][i % 5](r)
    np.testing.assert_allclose(y, r, rtol=1e-5, atol=1e-6)


def test_broadcast_reflected_scalars_and_where(rng):
    a = rng.uniform(0.5, 2.0, (4, 1, 6)).astype(np.float32)
    b = rng.standard_normal((5, 6)).astype(np.float32)
    c = rng.standard_normal((4, 5, 1)).astype(np.float32)

    def build(A, B, C):
        cond = C > 0                                   # bool: computed first, a region input
        return mc.where(cond, 2.0 / A - B, mc.exp(-B) ** 2) * 3.0 - mc.abs(C)
    y, d, ref = both(build, a, b, c)
    # every float op broadcasts at most 8x into the output: one region (+ the comparison)
    assert d["regions"] == 1 and d["fallbacks"] == 0 and d["dispatches"] == 2, d
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    a64, b64, c64 = (v.astype(np.float64) for v in (a, b, c))
    expect = np.where(c64 > 0, 2.0 / a64 - b64, np.exp(-b64) ** 2) * 3.0 - np.abs(c64)
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", HALVES)
def test_half_regions_round_once(rng, dtype):
    x = rng.standard_normal((8, 40)).astype(np.float32)
    X = mc.array(x).astype(dtype)
    mc.eval(X)
    y, d = counted(lambda: (mc.silu(X * 1.1 + 0.25) - mc.gelu(X) * 0.5).numpy())
    assert d == {"dispatches": 1, "fallbacks": 0, "regions": 1}, d
    assert y.dtype == np.dtype(dtype if dtype == "float16" else ml_dtypes.bfloat16)
    xh = np.asarray(X).astype(np.float64)
    c11 = float(np.asarray(np.float64(1.1)).astype(y.dtype))   # the scalar rounds to the dtype
    z = xh * c11 + 0.25
    from math import erf
    ref = z / (1 + np.exp(-z)) - 0.5 * xh * (1 + np.vectorize(erf)(xh / np.sqrt(2))) * 0.5
    tol = 1e-3 if dtype == "float16" else 8e-3     # one rounding of the result
    np.testing.assert_allclose(y.astype(np.float64), ref, rtol=tol, atol=tol)


def test_held_intermediate_is_computed_and_splits_the_region(rng):
    x = rng.standard_normal((6, 9)).astype(np.float32)
    X = mc.array(x)
    mid = mc.exp(X) * 0.5           # the user holds it: it must be materialised
    out = mc.tanh(mid) + mid * 2.0
    _, d = counted(lambda: mc.eval(out, mid))
    assert d["regions"] == 2 and d["fallbacks"] == 0, d
    m64 = np.exp(x.astype(np.float64)) * 0.5
    np.testing.assert_allclose(np.asarray(mid), m64, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out), np.tanh(m64) + m64 * 2, rtol=1e-6)


def test_long_chains_and_wide_regions_split_within_kernel_limits(rng):
    x = rng.standard_normal(300).astype(np.float32)
    parts = [rng.standard_normal(300).astype(np.float32) for _ in range(30)]

    def build(X, *P):
        y = X
        for _ in range(60):                 # 120 ops: more than one region (40 ops at most)
            y = mc.tanh(y) * 1.01
        for p in P:                         # 30 distinct inputs: more than 24 bindings
            y = y + p
        return y
    y, d, ref = both(build, x, *parts)
    assert d["regions"] >= 3 and d["fallbacks"] == 0 and d["dispatches"] == d["regions"], d
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)


def test_inputs_untouched_and_non_float_ops_stay_outside(rng):
    x = rng.standard_normal((5, 5)).astype(np.float32)
    X = mc.array(x)
    i = mc.array(rng.integers(-5, 5, (5, 5)).astype(np.int32))
    y = (mc.exp(X) + 1.0) * (i * 2).astype(mc.float32) - X
    ref = (np.exp(x.astype(np.float64)) + 1) * (np.asarray(i) * 2) - x
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(X), x)


def test_region_fallback_when_the_kernel_is_missing(rng):
    x = rng.standard_normal((3, 7)).astype(np.float32)
    be = metal_backend.get()
    be.missing.add("program_run_f32")
    try:
        y, d = counted(lambda: (mc.exp(mc.array(x)) * 2.0 + 1.0).numpy())
    finally:
        be.missing.discard("program_run_f32")
    assert d["regions"] == 1 and d["fallbacks"] == 1 and d["dispatches"] == 0, d
    np.testing.assert_allclose(y, np.exp(x.astype(np.float64)) * 2 + 1, rtol=1e-6)


# ------------------------------------------------------------------ plan cache
def plan_counts():
    s = mc._executor_stats()
    return s["fusion_plan_hits"], s["fusion_plan_misses"]


def test_rebuilt_graph_is_planned_once(rng):
    from metalcandle import _fusion
    _fusion.clear_plans()
    x = rng.standard_normal((16, 33)).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    h0, m0 = plan_counts()
    outs = [chain20(mc.array(x), mc.array(b)).numpy() for _ in range(4)]
    h1, m1 = plan_counts()
    assert (h1 - h0, m1 - m0) == (3, 1)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    # a different scalar is a different plan (the constant lives in the program)
    y = (mc.exp(mc.array(x)) * 3.0 + 1.0).numpy()
    z = (mc.exp(mc.array(x)) * 4.0 + 1.0).numpy()
    assert plan_counts()[1] == m1 + 2
    np.testing.assert_allclose(z - y, np.exp(x.astype(np.float64)), rtol=1e-5, atol=1e-5)


def test_plan_keys_see_identity_and_observers(rng):
    a = rng.standard_normal((4, 10)).astype(np.float32)
    c = rng.standard_normal((4, 10)).astype(np.float32)

    def soft(x, y):   # softmax only when x is y: the cache must not replay a match for x != y
        e = mc.exp(x - mc.max(y, axis=-1, keepdims=True))
        return e / mc.sum(e, axis=-1, keepdims=True)
    A, C = mc.array(a), mc.array(c)
    mc.eval(A, C)
    before = mc._executor_stats()["fusion_softmax"]
    s1 = soft(A, A).numpy()
    s2 = soft(A, C).numpy()
    assert mc._executor_stats()["fusion_softmax"] == before + 1
    e = np.exp(a - a.max(-1, keepdims=True))
    np.testing.assert_allclose(s1, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    e = np.exp(a - c.max(-1, keepdims=True))
    np.testing.assert_allclose(s2, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    # the same structure with an intermediate held by the user: that node must be materialised
    X = mc.array(a)
    for held in (False, True, False):
        mid = mc.exp(X) * 0.5
        out = mc.tanh(mid) + 1.0
        if held:
            mc.eval(out, mid)
            np.testing.assert_allclose(np.asarray(mid), np.exp(a.astype(np.float64)) * 0.5,
                                       rtol=1e-6)
        del mid
        np.testing.assert_allclose(out.numpy(), np.tanh(np.exp(a.astype(np.float64)) * 0.5) + 1,
                                   rtol=1e-6)


# ------------------------------------------------------------------ generated kernels (opt-in)
@pytest.fixture
def codegen():
    old = mc.metal.set_region_codegen(True)
    yield metal_backend.get()
    mc.metal.set_region_codegen(old)


def test_generated_kernels_match_the_interpreter_and_compile_once(rng, codegen):
    a = rng.uniform(0.5, 2.0, (6, 1, 9)).astype(np.float32)
    b = rng.standard_normal((7, 9)).astype(np.float32)
    c = rng.standard_normal((6, 7, 1)).astype(np.float32)

    def build(A, B, C):      # every opcode family: unary, binary, scalars, where with a bool input
        u = mc.sqrt(A) + mc.exp(-B) * mc.tanh(C) - mc.sigmoid(B) / A
        v = mc.maximum(mc.silu(u), mc.minimum(mc.gelu(B), 0.5)) ** 2.0 + mc.abs(mc.sign(C))
        return mc.where(C > 0, mc.relu(v) + mc.floor(u), mc.ceil(v) - mc.rsqrt(A) * 3.0)
    first, d1 = counted(lambda: build(*[mc.array(v) for v in (a, b, c)]).numpy())
    compiles = codegen.regions.compiled
    again, d2 = counted(lambda: build(*[mc.array(v) for v in (a, b, c)]).numpy())
    assert codegen.regions.compiled == compiles >= 1 and not codegen.regions.failed
    assert d1["regions"] == d2["regions"] >= compiles and d1["fallbacks"] == 0
    mc.metal.set_region_codegen(False)
    ref = build(*[mc.array(v) for v in (a, b, c)]).numpy()
    np.testing.assert_allclose(first, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(again, first)
    # a changed constant is the same structure: no new kernel
    mc.metal.set_region_codegen(True)
    y = (mc.exp(mc.array(a)) * 2.0 + 1.0).numpy()
    n = codegen.regions.compiled
    z = (mc.exp(mc.array(a)) * 3.0 + 1.0).numpy()
    assert codegen.regions.compiled == n
    np.testing.assert_allclose(z - y, np.exp(a.astype(np.float64)), rtol=1e-5, atol=1e-5)


def test_generated_kernel_compile_error_falls_back_to_the_interpreter(rng, codegen):
    from metalcandle import _metal
    x = rng.standard_normal((3, 11)).astype(np.float32)
    _metal.mock_fail_compiles(1)
    y, d = counted(lambda: (mc.cos(mc.array(x)) * 0.25 - 4.0).numpy())
    assert d["dispatches"] == 1 and d["fallbacks"] == 0 and len(codegen.regions.failed) == 1, d
    np.testing.assert_allclose(y, np.cos(x.astype(np.float64)) * 0.25 - 4, rtol=1e-6)

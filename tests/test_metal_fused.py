"""The fused primitives on the metal device: each must run as its Metal dispatch(es), counted
(no NumPy fallback), and agree with a float64 NumPy reference.

Includes the predecessor's (metal-candle) LoRA / softmax / RMSNorm suites on the Metal path:
float32 inputs, max abs difference < 1e-5 against float64, through the fused API and through
the composite a user writes (which the executor rewrites into the fused primitive).

The device tests exist only where a Metal device does (on Linux the -Dmetal=mock build, whose GPU
is the MSL simulator running shaders/*.metal); elsewhere only the host-side checks of the
argument packing below are collected.
"""
import struct

import numpy as np
import pytest

import metalcandle as mc
from metalcandle.backends import metal_fused, np_fused
from fused_refs import f32, lora_weights, ref_softmax, ref_rms, ref_ln, check, softmax_composite

METAL = "metal" in mc.devices()


# ------------------------------------------------------------------ host side (every build)
def test_rope_frequency_table_is_a_float64_split():
    for dims, base, scale in [(64, 10000.0, 1.0), (6, 500.0, 0.25), (128, 1e6, 3.0)]:
        t = metal_fused.rope_freq_table(dims, base, scale)
        assert t.dtype == np.float32 and t.shape == (dims,)
        f = scale * base ** (-np.arange(0, dims, 2) / dims)
        np.testing.assert_array_equal(t[0::2], f.astype(np.float32))
        np.testing.assert_allclose(t[0::2].astype(np.float64) + t[1::2], f, rtol=1e-13, atol=0)


def test_argument_packing_matches_the_shader_structs():
    # lora.metal mc_lora_args: 4 x int64, scale, reserved
    assert struct.unpack("<4q2f", metal_fused.lora_args(3, 4, 5, 6, 0.5)) == (3, 4, 5, 6, 0.5, 0.0)
    # rope.metal mc_rope_args: rows, L, D, dims, offset
    assert struct.unpack("<5q", metal_fused.rope_args(6, 3, 16, 8, 2)) == (6, 3, 16, 8, 2)
    # attention.metal mc_sdpa_args: 7 x int32, float scale, then 4 x 4 int64 strides (8-aligned)
    a = metal_fused.sdpa_args(1, 4, 2, 5, 7, 8, 8, 0.25, (1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (0, 0, 7, 1))
    assert len(a) == 32 + 16 * 8
    assert struct.unpack_from("<7if", a) == (1, 4, 2, 5, 7, 8, 8, 0.25)
    assert struct.unpack_from("<16q", a, 32) == tuple(range(1, 13)) + (0, 0, 7, 1)
    # matmul.metal mc_matmul_args of a contiguous (M, K) @ (K, N)
    assert struct.unpack("<4i7q", metal_fused.matmul_args(3, 5, 7)) == (3, 5, 7, 1, 0, 7, 1, 0, 5, 1, 15)
    assert set(metal_fused.KERNELS) == {"layer_norm", "log_softmax", "rope", "lora", "lora_linear",
                                        "scaled_dot_product_attention"}


def f64(a):
    return None if a is None else np.asarray(a).astype(np.float64)


if METAL:
    from metalcandle.backends import metal_backend

    pytestmark = pytest.mark.usefixtures("on_metal")

    def counted(*ts):
        """Evaluate ts; (dispatches, fallbacks) it took. Inputs should be evaluated already."""
        be = metal_backend.get()
        d0, f0 = mc.metal.stats()["dispatches"], be.fallbacks
        mc.eval(*ts)
        return mc.metal.stats()["dispatches"] - d0, be.fallbacks - f0

    def ready(*arrays):
        """mc arrays of NumPy values, evaluated (uploaded) before anything is counted."""
        ts = [mc.array(a) if a is not None else None for a in arrays]
        mc.eval(*[t for t in ts if t is not None])
        return ts

    class Recorder:
        """Stands in for the backend's device: records every dispatch, forwards everything."""

        def __init__(self, dev):
            self._dev = dev
            self.calls = []

        def dispatch(self, name, buffers, grid, threadgroup, **kw):
            self.calls.append((name, list(buffers), tuple(grid), tuple(threadgroup), kw.get("threads", False)))
            return self._dev.dispatch(name, buffers, grid, threadgroup, **kw)

        def __getattr__(self, attr):
            return getattr(self._dev, attr)

    # -------------------------------------------------------------- LoRA (predecessor suite)
    LORA_CASES = [((1, 16), 4, 16, 8.0 / 4), ((8, 64), 8, 64, 2.0), ((1, 10, 128), 8, 128, 2.0),
                  ((4, 20, 128), 8, 128, 2.0), ((8, 5, 128), 8, 128, 2.0)] + \
                 [((4, 64), r, 64, 16.0 / r) for r in (2, 4, 8, 16)]

    @pytest.mark.parametrize("xshape,rank,out,scale", LORA_CASES)
    @pytest.mark.parametrize("form", ["fused", "composite"])
    def test_lora_is_two_dispatches(rng, xshape, rank, out, scale, form):
        x = f32(rng, *xshape)
        a, b = lora_weights(rng, xshape[-1], rank, out)
        X, A, B = ready(x, a, b)
        y = mc.fast.lora(X, A, B, scale) if form == "fused" else (X @ A) @ B * scale
        assert counted(y) == (2, 0)
        check(y, scale * (x.astype(np.float64) @ a) @ b)

    @pytest.mark.parametrize("with_bias", [True, False])
    def test_lora_linear_is_two_dispatches(rng, with_bias):
        x, w = f32(rng, 3, 7, 32), f32(rng, 32, 24) / np.sqrt(32)
        bias = f32(rng, 24) if with_bias else None
        a, b = lora_weights(rng, 32, 4, 24)
        X, W, Bias, A, B = ready(x, w, bias, a, b)
        y = mc.fast.lora_linear(X, W, Bias, A, B, 0.5)
        assert counted(y) == (2, 0)
        ref = x.astype(np.float64) @ w + 0.5 * (x.astype(np.float64) @ a) @ b
        check(y, ref + bias if with_bias else ref)

    def test_lora_computes_x_at_a_once():
        """The predecessor recomputed x @ a for every output column. Here one dispatch reads x and
        a (one threadgroup per row computing its rank values into a (rows, rank) buffer) and the
        second reads only that buffer and b: rows * rank * (n_in + n_out) multiply-adds."""
        rng = np.random.default_rng(7)
        rows, n_in, rank, n_out = 24, 256, 8, 384
        x = f32(rng, rows, n_in)
        a, b = lora_weights(rng, n_in, rank, n_out)
        X, A, B = ready(x, a, b)
        be = metal_backend.get()
        xbuf, abuf = be.binding(np.asarray(X)), be.binding(np.asarray(A))
        rec = Recorder(be.dev)
        be.dev = rec
        try:
            y = mc.fast.lora(X, A, B, 0.5)
            mc.eval(y)
        finally:
            be.dev = rec._dev
        assert [c[0] for c in rec.calls] == ["lora_down_f32", "lora_up_f32"]
        (_, down_bufs, down_grid, down_tg, down_threads), (_, up_bufs, up_grid, _, up_threads) = rec.calls

        def binds(bufs, target):
            return any(isinstance(b, tuple) and b[0] is target[0] and b[1] == target[1] for b in bufs)
        assert binds(down_bufs, xbuf) and binds(down_bufs, abuf)
        assert not binds(up_bufs, xbuf) and not binds(up_bufs, abuf)
        assert up_bufs[0] is down_bufs[2]                  # the intermediate t, handed over
        assert not down_threads and down_grid == (rows, 1, 1) and down_tg[0] % 32 == 0
        assert up_threads and up_grid == (n_out, rows, 1)  # one thread per output element
        check(y, 0.5 * (x.astype(np.float64) @ a) @ b)

    @pytest.mark.parametrize("dtype,tol", [("float16", 2e-2), ("bfloat16", 6e-2)])
    def test_lora_half_dtypes(rng, dtype, tol):
        x = f32(rng, 5, 64)
        a, b = lora_weights(rng, 64, 8, 48)
        X, A, B = (t.astype(getattr(mc, dtype)) for t in ready(x, a, b))
        mc.eval(X, A, B)
        y = mc.fast.lora(X, A, B, 2.0)
        assert counted(y) == (2, 0)
        xs, as_, bs = (np.asarray(t.astype(mc.float32)).astype(np.float64) for t in (X, A, B))
        check(y, 2.0 * (xs @ as_) @ bs, tol)

    # -------------------------------------------------------------- softmax / RMSNorm (predecessor)
    @pytest.mark.parametrize("shape", [(64,), (4, 64), (2, 10, 64), (3, 5000)])
    @pytest.mark.parametrize("form", ["fused", "composite"])
    def test_softmax_is_one_dispatch(rng, shape, form):
        x = f32(rng, *shape)
        (X,) = ready(x)
        y = mc.softmax(X, -1) if form == "fused" else softmax_composite(X, -1)
        assert counted(y) == (1, 0)
        check(y, ref_softmax(x))

    @pytest.mark.parametrize("shape", [(64,), (4, 64), (2, 10, 128), (2, 5000)])
    @pytest.mark.parametrize("eps", [1e-5, 1e-6, 1e-3])
    @pytest.mark.parametrize("weighted", [True, False])
    @pytest.mark.parametrize("form", ["fused", "composite"])
    def test_rms_norm_is_one_dispatch(rng, shape, eps, weighted, form):
        x = f32(rng, *shape)
        w = f32(rng, shape[-1]) if weighted else None
        X, W = ready(x, w)
        if form == "fused":
            y = mc.fast.rms_norm(X, W, eps)
        else:
            y = X * mc.rsqrt(mc.mean(X * X, -1, keepdims=True) + eps)
            y = y * W if weighted else y
        assert counted(y) == (1, 0)
        check(y, ref_rms(x, w, eps))

    def test_log_softmax_is_one_dispatch(rng):
        for shape in [(3, 40), (2, 7000), (5,)]:
            x = f32(rng, *shape) * 3
            (X,) = ready(x)
            y = mc.log_softmax(X)
            assert counted(y) == (1, 0)
            check(y, np.log(ref_softmax(x)))

    # -------------------------------------------------------------- layer norm
    @pytest.mark.parametrize("shape", [(64,), (2, 10, 128), (3, 4100)])
    @pytest.mark.parametrize("has_w,has_b", [(True, True), (False, False), (True, False), (False, True)])
    def test_layer_norm_is_one_dispatch(rng, shape, has_w, has_b):
        x = f32(rng, *shape) + 20.0
        w = f32(rng, shape[-1]) if has_w else None
        b = f32(rng, shape[-1]) if has_b else None
        X, W, B = ready(x, w, b)
        y = mc.fast.layer_norm(X, W, B, 1e-5)
        assert counted(y) == (1, 0)
        check(y, ref_ln(x, w, b, 1e-5))

    def test_layer_norm_composite_is_rewritten_to_the_kernel(rng):
        x, w, b = f32(rng, 2, 10, 128), f32(rng, 128), f32(rng, 128)
        X, W, B = ready(x, w, b)
        # (inline: a named intermediate held by the test would be kept, so never fused away)
        y = (X - mc.mean(X, -1, keepdims=True)) * mc.rsqrt(mc.var(X, -1, keepdims=True) + 1e-5) * W + B
        assert counted(y) == (1, 0)
        check(y, ref_ln(x, w, b, 1e-5))

    def test_strided_input_is_copied_on_the_device(rng):
        x = f32(rng, 48, 6)
        (X,) = ready(x)
        xt = mc.transpose(X)              # a view op: computed first, outside the count
        mc.eval(xt)
        y = mc.fast.layer_norm(xt, None, None, 1e-5)
        assert counted(y) == (2, 0)       # copy_strided + layernorm_block
        check(y, ref_ln(x.T, None, None, 1e-5))

    @pytest.mark.parametrize("dtype,tol", [("float16", 1e-2), ("bfloat16", 5e-2)])
    def test_layer_norm_half_dtypes(rng, dtype, tol):
        x, w, b = f32(rng, 6, 300), f32(rng, 300), f32(rng, 300)
        X, W, B = (t.astype(getattr(mc, dtype)) for t in ready(x, w, b))
        mc.eval(X, W, B)
        y = mc.fast.layer_norm(X, W, B, 1e-5)
        assert counted(y) == (1, 0)
        xs, ws, bs = (np.asarray(t.astype(mc.float32)).astype(np.float64) for t in (X, W, B))
        check(y, ref_ln(xs, ws, bs, 1e-5), tol)

    # -------------------------------------------------------------- rope
    @pytest.mark.parametrize("traditional", [False, True])
    @pytest.mark.parametrize("dims,offset,base,scale", [(16, 0, 10000.0, 1.0), (8, 3, 10000.0, 1.0),
                                                        (12, 4000, 500.0, 0.5)])
    def test_rope_is_one_dispatch(rng, traditional, dims, offset, base, scale):
        x = f32(rng, 2, 3, 5, 16)
        (X,) = ready(x)
        y = mc.fast.rope(X, dims, traditional=traditional, base=base, scale=scale, offset=offset)
        assert counted(y) == (1, 0)
        check(y, np_fused.rope(x.astype(np.float64), dims, traditional, base, scale, offset))

    def test_rope_bfloat16(rng):
        x = f32(rng, 4, 9, 32)
        (X,) = ready(x)
        Xh = X.astype(mc.bfloat16)
        mc.eval(Xh)
        y = mc.fast.rope(Xh, 32, offset=100)
        assert counted(y) == (1, 0)
        xs = np.asarray(Xh.astype(mc.float32)).astype(np.float64)
        check(y, np_fused.rope(xs, 32, False, 10000.0, 1.0, 100), 5e-2)

    # -------------------------------------------------------------- attention
    def sdpa_ref(q, k, v, scale, mask):
        if mask is not None and not isinstance(mask, str):
            mask = mask if mask.dtype == np.bool_ else f64(mask)
        return np_fused.scaled_dot_product_attention(f64(q), f64(k), f64(v), scale, mask)

    @pytest.mark.parametrize("mask", [None, "causal", "bool", "additive"])
    @pytest.mark.parametrize("shapes", [((2, 4, 5, 8), (2, 2, 7, 8), (2, 2, 7, 8)),
                                        ((1, 6, 9, 64), (1, 3, 40, 64), (1, 3, 40, 32)),
                                        ((1, 2, 6, 16), (1, 1, 4, 16), (1, 1, 4, 16))])
    def test_sdpa_is_one_dispatch(rng, mask, shapes):
        q, k, v = (f32(rng, *s) for s in shapes)
        B, Hq, Lq, _ = q.shape
        Lk = k.shape[2]
        m = mask
        if mask == "bool":
            m = rng.random((Hq, 1, Lk)) > 0.3       # broadcast over batch and query rows
            m[0, 0, :] = False                      # a head that sees nothing: the mean of v
        elif mask == "additive":
            m = f32(rng, 1, 1, Lq, Lk)
        Q, K, V = ready(q, k, v)
        M = mc.array(m) if m is not None and not isinstance(m, str) else m
        if M is not None and not isinstance(M, str):
            mc.eval(M)
        y = mc.fast.scaled_dot_product_attention(Q, K, V, scale=q.shape[-1] ** -0.5, mask=M)
        assert counted(y) == (1, 0)
        check(y, sdpa_ref(q, k, v, q.shape[-1] ** -0.5, m))

    def test_sdpa_reads_transposed_heads_in_place(rng):
        # (B, L, H, D) projections viewed as (B, H, L, D): no copy, one dispatch
        q, k, v = f32(rng, 2, 5, 4, 16), f32(rng, 2, 9, 2, 16), f32(rng, 2, 9, 2, 16)
        Q, K, V = (mc.transpose(t, (0, 2, 1, 3)) for t in ready(q, k, v))
        mc.eval(Q, K, V)
        y = mc.fast.scaled_dot_product_attention(Q, K, V, scale=0.25, mask="causal")
        assert counted(y) == (1, 0)
        tq, tk, tv = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        check(y, sdpa_ref(tq, tk, tv, 0.25, "causal"))

    def test_sdpa_float16(rng):
        q, k, v = f32(rng, 1, 4, 8, 32), f32(rng, 1, 2, 12, 32), f32(rng, 1, 2, 12, 32)
        Q, K, V = (t.astype(mc.float16) for t in ready(q, k, v))
        mc.eval(Q, K, V)
        y = mc.fast.scaled_dot_product_attention(Q, K, V, scale=32 ** -0.5, mask="causal")
        assert counted(y) == (1, 0)
        qs, ks, vs = (np.asarray(t.astype(mc.float32)) for t in (Q, K, V))
        check(y, sdpa_ref(qs, ks, vs, 32 ** -0.5, "causal"), 1e-2)

    # -------------------------------------------------------------- what still falls back
    def test_unsupported_cases_fall_back_with_the_same_answer(rng):
        q, k, v = f32(rng, 1, 1, 3, 300), f32(rng, 1, 1, 4, 300), f32(rng, 1, 1, 4, 300)
        Q, K, V = ready(q, k, v)
        y = mc.fast.scaled_dot_product_attention(Q, K, V, scale=0.05)    # head dim > 256
        assert counted(y) == (0, 1)
        check(y, sdpa_ref(q, k, v, 0.05, None))
        x = f32(rng, 4, 16)
        a, b = lora_weights(rng, 16, 4, 8)
        X, A, B = ready(x, a, b)
        Xh = X.astype(mc.float16)                                        # mixed dtypes
        mc.eval(Xh)
        y = mc.fast.lora(Xh, A, B, 2.0)
        assert counted(y) == (0, 1)
        xs = np.asarray(Xh.astype(mc.float32)).astype(np.float64)
        check(y, 2.0 * (xs @ a) @ b)

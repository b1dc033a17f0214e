"""shaders/matmul.metal against NumPy: batched, odd sizes, transposed and broadcast operands."""

from __future__ import annotations

import numpy as np
import pytest

from ._helpers import FLOATS, MATMUL_ARGS, as_f64, element_strides, poisoned, random_array, run_both_orders

pytestmark = pytest.mark.sim
SHADERS = ["matmul"]

TILE = 32


def _matmul(shaders, suffix, a, b, a_view, b_view, batch, a_batch_stride, b_batch_stride):
    """Run matmul_tiled on views of the buffers a and b; returns C (batch, M, N)."""
    M, K = a_view.shape[-2:]
    N = b_view.shape[-1]
    args = np.zeros(1, MATMUL_ARGS)
    args["M"], args["N"], args["K"], args["batch"] = M, N, K, batch
    args["a_batch_stride"], args["b_batch_stride"] = a_batch_stride, b_batch_stride
    args["a_row_stride"], args["a_col_stride"] = element_strides(a_view)[-2:]
    args["b_row_stride"], args["b_col_stride"] = element_strides(b_view)[-2:]
    args["c_batch_stride"] = M * N
    c = poisoned((batch, M, N), a.dtype)
    run_both_orders(shaders["matmul"].kernel(f"matmul_tiled_{suffix}"), a, b, c, args, out_index=2,
                    grid=(-(-N // TILE), -(-M // TILE), batch), threadgroup=(16, 16))
    return c


def _check(c, a_view, b_view, suffix):
    expected = np.matmul(as_f64(a_view), as_f64(b_view))
    K = a_view.shape[-1]
    rtol = {"f32": 1e-5, "f16": 5e-3, "bf16": 2e-2}[suffix]
    atol = rtol * np.sqrt(K) * 2  # float accumulation of K products of O(1) values, rounded once
    np.testing.assert_allclose(as_f64(c), np.broadcast_to(expected, c.shape), rtol=rtol, atol=atol)


@pytest.mark.parametrize("batch,M,K,N", [(3, 37, 29, 53), (1, 1, 1, 1), (2, 64, 70, 33), (1, 5, 100, 3)])
@pytest.mark.parametrize("suffix", FLOATS)
def test_batched(shaders, rng, suffix, batch, M, K, N):
    a = random_array(rng, (batch, M, K), suffix, -1, 1)
    b = random_array(rng, (batch, K, N), suffix, -1, 1)
    c = _matmul(shaders, suffix, a, b, a, b, batch, M * K, K * N)
    _check(c, a, b, suffix)


@pytest.mark.parametrize("suffix", ["f32", "f16"])
def test_transposed_a_and_broadcast_b(shaders, rng, suffix):
    batch, M, K, N = 2, 33, 17, 40
    at = random_array(rng, (batch, K, M), suffix, -1, 1)
    a_view = at.transpose(0, 2, 1)  # (batch, M, K) with column stride M
    b = random_array(rng, (K, N), suffix, -1, 1)  # one B for every batch: batch stride 0
    c = _matmul(shaders, suffix, at, b, a_view, b, batch, K * M, 0)
    _check(c, a_view, b, suffix)

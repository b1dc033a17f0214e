"""The whole Metal path: Python -> Cython -> C policy -> Objective-C driver -> Metal.

On Linux (`mock`): Metal is the mock framework and its GPU the MSL simulator running the shipped
shaders/*.metal. On a Mac (`metal`, run with `pytest -m metal`): the same tests on the GPU.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import pytest

from metalcandle.errors import CommandBufferError, DeviceOutOfMemory, ShaderCompileError

from .conftest import MOCK, SHADERS

pytestmark = pytest.mark.parametrize("backend", [pytest.param("mock", marks=pytest.mark.mock),
                                                 pytest.param("metal", marks=pytest.mark.metal)])

rng = np.random.default_rng()


def contig(n):
    return struct.pack("<q", n)  # mc_contig_args


def row_args(rows, n, eps=1e-5):
    return struct.pack("<qqff", rows, n, eps, 0.0)  # mc_row_args


def upload(dev, array):
    return dev.buffer_from(np.ascontiguousarray(array))


def poisoned(dev, nbytes):
    out = dev.buffer(nbytes)
    out.numpy("uint8")[:] = 0xFF  # NaN in every float type: an unwritten element shows
    return out


def exp_f32(dev, x, y, n):
    dev.dispatch("unary_exp_f32", [x, y, contig(n)], grid=n, threadgroup=256, threads=True, writes=(1,))


def test_unary_exp_matches_numpy(gpu, backend):
    x = rng.standard_normal(1000).astype(np.float32)
    bx, by = upload(gpu, x), poisoned(gpu, x.nbytes)
    exp_f32(gpu, bx, by, x.size)
    gpu.sync()
    np.testing.assert_allclose(by.numpy("float32"), np.exp(x), rtol=2e-6)


@pytest.mark.parametrize("has_weight", [True, False])
def test_rmsnorm_function_constant(gpu, backend, has_weight):
    rows, n = 6, 300
    x = rng.standard_normal((rows, n)).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    bx, bw, out = upload(gpu, x), upload(gpu, w), poisoned(gpu, x.nbytes)
    tg = math.ceil(n / 4 / 32) * 32
    gpu.dispatch("rmsnorm_block", [bx, bw if has_weight else None, out, row_args(rows, n)], grid=rows,
                 threadgroup=tg, dtype="f32", constants={"mc_has_weight": has_weight}, writes=(2,))
    gpu.sync()
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-5)
    if has_weight:
        ref = ref * w
    np.testing.assert_allclose(out.numpy("float32", (rows, n)), ref, rtol=1e-5, atol=1e-6)


def test_second_identical_pipeline_compiles_nothing(gpu, backend, native):
    gpu.pipeline("rmsnorm_block", "f32", {"mc_has_weight": True})
    before = gpu.stats()["pipeline_compiles"]
    builds = native.mock_counters()["pipeline_builds"]
    gpu.pipeline("rmsnorm_block", "f32", {"mc_has_weight": True})
    assert gpu.stats()["pipeline_compiles"] == before
    assert native.mock_counters()["pipeline_builds"] == builds
    gpu.pipeline("rmsnorm_block", "f32", {"mc_has_weight": False})
    assert gpu.stats()["pipeline_compiles"] == before + 1


def test_batching(gpu, backend, native):
    n = 64
    gpu.set_commit_every(8)
    x = upload(gpu, rng.standard_normal(n).astype(np.float32))
    outs = [gpu.buffer(4 * n) for _ in range(100)]
    exp_f32(gpu, x, outs[0], n)
    if MOCK:
        assert native.mock_counters()["kernel_runs"] == 0  # nothing runs before a commit
    for out in outs[1:]:
        exp_f32(gpu, x, out, n)
    gpu.sync()
    stats = gpu.stats()
    assert stats["dispatches"] == 100
    assert stats["command_buffers"] <= math.ceil(100 / 8) + 1
    if MOCK:
        assert native.mock_counters()["commits"] == stats["command_buffers"]
    assert all(np.array_equal(o.numpy("float32"), outs[0].numpy("float32")) for o in outs)


def test_hazard_barriers(gpu, backend):
    n = 512
    x = rng.standard_normal(n).astype(np.float32) * 0.1
    bx, a, b, c = upload(gpu, x), gpu.buffer(4 * n), gpu.buffer(4 * n), gpu.buffer(4 * n)
    exp_f32(gpu, bx, a, n)
    exp_f32(gpu, bx, b, n)  # independent
    assert gpu.stats()["barriers"] == 0
    exp_f32(gpu, a, c, n)   # reads a: RAW
    assert gpu.stats()["barriers"] == 1
    exp_f32(gpu, bx, a, n)  # rewrites a, read just before: WAR
    assert gpu.stats()["barriers"] == 2
    gpu.sync()
    np.testing.assert_allclose(c.numpy("float32"), np.exp(np.exp(x)), rtol=4e-6)


def test_buffer_freed_by_owner_stays_alive_until_completion(gpu, backend):
    n = 256
    x = rng.standard_normal(n).astype(np.float32)
    bx, by = upload(gpu, x), gpu.buffer(4 * n)
    exp_f32(gpu, bx, by, n)
    del bx  # unretained command buffer: only the policy keeps it alive
    gpu.sync()
    np.testing.assert_allclose(by.numpy("float32"), np.exp(x), rtol=2e-6)


def test_compile_error_names_the_metal_line(gpu, backend, tmp_path):
    src = tmp_path / "broken.metal"
    src.write_text('#include <metal_stdlib>\nusing namespace metal;\n\nkernel void broken_k(device float* x '
                   '[[buffer(0)]], uint i [[thread_position_in_grid]]) {\n  x[i] = no_such_symbol;\n}\n')
    with pytest.raises(ShaderCompileError, match=r"broken\.metal:5"):
        gpu.load_shader_file(src)


@pytest.mark.mock
def test_injected_compile_failure(gpu, backend, native):
    native.mock_fail_compiles(1)
    with pytest.raises(ShaderCompileError, match="injected"):
        gpu.load_library("kernel void k() {}\n", "k.metal")


@pytest.mark.mock
def test_oom_after_flush_and_retry(gpu, backend, native):
    cached = gpu.buffer(64 << 10)
    del cached
    native.mock_fail_allocations(1)
    b = gpu.buffer(1 << 20)
    assert gpu.stats()["oom_retries"] == 1 and b.nbytes == 1 << 20
    native.mock_fail_allocations(2)
    with pytest.raises(DeviceOutOfMemory):
        gpu.buffer(2 << 20)


@pytest.mark.mock
def test_command_buffer_failure_sticky_until_reset(gpu, backend, native):
    n = 64
    x = upload(gpu, np.ones(n, np.float32))
    y = gpu.buffer(4 * n)
    native.mock_fail_command_buffers(1)
    exp_f32(gpu, x, y, n)
    with pytest.raises(CommandBufferError, match="injected command buffer failure"):
        gpu.sync()
    with pytest.raises(CommandBufferError):
        exp_f32(gpu, x, y, n)
    gpu.reset()
    exp_f32(gpu, x, y, n)
    gpu.sync()
    np.testing.assert_allclose(y.numpy("float32"), np.e, rtol=2e-6)


def test_shader_source_keeps_lines(native, backend):
    text = native.shader_source(os.path.join(SHADERS, "unary.metal"))
    assert '#line 1 "unary.metal"' in text and '#line 1 "mc_kernel_args.h"' in text
    assert '#include "' not in text

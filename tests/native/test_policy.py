"""The portable C policy (src/native/*.c) through the pure-C test driver: runs everywhere.

The test driver runs the dispatches between two barriers in reverse order, so a missing barrier
gives a wrong result; in async mode a committed command buffer runs only when waited for.
"""

from __future__ import annotations

import math
import struct
import threading

import numpy as np
import pytest

from metalcandle.errors import CommandBufferError, DeviceOutOfMemory, ShaderCompileError

N = 256


def fill(dev, buf, value, n=N):
    dev.dispatch("fill_f32", [buf, struct.pack("<fI", value, n)], grid=n, threadgroup=64, threads=True, writes=(0,))


def scale(dev, src, dst, s, n=N):
    dev.dispatch("scale_f32", [src, dst, struct.pack("<fI", s, n)], grid=n, threadgroup=64, threads=True,
                 writes=(1,))


def f32(buf, n=N):
    return buf.numpy("float32", n)


def test_nothing_runs_before_commit(tdev, native):
    tdev.set_commit_every(1000)
    a = tdev.buffer(4 * N)
    f32(a)[:] = 0
    fill(tdev, a, 3.0)
    assert native.test_driver_stats()["dispatches_run"] == 0
    assert native.test_driver_stats()["commits"] == 0
    assert f32(a).max() == 0
    tdev.sync()
    assert native.test_driver_stats()["dispatches_run"] == 1
    assert (f32(a) == 3.0).all()


@pytest.mark.parametrize("every", [1, 7, 48])
def test_batching_commits_every_n(tdev, every):
    tdev.set_commit_every(every)
    bufs = [tdev.buffer(4 * N) for _ in range(100)]
    for i, b in enumerate(bufs):
        fill(tdev, b, float(i))
    tdev.sync()
    stats = tdev.stats()
    assert stats["dispatches"] == 100
    assert stats["command_buffers"] <= math.ceil(100 / every) + 1
    assert all(f32(b)[0] == i for i, b in enumerate(bufs))


def test_sync_without_work_commits_nothing(tdev):
    tdev.sync()
    assert tdev.stats()["command_buffers"] == 0


def test_pipeline_cache(tdev):
    tdev.pipeline("fill", dtype="f32")
    assert tdev.stats()["pipeline_compiles"] == 1
    p = tdev.pipeline("fill_f32")  # same function, same (no) constants
    assert p.function == "fill_f32"
    assert tdev.stats()["pipeline_compiles"] == 1 and tdev.stats()["pipeline_hits"] == 1
    tdev.pipeline("fill_const_f32", constants={0: 1.5, "flag": True})
    tdev.pipeline("fill_const_f32", constants={"flag": True, 0: 1.5})  # order does not matter
    assert tdev.stats()["pipeline_compiles"] == 2
    tdev.pipeline("fill_const_f32", constants={0: 2.5, "flag": True})  # another value: another pipeline
    assert tdev.stats()["pipeline_compiles"] == 3


def test_function_constants_reach_the_pipeline(tdev):
    a, b = tdev.buffer(4 * N), tdev.buffer(4 * N)
    for buf, value in ((a, 1.5), (b, -2.0)):
        tdev.dispatch("fill_const_f32", [buf, struct.pack("<I", N)], grid=N, threadgroup=64, threads=True,
                      constants={0: value}, writes=(0,))
    tdev.sync()
    assert (f32(a) == 1.5).all() and (f32(b) == -2.0).all()


def test_held_pipeline_dispatch(tdev):
    p = tdev.pipeline("fill_f32")
    a = tdev.buffer(4 * N)
    tdev.dispatch(p, [a, struct.pack("<fI", 4.0, N)], grid=N // 64, threadgroup=64, writes=(0,))
    tdev.sync()
    assert (f32(a) == 4.0).all()
    assert tdev.stats()["pipeline_compiles"] == 1


def test_buffer_reuse_within_2x(tdev):
    a = tdev.buffer(64 << 10)
    addr = a.address
    del a
    s = tdev.stats()
    assert s["cached_bytes"] == 64 << 10 and s["active_bytes"] == 0
    b = tdev.buffer(40 << 10)  # 64 KiB <= 2 x 40 KiB: reused
    assert b.address == addr and tdev.stats()["buffer_reuses"] == 1
    del b
    c = tdev.buffer(16 << 10)  # 64 KiB > 2 x 16 KiB: a new allocation
    assert c.address != addr and tdev.stats()["buffer_allocations"] == 2


def test_page_rounding(tdev):
    assert tdev.buffer(1).capacity == 256
    assert tdev.buffer(1000).capacity == 1024
    assert tdev.buffer(16384 + 1).capacity == 2 * 16384
    assert tdev.buffer(0).nbytes == 0


def test_cache_never_exceeds_its_limit(tdev):
    limit = 300 << 10
    tdev.set_cache_limit(limit)
    bufs = [tdev.buffer((16 << 10) * (1 + i % 5)) for i in range(40)]
    while bufs:
        bufs.pop()
        assert tdev.stats()["cached_bytes"] <= limit
    assert tdev.stats()["cached_bytes"] > 0
    assert tdev.set_cache_limit(0) == limit
    assert tdev.stats()["cached_bytes"] == 0


def test_default_cache_limit_is_bounded(tdev):
    assert 0 < tdev.stats()["cache_limit"] <= 1 << 30


def test_lru_eviction(tdev):
    a, b = tdev.buffer(16 << 10), tdev.buffer(16 << 10)
    b_addr = b.address
    del a  # least recently used
    del b
    tdev.set_cache_limit(16 << 10)  # room for one: `a` goes
    assert tdev.stats()["cached_bytes"] == 16 << 10
    assert tdev.buffer(16 << 10).address == b_addr


def test_clear_cache_and_memory_stats(tdev):
    bufs = [tdev.buffer(16 << 10) for _ in range(4)]
    assert tdev.stats()["active_bytes"] == 64 << 10
    del bufs
    s = tdev.stats()
    assert s["active_bytes"] == 0 and s["peak_bytes"] == 64 << 10 and s["cached_bytes"] == 64 << 10
    tdev.clear_cache()
    assert tdev.stats()["cached_bytes"] == 0


def test_hazards_barrier_only_when_needed(tdev, native):
    a, b, c = (tdev.buffer(4 * N) for _ in range(3))
    tdev.set_commit_every(1000)
    fill(tdev, a, 1.0)
    fill(tdev, b, 2.0)           # independent of the first: no barrier
    assert tdev.stats()["barriers"] == 0
    scale(tdev, a, c, 3.0)       # reads a, written above: RAW
    assert tdev.stats()["barriers"] == 1
    fill(tdev, a, 5.0)           # writes a, read by scale: WAR
    assert tdev.stats()["barriers"] == 2
    fill(tdev, a, 6.0)           # writes a again: WAW
    assert tdev.stats()["barriers"] == 3
    tdev.sync()
    assert (f32(c) == 3.0).all() and (f32(a) == 6.0).all() and (f32(b) == 2.0).all()
    assert native.test_driver_trace().count("B") == 3


def test_new_command_buffer_starts_without_hazards(tdev):
    a, c = tdev.buffer(4 * N), tdev.buffer(4 * N)
    tdev.set_commit_every(1)  # every dispatch in its own command buffer: ordered by the queue
    fill(tdev, a, 2.0)
    scale(tdev, a, c, 2.0)
    tdev.sync()
    assert tdev.stats()["barriers"] == 0 and (f32(c) == 4.0).all()


def test_missing_barrier_would_show(tdev):
    """Claiming no buffer is written (writes=()) suppresses the barrier: the test driver runs the
    pair in reverse order, as a GPU may overlap them, and the result is wrong."""
    a, c = tdev.buffer(4 * N), tdev.buffer(4 * N)
    f32(a)[:] = 0
    tdev.dispatch("fill_f32", [a, struct.pack("<fI", 1.0, N)], grid=N, threadgroup=64, threads=True, writes=())
    scale(tdev, a, c, 3.0)
    tdev.sync()
    assert tdev.stats()["barriers"] == 0
    assert (f32(c) == 0.0).all()  # scale ran first


def test_buffers_stay_alive_until_completion(tdev, native):
    native.test_driver_set_async(True)
    a, c = tdev.buffer(4 * N), tdev.buffer(4 * N)
    fill(tdev, a, 2.5)
    scale(tdev, a, c, 2.0)
    tdev.commit()
    a_capacity = a.capacity
    del a  # the owner lets go while the GPU still needs it
    s = tdev.stats()
    assert s["live_buffers"] == 2 and s["cached_bytes"] == 0 and s["in_flight"] == 1
    d = tdev.buffer(a_capacity)  # must not be handed the in-flight buffer
    assert native.test_driver_stats()["dispatches_run"] == 0
    tdev.sync()
    assert (f32(c) == 5.0).all()
    assert tdev.stats()["cached_bytes"] == a_capacity
    assert native.test_driver_stats()["violations"] == 0
    del d


def test_max_in_flight(tdev, native):
    native.test_driver_set_async(True)
    tdev.set_commit_every(1)
    tdev.set_max_in_flight(2)
    bufs = [tdev.buffer(4 * N) for _ in range(10)]
    for i, b in enumerate(bufs):
        fill(tdev, b, float(i))
        assert tdev.stats()["in_flight"] <= 2
    tdev.sync()
    assert all(f32(b)[0] == i for i, b in enumerate(bufs))


def test_oom_flushes_cache_and_retries_once(tdev, native):
    cached = tdev.buffer(64 << 10)
    del cached
    native.test_driver_fail_allocations(1)
    b = tdev.buffer(256 << 10)  # fails once, cache flushed, retried
    s = tdev.stats()
    assert s["oom_retries"] == 1 and s["cached_bytes"] == 0 and b.nbytes == 256 << 10
    native.test_driver_fail_allocations(2)
    with pytest.raises(DeviceOutOfMemory, match="mc_buffer_new"):
        tdev.buffer(512 << 10)
    assert isinstance(DeviceOutOfMemory("x"), MemoryError)


def test_command_buffer_failure_is_sticky_until_reset(tdev, native):
    a = tdev.buffer(4 * N)
    native.test_driver_fail_commands(1)
    fill(tdev, a, 1.0)
    with pytest.raises(CommandBufferError, match="injected command buffer failure"):
        tdev.sync()
    assert tdev.is_sticky
    with pytest.raises(CommandBufferError, match="error state"):
        fill(tdev, a, 1.0)
    with pytest.raises(CommandBufferError):
        tdev.sync()
    tdev.reset()
    assert not tdev.is_sticky
    fill(tdev, a, 7.0)
    tdev.sync()
    assert (f32(a) == 7.0).all()


def test_kernel_fault_message(tdev):
    tdev.dispatch("fault", [], grid=1, threadgroup=1)
    with pytest.raises(CommandBufferError, match="simulated kernel fault"):
        tdev.sync()


def test_compile_error_carries_file_and_line(tdev):
    with pytest.raises(ShaderCompileError, match=r"bad\.metal:3: error: broken here"):
        tdev.load_library("kernel void fill_f32(\n\n#error broken here\n", "bad.metal")


@pytest.mark.parametrize("kwargs, message", [
    ({"threadgroup": 2048}, "threadgroup"),
    ({"buffers_extra": [b"x" * 5000]}, "bytes"),
])
def test_invalid_dispatch_is_value_error(tdev, kwargs, message):
    a = tdev.buffer(4 * N)
    buffers = [a, struct.pack("<fI", 1.0, N)] + kwargs.pop("buffers_extra", [])
    with pytest.raises(ValueError, match=message):
        tdev.dispatch("fill_f32", buffers, grid=N, threadgroup=kwargs.get("threadgroup", 64), threads=True)


def test_unknown_kernel(tdev, native):
    with pytest.raises(native.KernelNotFoundError, match="no_such_kernel"):
        tdev.pipeline("no_such_kernel")


def test_numpy_views_are_zero_copy(tdev):
    a = tdev.buffer(4 * N)
    view = a.numpy("float32", (16, 16))
    view[:] = np.arange(N, dtype=np.float32).reshape(16, 16)
    assert np.asarray(a).ctypes.data == a.address == view.ctypes.data
    assert np.frombuffer(a, np.float32)[17] == 17
    with pytest.raises(ValueError):
        a.numpy("float32", (N + 1,))
    del a  # the views keep the memory alive
    assert view[1, 1] == 17


def test_threads_share_a_device(tdev):
    errors = []

    def work(k):
        try:
            for _ in range(20):
                b = tdev.buffer(4 * N)
                fill(tdev, b, float(k))
                tdev.sync()
                assert (f32(b) == k).all()
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors

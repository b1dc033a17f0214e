"""Memory: peak memory of a long elementwise chain, and the memory-bandwidth floor.

Peak memory runs in a fresh subprocess per library (``python -m benchmarks.memory --worker``):
a small warm-up chain first (lazy imports, kernel compiles), then the inputs, then the peak
resident set is reset (Linux: writing 5 to /proc/self/clear_refs resets VmHWM; elsewhere the
``ru_maxrss`` high-water mark is used, which can only under-report) and the chain is built and
evaluated. glibc's adaptive mmap threshold is pinned (MALLOC_MMAP_THRESHOLD_) so freed large
buffers go back to the OS instead of hiding in the heap. For NumPy-based libraries (metalcandle,
numpy) the same chain is also traced with ``tracemalloc``, which sees every NumPy buffer exactly.

The bandwidth floor is ``np.copyto`` of a buffer the size of each fused case's input (best of a
few destination offsets): the least memory traffic (read x, write a same-size output) any
implementation of those ops needs.
"""
import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import time

from benchmarks.harness import summarize, now
from benchmarks.imports import wheel_layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACEMALLOC_PEERS = ("metalcandle", "numpy")


def _status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


def _maxrss_bytes():
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024   # macOS reports bytes, Linux kB


def _worker(name, size, ops):
    from benchmarks import peers
    from benchmarks.workloads import chain, chain_inputs
    ps, notes = peers.load([name], with_metalcandle=False)
    if not ps:
        print(json.dumps({"error": "; ".join(notes)}))
        return
    p = ps[0]
    # Short warm-up chain: loads what a library imports lazily. Not the full chain: tinygrad's
    # compile time grows steeply with chain length, and a compiled kernel is shape-specific anyway.
    xs, cs = chain_inputs(p, (4096,), seed=5)
    p.sync(chain(p, xs, cs, 6))
    x, c = chain_inputs(p, (size,))
    gc.collect()
    res = {"array_bytes": size * 4}
    if _reset_hwm():
        base = _status_kb("VmRSS") * 1024
        y = chain(p, x, c, ops)
        p.sync(y)
        res["rss_delta"] = _status_kb("VmHWM") * 1024 - base
        res["rss_method"] = "VmHWM after reset"
    else:
        base = _maxrss_bytes()
        y = chain(p, x, c, ops)
        p.sync(y)
        res["rss_delta"] = _maxrss_bytes() - base
        res["rss_method"] = "ru_maxrss delta (may under-report)"
    del y
    gc.collect()
    if name in TRACEMALLOC_PEERS:
        import tracemalloc
        tracemalloc.start()
        y = chain(p, x, c, ops)
        p.sync(y)
        res["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(json.dumps(res))


def peak_memory(names, size, ops, rounds, log=print):
    """{"rss": {peer: result}, "tracemalloc": {peer: result}} with results as in harness."""
    # With an editable install, workers import the very build this process uses (no ninja check,
    # no rebuild when someone edits a source mid-run); see imports.wheel_layout.
    wenv, wtmp, _ = wheel_layout()
    base_env = wenv if wenv is not None else os.environ
    env = dict(base_env, MALLOC_MMAP_THRESHOLD_="131072", PYTHONPATH=ROOT + os.pathsep
               + base_env.get("PYTHONPATH", ""))
    rss = {n: [] for n in names}
    tm = {n: [] for n in names if n in TRACEMALLOC_PEERS}
    errors, method = {}, "n/a"
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            if n in errors:
                continue
            cmd = [sys.executable, "-m", "benchmarks.memory", "--worker", n, "--size", str(size),
                   "--ops", str(ops)]
            pr = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=600)
            try:
                res = json.loads(pr.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                res = {"error": (pr.stderr.strip().splitlines() or ["no output"])[-1][:200]}
            if "error" in res:
                errors[n] = res["error"]
                log(f"    {n}: memory worker failed: {res['error']}")
                continue
            rss[n].append(res["rss_delta"])
            if n in tm:
                tm[n].append(res["tracemalloc_peak"])
            method = res["rss_method"]

    if wtmp:
        shutil.rmtree(wtmp, ignore_errors=True)

    def pack(d):
        return {n: ({"stats": summarize(s), "samples": s, "note": ""} if s else
                    {"stats": None, "samples": [], "note": errors.get(n, "")})
                for n, s in d.items()}
    return {"rss": pack(rss), "tracemalloc": pack(tm),
            "rss_method": method, "array_bytes": size * 4}


def bandwidth_floor(sizes_bytes, quick):
    """{nbytes: {"stats": ns per copy, "gb_s": (read + write) GB/s at the median}}.

    The destination's offset from the source matters: buffers a multiple of 4 KiB apart alias
    in the caches (a 256 KiB copy ran 20x slower here). A floor is the best case, so a few
    destination offsets are tried and the fastest is timed in full.
    """
    import numpy as np
    out = {}
    for nbytes in sorted(set(sizes_bytes)):
        n = nbytes // 4
        src = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
        k = max(1, min(1000, (1 << 24) // max(nbytes, 1)))   # ~16 MB of copying per sample
        reps = 5 if quick else 40

        def sample(dst):
            t0 = now()
            for _ in range(k):
                np.copyto(dst, src)
            return (now() - t0) / k

        best = None
        for off in (0, 16, 1040):   # elements: none, 64 B, 4 KiB + 64 B
            dst = np.empty(n + off, np.float32)[off:]
            np.copyto(dst, src)   # touch the pages before timing
            t = min(sample(dst) for _ in range(3))
            if best is None or t < best[0]:
                best = (t, off, dst)
        dst = best[2]
        samples = [sample(dst) for _ in range(reps)]
        st = summarize(samples)
        # bytes per ns is GB/s
        out[nbytes] = {"stats": st, "samples": samples, "gb_s": 2 * nbytes / st["median"],
                       "dst_offset_bytes": best[1] * 4}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="peak-memory worker (run by python -m benchmarks)")
    ap.add_argument("--worker", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--ops", type=int, required=True)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    _worker(a.worker, a.size, a.ops)
    sys.stderr.write(f"worker {a.worker}: {time.perf_counter() - t0:.2f} s\n")


if __name__ == "__main__":
    main()

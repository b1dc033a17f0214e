"""Timing core: warm-up, round-robin repetitions across libraries, median and spread.

A case gives, per library, a ``make(peer)`` that prepares inputs and returns ``run``: a callable
that does one repetition and returns the nanoseconds it spent in the timed part, or
``(ns, calls)`` when the number of calls per repetition is calibrated per library (loop_ns). Returning the time
(instead of being timed from outside) lets a case keep untimed work inside a repetition, e.g. build
a graph, then time only its evaluation.

All libraries of a case run in one process, interleaved per repetition in a fresh random order
(seeded), so drift on a noisy VM (frequency, neighbours, page cache) and the after-effects of one
library (worker threads still spinning) hit all of them alike.
The cyclic GC is paused while a repetition runs, as ``timeit`` does, and collects (if its
thresholds say so) between repetitions, outside the timed part. It is not forced between rounds:
a full collection walks every object of every loaded library and leaves the caches cold, which
made each repetition time a cold start (a 100-node eval measured 1.3 us/node instead of 0.45).
A case whose repetition is one short, single-shot sample (``settle=1``: the 1000-op build, the
100-node eval) runs that repetition once untimed first, for every library alike: on these VMs the
first ~100 us after the thread has waited (MLX and jax block in their sync; any sleep) run ~3x
slower (1000-op build 78 -> 244 ns/op, 100-node eval 0.27 -> 1.1 us/node after a 10 ms sleep), so
without it such a sample times the wake-up of whatever ran before it, not the library.
"""
import gc
import random
import statistics
import time

now = time.perf_counter_ns


class Unsupported(Exception):
    """Raised by ``make`` when a library cannot express a case; the cell shows '-'."""


class Case:
    """One row of the table.

    ``per`` divides each sample (so a sample of 1000 ops gives ns/op; with loop_ns, the ops in
    one call); ``unit`` is how the row is
    read ("ns/op", "ns/node", "time"). ``bytes_floor`` (fused cases) is the size whose copy is the
    bandwidth floor for that case.
    """

    def __init__(self, family, name, make, *, per=1, unit="time", reps=(30, 5), warmup=(3, 1),
                 note="", bytes_floor=None, settle=0):
        self.family, self.name, self.make, self.per, self.unit = family, name, make, per, unit
        self.settle = settle    # untimed runs right before each timed repetition
        self.reps, self.warmup, self.note, self.bytes_floor = reps, warmup, note, bytes_floor

    @property
    def key(self):
        return f"{self.family}/{self.name}"


def summarize(samples):
    """Median, quartiles, min, max of a list of numbers (ns)."""
    s = sorted(samples)
    n = len(s)
    if n == 0:
        return None
    if n >= 4:
        q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
    else:
        q1, q3 = s[0], s[-1]
    return {"median": statistics.median(s), "q1": q1, "q3": q3, "min": s[0], "max": s[-1], "n": n}


def run_case(case, peers, quick, log=print):
    """Run ``case`` for every peer; returns {peer: {"stats", "samples", "note"}}."""
    reps = case.reps[1] if quick else case.reps[0]
    warm = case.warmup[1] if quick else case.warmup[0]
    out, runs = {}, []
    for p in peers:
        try:
            fn = case.make(p)
        except Unsupported as e:
            out[p.name] = {"stats": None, "samples": [], "note": f"unsupported: {e}"}
            continue
        except Exception as e:  # one library failing a case must not end the suite
            out[p.name] = {"stats": None, "samples": [],
                           "note": f"setup failed: {e.__class__.__name__}: {str(e)[:160]}"}
            log(f"    {p.name}: setup failed: {e.__class__.__name__}: {str(e)[:160]}")
            continue
        runs.append((p, fn))
    ok = []
    for p, fn in runs:
        try:
            for _ in range(warm):
                fn()
            ok.append((p, fn))
        except Exception as e:
            out[p.name] = {"stats": None, "samples": [],
                           "note": f"failed: {e.__class__.__name__}: {str(e)[:160]}"}
            log(f"    {p.name}: failed: {e.__class__.__name__}: {str(e)[:160]}")
    samples = {p.name: [] for p, _ in ok}
    failed = set()
    gc.collect()
    shuffler = random.Random(20261201)
    for r in range(reps):
        # A fresh order each repetition: a library must not always run right after the same peer
        # (a rotation kept metalcandle right behind jax/torch, whose worker threads still spin on
        # the second core for a while after their ops, and charged that to metalcandle).
        order = list(ok)
        shuffler.shuffle(order)
        for p, fn in order:
            if p.name in failed:
                continue
            gc.disable()
            try:
                for _ in range(case.settle):
                    fn()
                res = fn()
            except Exception as e:
                failed.add(p.name)
                out[p.name] = {"stats": None, "samples": [],
                               "note": f"failed: {e.__class__.__name__}: {str(e)[:160]}"}
                continue
            finally:
                gc.enable()
            # (ns, calls) from a calibrated loop (each call is case.per ops), else ns for case.per
            samples[p.name].append(res[0] / (res[1] * case.per) if type(res) is tuple
                                   else res / case.per)
    for name, s in samples.items():
        if name not in failed:
            out[name] = {"stats": summarize(s), "samples": s, "note": ""}
    return out


def loop_ns(body, n, sync=None, target_ns=20_000_000):
    """A ``run`` that times up to ``n`` calls of ``body`` (ns-scale micro ops) and returns
    ``(ns, calls)``. The count is calibrated once so a sample lasts about ``target_ns``: a slow
    library gets fewer calls instead of stretching the whole suite. With ``sync`` (async
    libraries) the last result is waited for inside the timing."""
    body()   # untimed: a first call can carry one-off costs (lazy imports, kernel compiles)
    t0 = now()
    calls = 0
    while calls < n and now() - t0 < target_ns // 10:
        y = body()
        calls += 1
    if sync is not None:
        sync(y)
    per_call = max(1, (now() - t0) // calls)
    rng = range(min(n, max(5, target_ns // per_call)))
    count = len(rng)

    def run():
        t0 = now()
        for _ in rng:
            body()
        return now() - t0, count

    def run_sync():
        t0 = now()
        for _ in rng:
            y = body()
        sync(y)
        return now() - t0, count
    return run if sync is None else run_sync


def fmt_time(ns):
    """A duration in the unit that fits: ns, µs, ms or s."""
    if ns is None:
        return "-"
    a = abs(ns)
    if a < 1e3:
        return f"{ns:.0f} ns" if a >= 10 else f"{ns:.1f} ns"
    if a < 1e6:
        return f"{ns / 1e3:.3g} µs"
    if a < 1e9:
        return f"{ns / 1e6:.3g} ms"
    return f"{ns / 1e9:.3g} s"


def fmt_bytes(b):
    if b is None:
        return "-"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(b) >= div:
            return f"{b / div:.3g} {unit}"
    return f"{b:.0f} B"

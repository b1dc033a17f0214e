"""Standalone: ns per op to build a 1000-op lazy chain on a (4,) float32 tensor.

    python benchmarks/graph_build.py

Only metalcandle and the standard library; build only (no evaluation). The full suite with peers
and spreads is ``python -m benchmarks``.
"""
import gc
import statistics
import time

import metalcandle as mc

OPS = 1000
REPS = 200


def build(x, c):
    y = x
    for i in range(OPS):
        k = i % 3
        if k == 0:
            y = y * 0.5
        elif k == 1:
            y = y + c
        else:
            y = mc.exp(y)
    return y


def main():
    x = mc.array([0.1, 0.2, 0.3, 0.4])
    c = mc.array([-2.0, -2.0, -2.0, -2.0])
    mc.eval(x, c)
    for _ in range(5):   # warm-up
        build(x, c)
    samples = []
    gc.collect()
    for _ in range(REPS):
        gc.disable()
        t0 = time.perf_counter_ns()
        y = build(x, c)
        t = time.perf_counter_ns() - t0
        gc.enable()
        del y   # freeing the graph is outside the timing
        samples.append(t / OPS)
    q1, med, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    print(f"graph build, {OPS}-op chain on (4,) float32: {med:.0f} ns/op "
          f"(IQR {q1:.0f}-{q3:.0f}, min {min(samples):.0f}, {REPS} reps)")


if __name__ == "__main__":
    main()

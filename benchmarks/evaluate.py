"""Evaluation cost: every timed iteration forces its own result.

* eval ns/node: a tiny unfused elementwise chain. Lazy libraries build it outside the timing and
  only the evaluation is timed; eager ones (numpy, torch, jax) can only report build + compute.
  tinygrad fuses the chain into one kernel, so its number is scheduling a fused graph, not
  running nodes one by one.
* MLP step: the 18-op block built and evaluated per iteration (NumPy eager is the bar).
* round trip: one op plus its evaluation, the latency floor of a lazy library.
"""
from benchmarks.harness import Case, loop_ns, now
from benchmarks.workloads import chain, chain_inputs, mlp_inputs, mlp_step, rand


def _eval_chain(n):
    def make(p):
        x, c = chain_inputs(p, (4,))
        sync = p.sync
        if p.kind == "lazy":
            def run():
                y = chain(p, x, c, n)        # untimed build
                t0 = now()
                sync(y)
                return now() - t0
        else:
            def run():
                t0 = now()
                y = chain(p, x, c, n)
                sync(y)
                return now() - t0
        return run
    return make


def _mlp_step(k):
    def make(p):
        args = mlp_inputs(p)
        sync = p.sync
        return loop_ns(lambda: sync(mlp_step(p, *args)), k)
    return make


def _round_trip(k):
    def make(p):
        a = p.asarray(rand((4,), 3))
        sync = p.sync
        return loop_ns(lambda: sync(a + 1.0), k)
    return make


def cases(quick):
    n = 30 if quick else 100   # tinygrad compile time grows steeply with chain length
    k = 20 if quick else 200      # upper bounds; loop_ns calibrates to ~20 ms a sample
    kr = 200 if quick else 2000
    return [
        Case("eval", f"eval chain {n} ops (4,)", _eval_chain(n), per=n, unit="ns/node",
             reps=(40, 5), warmup=(3, 1), settle=1,
             note="lazy: eval only (build untimed); numpy/torch/jax: build+compute"),
        Case("eval", "MLP step 18 ops build+eval", _mlp_step(k), per=1, unit="time",
             reps=(40, 5), note="x(8,64); NumPy eager is the bar"),
        Case("eval", "one op + eval round trip", _round_trip(kr), per=1, unit="time",
             reps=(40, 5), note="(a + 1.0) on (4,), evaluated each time"),
    ]

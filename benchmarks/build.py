"""Graph build cost, ns per op: what a lazy library spends recording the graph (no evaluation).

For eager libraries (numpy, torch) "build" is the op itself (build + compute); jax dispatches
eagerly and asynchronously, so its repetitions end with ``block_until_ready`` inside the timing.
Micro cases follow tinygrad's ``test/null/test_microbenchmarks.py``: one thing per case, many
iterations per sample (calibrated per library), ns per op. Results are discarded as they are
made, so micro ops and the MLP graph include freeing the nodes; the 1000-op chain is freed after
its timing.
"""
from benchmarks.harness import Case, now, loop_ns
from benchmarks.workloads import chain, chain_inputs, mlp_inputs, mlp_step, MLP_OPS, rand

CHAIN_OPS = 1000


def _ends_with_block(p, run_body):
    """Time ``run_body()``; for async (jax) also wait for its result inside the timing."""
    sync = p.sync if p.kind == "async" else None

    def run():
        t0 = now()
        y = run_body()
        if sync is not None:
            sync(y)
        t = now() - t0
        del y   # freeing the graph is not part of building it
        return t
    return run


def make_chain(p):
    x, c = chain_inputs(p, (4,))
    return _ends_with_block(p, lambda: chain(p, x, c, CHAIN_OPS))


def _micro(n, body_for):
    """A micro case: ``body_for(p)`` returns a zero-argument op; ``n`` calls per sample."""
    def make(p):
        body = body_for(p)
        body()
        return loop_ns(body, n, p.sync if p.kind == "async" else None)
    return make


def _broadcast(p):
    a, b = p.asarray(rand((2, 3), 1)), p.asarray(rand((3,), 2))
    return lambda: a + b


def _zeros(p):
    zeros = p.zeros
    return lambda: zeros((10, 10))


def _add(p):
    a, b = p.asarray(rand((10, 10), 1)), p.asarray(rand((10, 10), 2))
    return lambda: a + b


def _reshape(p):
    a = p.asarray(rand((10, 10), 1))
    reshape = p.reshape
    return lambda: reshape(a, (100,))


def _reduce(p):
    a = p.asarray(rand((10, 10), 1))
    s = p.sum
    return lambda: s(a, 0)


def _index(p):
    a = p.asarray(rand((10, 10), 1))
    return lambda: a[2:7, 3]


def _mlp_build(k):
    def make(p):
        args = mlp_inputs(p)
        return loop_ns(lambda: mlp_step(p, *args), k, p.sync if p.kind == "async" else None)
    return make


def cases(quick):
    n = 1000 if quick else 10000   # upper bound; loop_ns calibrates to ~20 ms a sample
    k = 100 if quick else 1000
    return [
        Case("build", "chain 1000 ops (4,) f32", make_chain, per=CHAIN_OPS, unit="ns/op",
             reps=(60, 5), warmup=(3, 1), settle=1,
             note="x*0.5, +c, exp repeated; lazy: build only"),
        Case("build", "broadcast (2,3)+(3,)", _micro(n, _broadcast), per=1, unit="ns/op",
             reps=(40, 5)),
        Case("build", f"mlp graph ({MLP_OPS} ops)", _mlp_build(k), per=MLP_OPS,
             unit="ns/op", reps=(40, 5),
             note="matmul (8,64)@(64,64), bias, relu/silu, softmax-like, rms-norm-like"),
        Case("micro", "zeros (10,10) node", _micro(n, _zeros), per=1, unit="ns/op",
             reps=(40, 5)),
        Case("micro", "a+b (10,10)", _micro(n, _add), per=1, unit="ns/op", reps=(40, 5)),
        Case("micro", "reshape (10,10)->(100,)", _micro(n, _reshape), per=1, unit="ns/op",
             reps=(40, 5)),
        Case("micro", "sum axis 0 (10,10)", _micro(n, _reduce), per=1, unit="ns/op",
             reps=(40, 5)),
        Case("micro", "index a[2:7, 3]", _micro(n, _index), per=1, unit="ns/op", reps=(40, 5)),
    ]


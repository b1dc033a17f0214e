"""The ``python -m metalcandle`` demo: a small MLP with a LoRA adapter, written out by hand, built
lazily, evaluated on every device of this build (the executor fuses the hand-written LoRA and
softmax into their fused primitives) and checked against float64 NumPy."""
import time

import metalcandle as mc


def _mlp(x, w1, b1, w2, a, bb, scale):
    h = mc.silu(x @ w1 + b1)
    y = h @ w2 + ((h @ a) @ bb) * scale      # LoRA: scale * (h @ a) @ b added to the frozen layer
    e = mc.exp(y - mc.max(y, axis=-1, keepdims=True))
    return e / mc.sum(e, axis=-1, keepdims=True)      # softmax, as people write it


def _reference(np, x, w1, b1, w2, a, bb, scale):
    X, W1, B1, W2, A, BB = (np.asarray(t, dtype=np.float64) for t in (x, w1, b1, w2, a, bb))
    h = X @ W1 + B1
    h = h / (1 + np.exp(-h))
    z = h @ W2 + scale * (h @ A) @ BB
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _run(np, device):
    mc.set_default_device(device)
    mc.random.seed(0)
    x = mc.random.normal((8, 64))
    w1 = mc.random.normal((64, 128), scale=0.1)
    b1 = mc.zeros((128,))
    w2 = mc.random.normal((128, 32), scale=0.1)
    a = mc.random.normal((128, 8), scale=0.1)
    bb = mc.random.normal((8, 32), scale=0.1)
    mc.eval(x, w1, b1, w2, a, bb)
    before = mc._executor_stats()
    y = _mlp(x, w1, b1, w2, a, bb, 16 / 8)
    t1 = time.perf_counter()
    mc.eval(y)
    t2 = time.perf_counter()
    after = mc._executor_stats()
    fused = [k[len("fusion_"):] for k in ("fusion_lora", "fusion_softmax", "fusion_regions")
             if after[k] > before[k]]
    err = float(np.max(np.abs(np.asarray(y) - _reference(np, x, w1, b1, w2, a, bb, 16 / 8))))
    print(f"[{device}] MLP + LoRA (8x64 -> 128 -> 32, rank 8): max |metalcandle - numpy float64| "
          f"= {err:.2e} {'OK' if err < 1e-5 else 'MISMATCH'}; eval {1e3 * (t2 - t1):.2f} ms; "
          f"fused: {', '.join(fused) or 'nothing'}")
    return err < 1e-5


def main():
    t0 = time.perf_counter()
    import numpy as np
    print(f"metalcandle {mc.__version__}")
    default = mc.default_device()
    print(f"devices: {', '.join(mc.devices())}; default: {default}")
    if "metal" in mc.devices():
        print(f"metal device: {mc.metal.device().name}")
    try:
        ok = all([_run(np, d) for d in mc.devices()])
    finally:
        mc.set_default_device(default)

    # Median of 9 runs after a warm-up one: a single cold run mostly times the first touch of
    # memory (python -m benchmarks measures this properly, with peers).
    n = 3000
    builds, evals = [], []
    for _ in range(10):
        v = mc.ones((4,))
        tb = time.perf_counter()
        for _ in range(n // 3):
            v = mc.exp(v * 0.5 + 1.0)
        tb = time.perf_counter() - tb
        te = time.perf_counter()
        mc.eval(v)
        te = time.perf_counter() - te
        builds.append(tb)
        evals.append(te)
    tb, te = sorted(builds[1:])[4], sorted(evals[1:])[4]
    print(f"graph build: {tb / n * 1e9:.0f} ns/op ({n}-op elementwise chain on (4,) float32, "
          f"{default})")
    print(f"eval: {te / n * 1e9:.0f} ns/node for that chain (medians of 9 runs)")
    print(f"(demo total {time.perf_counter() - t0:.2f} s)")
    return 0 if ok else 1

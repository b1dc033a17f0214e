"""Metal structural counts: GPU dispatches and command buffers per evaluation.

Times on a GPU vary; these counts do not, and they say whether fusion and batching work (one
command buffer per ``eval``, one dispatch per fused op). They need ``mc.metal`` with a device
(a real one, or the mock device when that is built); otherwise the report says so.
"""
import numpy as np

from benchmarks.workloads import chain, chain_inputs, mlp_inputs, mlp_step


# the counters that say something per eval (the JSON keeps all of them)
SHOWN = ("dispatches", "command_buffers", "barriers", "pipeline_compiles", "buffer_allocations",
         "regions", "plan_hits", "plan_misses")


def _numeric(d):
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _graphs(p):
    x, c = chain_inputs(p, (4,))
    args = mlp_inputs(p)
    s = p.asarray(np.random.default_rng(7).standard_normal((2, 10, 64), dtype=np.float32))
    r = p.asarray(np.random.default_rng(8).standard_normal((2, 10, 128), dtype=np.float32))
    w = p.asarray(np.ones(128, np.float32))
    mc = p.mod
    g = np.random.default_rng(9)

    def arr(*shape):
        return mc.array((g.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32))
    lx, la, lb, lw = arr(1, 128, 512), arr(512, 8), arr(8, 512), arr(512, 512)
    q, k, v = arr(1, 8, 16, 64), arr(1, 2, 16, 64), arr(1, 2, 16, 64)
    return [("chain 30 ops (4,)", lambda: chain(p, x, c, 30)),
            ("MLP step 18 ops", lambda: mlp_step(p, *args)),
            ("softmax (2,10,64)", lambda: p.softmax(s, -1)),
            ("softmax written out", lambda: _softmax_composite(mc, s)),
            ("rms_norm (2,10,128)", lambda: p.rms_norm(r, w, 1e-5)),
            ("layer_norm (2,10,128)", lambda: mc.fast.layer_norm(r, w, w, 1e-5)),
            ("rope (1,8,16,64)", lambda: mc.fast.rope(q, 64)),
            ("sdpa causal GQA 8/2 heads", lambda: mc.fast.scaled_dot_product_attention(
                q, k, v, scale=0.125, mask="causal")),
            ("lora x(1,128,512) r8", lambda: mc.fast.lora(lx, la, lb, 2.0)),
            ("lora written out", lambda: (lx @ la) @ lb * 2.0),
            ("lora_linear", lambda: mc.fast.lora_linear(lx, lw, None, la, lb, 2.0))]


def _softmax_composite(mc, x):
    e = mc.exp(x - mc.max(x, axis=-1, keepdims=True))
    return e / mc.sum(e, axis=-1, keepdims=True)


def _counters(mc, metal):
    ex = mc._executor_stats()
    return dict(_numeric(metal.stats()), regions=ex["fusion_regions"],
                plan_hits=ex["fusion_plan_hits"], plan_misses=ex["fusion_plan_misses"])


def metal_counts(p, evals=5):
    """{"available": bool, "note": str, "graphs": {name: {counter: per-eval delta}}}."""
    mc = p.mod
    try:
        import importlib
        metal = importlib.import_module(mc.__name__ + ".metal")
    except ImportError:
        metal = None
    if metal is None:
        return {"available": False, "graphs": {},
                "note": "mc.metal is not built: the mock device is not built (no counts)"}
    try:
        avail = bool(metal.is_available())
    except Exception as e:
        return {"available": False, "graphs": {},
                "note": f"mc.metal.is_available() failed: {e.__class__.__name__}: {e}"}
    if not avail:
        return {"available": False, "graphs": {},
                "note": "mc.metal exists but is_available() is False: no Metal device and the "
                        "mock device is not built"}
    prev = mc.default_device()
    out = {}
    try:
        mc.set_default_device("metal")
        for name, build in _graphs(p):
            mc.eval(build())   # warm-up: pipeline compiles are not per-eval costs
            before = _counters(mc, metal)
            for _ in range(evals):
                mc.eval(build())
            after = _counters(mc, metal)
            out[name] = {k: (after[k] - before.get(k, 0)) / evals for k in after}
    except Exception as e:
        return {"available": True, "graphs": out,
                "note": f"counting failed: {e.__class__.__name__}: {str(e)[:200]}"}
    finally:
        mc.set_default_device(prev)
    return {"available": True, "graphs": out, "note": ""}


def format_counts(res):
    if not res["available"] or not res["graphs"]:
        return [res["note"]]
    present = {k for g in res["graphs"].values() for k in g}
    keys = [k for k in SHOWN if k in present]
    lines = ["per eval: " + ", ".join(keys)]
    for name, g in res["graphs"].items():
        lines.append(f"  {name:24s} " + "  ".join(f"{k}={g.get(k, 0):g}" for k in keys))
    if res["note"]:
        lines.append(res["note"])
    return lines

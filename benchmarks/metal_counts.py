"""Metal structural counts: GPU dispatches and command buffers per evaluation.

Times on a GPU vary; these counts do not, and they say whether fusion and batching work (one
command buffer per ``eval``, one dispatch per fused op). They need ``mc.metal`` with a device
(a real one, or the mock device when that is built); otherwise the report says so.
"""
import numpy as np

from benchmarks.workloads import chain, chain_inputs, mlp_inputs, mlp_step


def _numeric(d):
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _graphs(p):
    x, c = chain_inputs(p, (4,))
    args = mlp_inputs(p)
    s = p.asarray(np.random.default_rng(7).standard_normal((2, 10, 64), dtype=np.float32))
    r = p.asarray(np.random.default_rng(8).standard_normal((2, 10, 128), dtype=np.float32))
    w = p.asarray(np.ones(128, np.float32))
    return [("chain 30 ops (4,)", lambda: chain(p, x, c, 30)),
            ("MLP step 18 ops", lambda: mlp_step(p, *args)),
            ("softmax (2,10,64)", lambda: p.softmax(s, -1)),
            ("rms_norm (2,10,128)", lambda: p.rms_norm(r, w, 1e-5))]


def metal_counts(p, evals=5):
    """{"available": bool, "note": str, "graphs": {name: {counter: per-eval delta}}}."""
    mc = p.mod
    metal = getattr(mc, "metal", None)
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
            before = _numeric(metal.stats())
            for _ in range(evals):
                mc.eval(build())
            after = _numeric(metal.stats())
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
    keys = sorted({k for g in res["graphs"].values() for k in g})
    lines = ["per eval: " + ", ".join(keys)]
    for name, g in res["graphs"].items():
        lines.append(f"  {name:24s} " + "  ".join(f"{k}={g.get(k, 0):g}" for k in keys))
    if res["note"]:
        lines.append(res["note"])
    return lines

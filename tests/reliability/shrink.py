"""Shrinking a failing random graph (test_random_graphs.py) to a minimal reproduction.

The graph is rebuilt from its seed (same values, same ops) and evaluated with *every* node held:
first in one ``eval`` (fusion as in the failing run), then, if that raised or matched, node by node
in topological order. The first node, in topological order, whose value mismatches (or whose eval
raises) is the culprit; the reproduction is the culprit and its ancestors only, printed as a
runnable program (leaf values inline), and replayed standalone to say whether it reproduces alone.
"""
import operator


import metalcandle as mc


def ancestors(g, name):
    """The nodes ``name`` depends on (itself included), in topological (creation) order."""
    by = {n.name: n for n in g.nodes}
    keep, todo = set(), [name]
    while todo:
        k = todo.pop()
        if k not in keep:
            keep.add(k)
            todo.extend(by[k].deps)
    return [n for n in g.nodes if n.name in keep]


def program(g, name, fusion):
    """Runnable text: device, fusion flag, the ancestor subgraph of ``name``, its eval."""
    sub = ancestors(g, name)
    lines = ["import numpy as np, metalcandle as mc", "from operator import neg",
             f"mc.set_default_device({mc.default_device()!r}); mc.set_fusion({fusion})"]
    lines += [f"{n.name} = {n.expr}   # {n.dt} {n.ref.shape}" for n in sub]
    lines.append(f"mc.eval({name})")
    return "\n".join(lines), len(sub)


def _recover():
    if mc.default_device() == "metal":
        mc.metal.reset()      # a failed command buffer leaves the device in its error state


def first_mismatch(g, fusion, one_by_one):
    """(culprit node, message) in a rebuild of ``g`` with every node held, or None."""
    h = type(g)(g.seed).build()
    mc.set_fusion(fusion)
    n = None
    try:
        if one_by_one:
            for n in h.nodes:
                n.t.eval()
                msg = h.mismatch(n, "eval node by node")
                if msg:
                    return n, msg
            return None
        mc.eval([m.t for m in h.nodes])
    except Exception as e:              # noqa: BLE001 - reported in the repro
        _recover()
        return (n, f"eval of {n.name} raised {type(e).__name__}: {e}") if n is not None else None
    for n in h.nodes:
        msg = h.mismatch(n, "one eval of all nodes")
        if msg:
            return n, msg
    return None


def replay(g, text, name, node):
    """Run the repro text alone; True when it fails the same way."""
    ns = {"neg": operator.neg}
    try:
        exec(compile(text, "<shrunk repro>", "exec"), ns)     # noqa: S102 - our own text
    except Exception:                                         # noqa: BLE001
        _recover()
        return True
    saved, node.t = node.t, ns[name]
    try:
        return g.mismatch(node, "standalone replay") is not None
    finally:
        node.t = saved


def shrink(g, failed):
    """The minimal-reproduction section of a failure report (never raises)."""
    fusion = getattr(g, "fusion", True)
    try:
        _recover()
        found = first_mismatch(g, fusion, False) or first_mismatch(g, fusion, True)
        how = "rebuilt with every node held"
        if found is None:
            if failed is True or failed is None:
                return "--- minimal reproduction: none (not reproduced with every node held)"
            found = (failed, "(only with the original held set and eval order)")
            how = "not reproduced with every node held; shrunk around the failing node"
        node, msg = found
        text, size = program(g, node.name, fusion)
        alone = replay(g, text, node.name, node)
        mc.set_fusion(fusion)
        return (f"--- minimal reproduction ({how}): first mismatching node {node.name}, "
                f"{size} of {len(g.nodes)} nodes; standalone: "
                f"{'reproduces' if alone else 'passes'}\n{msg}\n{text}")
    except Exception as e:                                    # noqa: BLE001 - best effort
        _recover()
        return f"--- minimal reproduction failed: {type(e).__name__}: {e}"

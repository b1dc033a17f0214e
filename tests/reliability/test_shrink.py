"""Self-tests of the random-graph oracle: a deliberately wrong backend is caught, the report names
the seed and how to replay it, and shrink.py reduces the graph to a minimal runnable reproduction
(the topologically first mismatching node and its ancestors only), then prints the full graph."""
import re

import numpy as np
import pytest

import helpers as H
import metalcandle as mc
from reliability.shrink import ancestors
from reliability.test_random_graphs import Graph

pytestmark = pytest.mark.usefixtures("fusion_restored")


def _fail_first_graph(pred):
    """Evaluate graphs until one fails; returns (seed, message)."""
    with pytest.raises(AssertionError) as info:
        for seed in range(2000):
            g = Graph(seed).build()
            if pred(g):
                g.evaluate()
    return seed, str(info.value)


def _repro(msg):
    """(header line, program lines) of the minimal reproduction section."""
    head, full = msg.split("\n--- full graph:\n")
    sec = head.split("--- minimal reproduction", 1)[1]
    lines = sec.splitlines()
    start = lines.index("import numpy as np, metalcandle as mc")
    return lines[0], lines[start:], full


def _check_program(prog, full):
    """Every name is defined before use, the lines are a subset of the full graph's nodes."""
    defined = set()
    full_names = re.findall(r"^(n\d+) = ", full, re.M)
    for ln in prog[3:-1]:
        name, expr = ln.split(" = ", 1)
        expr = expr.split("   # ")[0]
        assert set(re.findall(r"\bn\d+\b", expr)) <= defined, f"{ln}: uses an undefined node"
        assert name in full_names
        defined.add(name)
    culprit = re.fullmatch(r"mc\.eval\((n\d+)\)", prog[-1]).group(1)
    assert culprit in defined
    return culprit, len(defined), len(full_names)


def test_a_wrong_result_is_reported_with_seed_and_graph(device):
    # The oracle must catch a backend whose matmul is 1% off, say how to replay it, and shrink the
    # graph to the matmul and its ancestors.
    spy = H.ImplSpy()
    spy._patch(spy._code("matmul"), lambda orig: lambda node, ins, out: orig(node, ins, out) * 1.01)
    try:
        seed, msg = _fail_first_graph(lambda g: any("@" in ln or "matmul" in ln for ln in g.lines))
        assert f"seed={seed}" in msg and "replay: python tests/reliability" in msg
        header, prog, full = _repro(msg)
        assert "n0 = mc." in full                        # then the whole graph
        assert "first mismatching node" in header and "standalone: reproduces" in header, header
        culprit, size, total = _check_program(prog, full)
        assert size <= total and f"{size} of {total} nodes" in header
        line = next(ln for ln in prog if ln.startswith(f"{culprit} = "))
        assert "@" in line or "mc.matmul" in line, f"the culprit is not the matmul: {line}"
        assert all("(<" not in ln for ln in prog), "a leaf without its values"
        # it is the topologically first mismatch: its ancestors are right, it is wrong
        g = Graph(seed).build()
        mc.set_fusion("fusion=True" in msg)
        mc.eval([n.t for n in g.nodes])
        by = {n.name: n for n in g.nodes}
        first = next(n.name for n in g.nodes if g.mismatch(n, "check"))
        assert first == culprit
        assert all(g.mismatch(n, "check") is None for n in ancestors(g, culprit)[:-1])
        ns = {}
        exec("\n".join(prog), ns)                        # still wrong with the fault on
        by[culprit].t = ns[culprit]
        assert g.mismatch(by[culprit], "replay") is not None
    finally:
        spy.restore()
    ns = {}
    exec("\n".join(prog), ns)                            # right once the fault is gone
    by[culprit].t = ns[culprit]
    assert g.mismatch(by[culprit], "replay") is None


def test_a_failing_eval_is_shrunk_to_the_raising_node(device):
    spy = H.ImplSpy().fail("sum", RuntimeError("injected: sum is broken"))
    try:
        seed, msg = _fail_first_graph(lambda g: any("sum" in ln for ln in g.lines))
    finally:
        spy.restore()
    assert "eval raised RuntimeError" in msg and f"seed={seed}" in msg
    header, prog, full = _repro(msg)
    culprit, size, total = _check_program(prog, full)
    assert "raised RuntimeError: injected: sum is broken" in msg.split("--- full graph")[0]
    line = next(ln for ln in prog if ln.startswith(f"{culprit} = "))
    assert re.search(r"\.sum\(|mc\.sum\(", line), line
    ns = {}
    exec("\n".join(prog), ns)                            # runs once the fault is gone
    assert ns[culprit].is_evaluated


def test_repro_text_of_a_passing_graph_is_runnable(device):
    # Every leaf and op line of any graph can be replayed as text (not only failing ones).
    from reliability.shrink import program
    for seed in range(300, 340):
        g = Graph(seed).build()
        last = g.nodes[-1]
        text, size = program(g, last.name, True)
        ns = {}
        exec(text, ns)
        last.t = ns[last.name]
        assert g.mismatch(last, "text replay") is None, f"seed {seed}:\n{text}"
        assert size == len(ancestors(g, last.name))
        np.asarray(last.t)

"""``python -m benchmarks``: run the suite, print the tables, write the JSON (and a PNG plot)."""
import argparse
import os
import sys
import time

from benchmarks import build, evaluate, fused, harness, imports, memory, metal_counts, peers, report

FAMILIES = ("build", "micro", "eval", "fused", "memory", "import", "metal")
HERE = os.path.dirname(os.path.abspath(__file__))


def _args(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="small N, few repetitions (CI smoke test, < 90 s); still writes the JSON")
    ap.add_argument("--peers", default=None,
                    help="comma-separated libraries to compare with (default: "
                         + ",".join(peers.ALL[1:]) + "; with --quick: numpy); missing ones are "
                         "skipped with a note. Use --peers '' for none.")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"),
                    help="JSON output (default: benchmarks/results/latest.json)")
    ap.add_argument("--plot", default=None,
                    help="PNG plot (default: the --out path with .png, if matplotlib is "
                         "installed)")
    ap.add_argument("--only", default=",".join(FAMILIES),
                    help="comma-separated case families to run (default: all): "
                         + ", ".join(FAMILIES))
    return ap.parse_args(argv)


def _say(*a):
    print(*a, flush=True)


def _one_line(case_key, unit, results, order):
    ref = report.ref_median(results)
    parts = []
    for p in order:
        st = (results.get(p) or {}).get("stats")
        if st:
            v = (harness.fmt_bytes if unit == "bytes" else harness.fmt_time)(st["median"])
            r = f" ({st['median'] / ref:.2g}x)" if ref and p != "metalcandle" else ""
            parts.append(f"{p} {v}{r}")
    _say(f"  {case_key:44s} " + " | ".join(parts))


def main(argv=None):
    a = _args(argv)
    t_start = time.perf_counter()
    phases = {}
    only = {f.strip() for f in a.only.split(",") if f.strip()}
    if a.peers is None:
        # --quick is CI's smoke test: keep it short and independent of what else is installed.
        a.peers = "numpy" if a.quick else ",".join(peers.ALL[1:])
    wanted = [p.strip() for p in a.peers.split(",") if p.strip()]
    ps, notes = peers.load(wanted)
    if not ps or ps[0].name != "metalcandle":
        _say("metalcandle itself cannot be imported: " + "; ".join(notes))
        return 1
    names = [p.name for p in ps]
    mc = ps[0].mod
    phases["load libraries"] = time.perf_counter() - t_start
    info = report.machine_info()
    _say(f"metalcandle benchmarks{' (quick)' if a.quick else ''}: {info['cpu_model']}, "
         f"{info.get('cpus_usable', info['cpu_count'])} cores, Python {info['python']}")
    _say("libraries: " + ", ".join(f"{p.name} {p.version}" for p in ps))
    for n in notes:
        _say(f"skipped peer: {n}")
    if "loadavg_start" in info and info["loadavg_start"][0] > 0.5 * (info.get("cpus_usable") or 1):
        _say(f"warning: load average {info['loadavg_start'][0]:.1f} on "
             f"{info.get('cpus_usable')} cores: other work is running, expect noisy times")

    cases = []
    todo = []
    if "build" in only or "micro" in only:
        todo += [c for c in build.cases(a.quick) if c.family in only]
    if "eval" in only:
        todo += evaluate.cases(a.quick)
    if "fused" in only:
        todo += fused.cases(a.quick)
    mc_stats = getattr(mc._executor, "stats", None)
    for case in todo:
        before = mc_stats() if mc_stats else {}
        res = harness.run_case(case, ps, a.quick, log=_say)
        after = mc_stats() if mc_stats else {}
        delta = {k: after[k] - before.get(k, 0) for k in after
                 if isinstance(after[k], int) and after[k] != before.get(k, 0)}
        cases.append({"family": case.family, "name": case.name, "unit": case.unit,
                      "per": case.per, "note": case.note, "bytes_floor": case.bytes_floor,
                      "results": res, "metalcandle_executor_stats_delta": delta})
        _one_line(case.key, case.unit, res, names)

    phases["cases"] = time.perf_counter() - t_start - sum(phases.values())
    bandwidth = {}
    if "fused" in only or "memory" in only:
        sizes = [c["bytes_floor"] for c in cases if c["bytes_floor"]]
        sizes += [] if sizes else [(1 << 22) * 4]
        _say("bandwidth floor (np.copyto) ...")
        bandwidth = memory.bandwidth_floor(sizes, a.quick)
        for nb, b in sorted(bandwidth.items()):
            _say(f"  copy {harness.fmt_bytes(nb):>8s}: {harness.fmt_time(b['stats']['median'])}"
                 f"  {b['gb_s']:.1f} GB/s")

    phases["bandwidth"] = time.perf_counter() - t_start - sum(phases.values())
    mem = None
    if "memory" in only:
        size, ops, rounds = ((1 << 20), 50, 1) if a.quick else ((1 << 22), 100, 3)
        _say(f"peak memory: {ops}-op chain on {size} float32 ({harness.fmt_bytes(size * 4)}), "
             f"fresh subprocess per library ...")
        mem = memory.peak_memory(names, size, ops, rounds, log=_say)
        mem["ops"] = ops
        for kind in ("tracemalloc", "rss"):
            _one_line(f"memory/peak {kind}", "bytes", mem[kind], names)

    phases["memory"] = time.perf_counter() - t_start - sum(phases.values())
    imp = None
    if "import" in only:
        n = 7 if a.quick else 11
        _say(f"import time: {n} fresh subprocesses per library ...")
        imp = imports.import_times(names, n, log=_say)
        for k, r in imp["results"].items():
            ip = r.get("in_process")
            _say(f"  import {k:28s} {harness.fmt_time(ip['median']) if ip else '-'} in process, "
                 f"{harness.fmt_time(r['stats']['median'])} whole process minus bare python")
        _say(f"  `import metalcandle` imports numpy: {imp['numpy_imported']}")

    phases["import"] = time.perf_counter() - t_start - sum(phases.values())
    metal = None
    if "metal" in only:
        metal = metal_counts.metal_counts(ps[0])
        _say("metal structural counts:")
        for line in metal_counts.format_counts(metal):
            _say("  " + line)

    duration = time.perf_counter() - t_start
    try:
        info["loadavg_end"] = os.getloadavg()
    except (AttributeError, OSError):
        pass
    _print_tables(cases, mem, bandwidth, imp, names)
    _say("")
    _say("fused paths: " + "; ".join(f"{p.name}: " + ", ".join(f"{k}={v}" for k, v in
                                                             p.fused.items()) for p in ps))
    doc = {"machine": info, "quick": a.quick, "argv": sys.argv[1:], "duration_s": duration,
           "phases_s": phases,
           "libraries": {p.name: {"version": p.version, "kind": p.kind, "fused": p.fused}
                         for p in ps},
           "skipped": notes, "ratio": "peer median / metalcandle median (> 1: metalcandle faster)",
           "cases": cases, "memory": mem,
           "bandwidth_floor": {str(k): v for k, v in bandwidth.items()},
           "imports": imp, "metal": metal}
    report.write_json(a.out, doc)
    _say(f"wrote {a.out}")
    png = a.plot or os.path.splitext(a.out)[0] + ".png"
    if report.plot(png, cases, names, f"metalcandle vs peers — {info['cpu_model']}, "
                   f"{info.get('cpus_usable', info['cpu_count'])} cores"
                   + (" (quick)" if a.quick else "")):
        _say(f"wrote {png}")
    elif a.plot:
        _say("no plot: matplotlib is not installed (pip install matplotlib)")
    _say(f"total {duration:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
         + ")")
    return 0


def _print_tables(cases, mem, bandwidth, imp, names):
    _say("")
    _say("Median (IQR); **r×** = peer / metalcandle (> 1: metalcandle faster or smaller).")
    rows = [(f"{c['family']}: {c['name']}", c["unit"], c["results"]) for c in cases]
    if mem:
        rows.append((f"memory: peak, {mem['ops']}-op chain, tracemalloc", "bytes",
                     mem["tracemalloc"]))
        rows.append((f"memory: peak, {mem['ops']}-op chain, RSS", "bytes", mem["rss"]))
    for line in report.table(rows, names):
        _say(line)
    if bandwidth:
        _say("")
        for line in report.bandwidth_table(bandwidth):
            _say(line)
    fl = [c for c in cases if c["bytes_floor"]]
    if fl and bandwidth:
        _say("")
        for line in report.floor_table(fl, bandwidth, names):
            _say(line)
    if imp:
        _say("")
        for line in report.import_table(imp):
            _say(line)
        _say(f"`import metalcandle` imports numpy: {imp['numpy_imported']}")


if __name__ == "__main__":
    sys.exit(main())

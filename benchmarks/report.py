"""Output: machine description, Markdown tables, the JSON file, the PNG plot.

Ratios are ``peer / metalcandle`` of the medians: above 1 metalcandle is faster (or smaller),
below 1 the peer is. Spreads are the interquartile range of the per-repetition samples.
"""
import json
import os
import platform
import subprocess
import sys

from benchmarks.harness import fmt_time, fmt_bytes

UNIT_LABEL = {"ns/op": "per op", "ns/node": "per node", "time": "per call", "bytes": "peak"}


def machine_info():
    info = {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        try:
            model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                   capture_output=True, text=True).stdout.strip() or None
        except OSError:
            pass
    info["cpu_model"] = model or platform.processor() or "unknown"
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_kb"] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        if os.path.exists("/sys/hypervisor") or "hypervisor" in open("/proc/cpuinfo").read():
            info["virtualized"] = True
    except OSError:
        pass
    try:
        info["loadavg_start"] = os.getloadavg()
    except (AttributeError, OSError):
        pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        r = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            info["metalcandle_commit"] = r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _fmt(v, unit):
    return fmt_bytes(v) if unit == "bytes" else fmt_time(v)


def _cell(res, unit, ref, is_ref):
    st = res.get("stats") if res else None
    if not st:
        return "-"
    med = st["median"]
    s = f"{_fmt(med, unit)} ({_fmt(st['q1'], unit)}–{_fmt(st['q3'], unit)})"
    if not is_ref and ref:
        s += f" **{med / ref:.2g}×**" if med / ref >= 0.01 else f" **{med / ref:.1e}×**"
    return s


def ref_median(results):
    st = (results.get("metalcandle") or {}).get("stats")
    return st["median"] if st else None


def table(rows, peers):
    """Markdown table; rows are (label, unit, {peer: result})."""
    head = "| case | unit | " + " | ".join(peers) + " |"
    lines = [head, "|" + "---|" * (len(peers) + 2)]
    for label, unit, results in rows:
        ref = ref_median(results)
        cells = [_cell(results.get(p), unit, ref, p == "metalcandle") for p in peers]
        lines.append(f"| {label} | {UNIT_LABEL.get(unit, unit)} | " + " | ".join(cells) + " |")
    return lines


def floor_table(cases, bandwidth, peers):
    head = "| case | floor (copy of x) | " + " | ".join(f"{p} × floor" for p in peers) + " |"
    lines = [head, "|" + "---|" * (len(peers) + 2)]
    for c in cases:
        if not c.get("bytes_floor") or c["bytes_floor"] not in bandwidth:
            continue
        fl = bandwidth[c["bytes_floor"]]["stats"]["median"]
        cells = []
        for p in peers:
            st = (c["results"].get(p) or {}).get("stats")
            cells.append(f"{st['median'] / fl:.3g}×" if st else "-")
        lines.append(f"| {c['name']} | {fmt_time(fl)} | " + " | ".join(cells) + " |")
    return lines


def bandwidth_table(bandwidth):
    lines = ["| buffer | copy time (median, IQR) | GB/s (read+write) |", "|---|---|---|"]
    for nbytes, b in sorted(bandwidth.items()):
        st = b["stats"]
        lines.append(f"| {fmt_bytes(nbytes)} | {fmt_time(st['median'])} "
                     f"({fmt_time(st['q1'])}–{fmt_time(st['q3'])}) | {b['gb_s']:.1f} |")
    return lines


def import_table(imp):
    lines = ["| import | `import X` timed in the process: median (IQR) | whole process: median "
             "− median of `python -c pass` | IQR width of those runs | runs |",
             "|---|---|---|---|---|"]
    for name, r in imp["results"].items():
        st, ip = r["stats"], r.get("in_process")
        inp = f"{fmt_time(ip['median'])} ({fmt_time(ip['q1'])}–{fmt_time(ip['q3'])})" if ip \
            else "-"
        lines.append(f"| {name} | {inp} | {fmt_time(st['median'])} | "
                     f"{fmt_time(st['iqr_width'])} | {st['n']} |")
    b = imp["baseline"]
    if b:
        lines.append(f"| (`python -c pass` itself) | - | {fmt_time(b['median'])} | "
                     f"{fmt_time(b['q3'] - b['q1'])} | {b['n']} |")
    return lines


def write_json(path, doc):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=lambda o: repr(o))


def plot(path, cases, peers, title):
    """Grouped horizontal bars of peer/metalcandle per case (log scale). False if no matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    others = [p for p in peers if p != "metalcandle"]
    rows = [c for c in cases if ref_median(c["results"])]
    if not rows or not others:
        return False
    h = 0.8 / len(others)
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, p in enumerate(others):
        ys, xs = [], []
        for i, c in enumerate(rows):
            st = (c["results"].get(p) or {}).get("stats")
            if st:
                ys.append(i + (j - (len(others) - 1) / 2) * h)
                xs.append(st["median"] / ref_median(c["results"]))
        # bars grow from the ratio-1 line, rightwards when metalcandle is faster
        ax.barh(ys, [x - 1 for x in xs], left=1, height=h, color=colors[j % len(colors)], label=p)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{c['family']}: {c['name']}" for c in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("peer time / metalcandle time  (> 1: metalcandle faster; log scale)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True

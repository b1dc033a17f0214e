"""Import time from fresh subprocesses, two ways: the ``import X`` statement timed inside the
process (``perf_counter_ns`` around it: the import alone, without the interpreter start-up whose
noise on these VMs is larger than the imports measured), and ``python -c "import X"`` minus
``python -c pass`` (whole-process wall time, difference of medians).

Every target runs ``n`` (>= 7) times, interleaved round-robin with the bare interpreter so drift
hits all alike. One untimed import of each target comes
first: with an editable (meson-python) install, an import after a source change rebuilds.

With an editable (meson-python) install, "metalcandle" is timed in a wheel layout: the files of
meson's install plan symlinked into a temporary directory, the editable loader switched off,
which is what a wheel user pays. The editable import (each one runs ninja's up-to-date check
first) is timed as a second row, unless the build is out of date: then every import would
rebuild, and the row is left out with a note.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.harness import summarize

MODULES = {"metalcandle": "metalcandle", "numpy": "numpy", "mlx": "mlx.core", "torch": "torch",
           "tinygrad": "tinygrad", "jax": "jax"}


def wheel_layout():
    """(env, tmpdir, build dir) importing metalcandle without the editable loader, or Nones.

    The tree is laid out from meson's install plan (what a wheel would contain), as symlinks.
    """
    try:
        import metalcandle._graph as g
    except ImportError:
        return None, None, None
    plan_file = os.path.join(os.path.dirname(g.__file__), "meson-info", "intro-install_plan.json")
    if not os.path.exists(plan_file):   # a regular install: nothing to emulate
        return None, None, None
    with open(plan_file) as f:
        plan = json.load(f)
    tmp = tempfile.mkdtemp(prefix="mc_wheel_")
    entries = {}
    for section in ("targets", "python", "install_subdirs"):
        entries.update(plan.get(section, {}))
    for src, info in entries.items():
        dest = info.get("destination", "")
        for prefix in ("{py_platlib}/", "{py_purelib}/"):
            if dest.startswith(prefix):
                path = os.path.join(tmp, dest[len(prefix):])
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if not os.path.exists(path):
                    os.symlink(src, path)
    # A wheel installed by pip carries its bytecode (pip compiles at install time); without it each
    # timed import would compile creation.py/fast.py again (PYTHONDONTWRITEBYTECODE=1 is common on
    # CI machines and set on ours: 10.6 ms instead of 3 ms).
    import compileall
    compileall.compile_dir(tmp, quiet=1)
    build = os.path.dirname(g.__file__)
    env = dict(os.environ, PYTHONPATH=tmp + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MESONPY_EDITABLE_SKIP=os.pathsep.join([build, os.environ.get(
                   "MESONPY_EDITABLE_SKIP", "")]))
    probe = subprocess.run([sys.executable, "-c", "import metalcandle as m; print(m.__file__)"],
                           env=env, capture_output=True, text=True, cwd=tmp)
    if probe.returncode != 0 or not probe.stdout.strip().startswith(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        return None, None, None
    return env, tmp, build


def _editable_stale(build):
    """True when meson-python would rebuild on the next import (sources changed since the build):
    timing that import would time a compile. None when it cannot be told."""
    ninja = shutil.which("ninja") or os.path.join(os.path.dirname(sys.executable), "ninja")
    try:
        r = subprocess.run([ninja, "-n"], cwd=build, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return b"no work to do" not in r.stdout


def _timed(module):
    """Code that imports ``module`` and prints the ns the import statement took."""
    return (f"import time as _t; _s = _t.perf_counter_ns(); import {module}; "
            f"print(_t.perf_counter_ns() - _s)")


def _spawn(code, env, cwd, timeout=60):
    """(wall ns of the process, ns it printed or None), or None if it failed."""
    # The timeout guards against an editable install rebuilding (or a build lock) mid-run.
    t0 = time.perf_counter_ns()
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                           timeout=timeout, text=True)
    except subprocess.TimeoutExpired:
        return None
    dt = time.perf_counter_ns() - t0
    if r.returncode != 0:
        return None
    out = r.stdout.strip()
    return dt, (int(out) if out.isdigit() else None)


def import_times(names, n, log=print):
    """{"results": {target: result}, "baseline": stats, "numpy_imported": bool|None}."""
    cwd = tempfile.gettempdir()   # away from the repo, so `import benchmarks` etc. cannot shadow
    env = dict(os.environ)
    targets = [(nm, _timed(MODULES[nm]), env) for nm in names if nm in MODULES]
    notes = []
    wenv, wtmp, build = wheel_layout() if "metalcandle" in names else (None, None, None)
    if wenv is not None:
        # Editable install: "metalcandle" is the wheel layout (what a user pays); the editable
        # import, which runs ninja first, is timed too unless it would time a rebuild.
        i = [t[0] for t in targets].index("metalcandle")
        targets[i] = ("metalcandle", _timed("metalcandle"), wenv)
        if _editable_stale(build):
            notes.append("metalcandle (editable): not timed, the build is out of date (sources "
                         "edited since the last build), so each import would time a rebuild")
        else:
            targets.insert(1, ("metalcandle (editable, incl. ninja check)",
                               _timed("metalcandle"), env))
    base = ("python -c pass", "pass", env)
    ok = []
    for t in targets:   # untimed first import: rebuilds, bytecode caches
        if _spawn(t[1], t[2], cwd) is None:
            log(f"    import {t[0]} failed; skipped")
        else:
            ok.append(t)
    samples = {t[0]: [] for t in [base] + ok}
    inproc = {t[0]: [] for t in ok}
    every = [base] + ok
    for r in range(n):
        k = r % len(every)
        for name, code, e in every[k:] + every[:k]:
            res = _spawn(code, e, cwd)
            if res is not None:
                samples[name].append(res[0])
                if res[1] is not None:
                    inproc[name].append(res[1])
    b = summarize(samples[base[0]])
    results = {}
    for name, _, _ in ok:
        st = summarize(samples[name])
        if st is None:
            continue
        # The difference of medians; the spread stays that of the raw runs (as IQR width).
        results[name] = {"stats": {"median": st["median"] - b["median"], "raw": st,
                                   "iqr_width": st["q3"] - st["q1"], "n": st["n"]},
                         "in_process": summarize(inproc[name]),
                         "samples": samples[name], "in_process_samples": inproc[name],
                         "note": "minus median of `python -c pass`"}
    numpy_imported = None
    probe = "import sys, metalcandle; print('numpy' in sys.modules)"
    for e in ([wenv, env] if "metalcandle" in names else []):
        if e is not None and numpy_imported is None:
            try:
                r = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                   text=True, cwd=cwd, env=e, timeout=120)
            except subprocess.TimeoutExpired:
                continue
            numpy_imported = {"True": True, "False": False}.get(r.stdout.strip())
    if wtmp:
        shutil.rmtree(wtmp, ignore_errors=True)
    for n_ in notes:
        log("    " + n_)
    layout = "wheel layout (meson install plan)" if wenv is not None else "as installed"
    return {"results": results, "baseline": b, "baseline_samples": samples[base[0]],
            "numpy_imported": numpy_imported, "notes": notes, "metalcandle_layout": layout}

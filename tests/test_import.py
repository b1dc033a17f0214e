"""Importing metalcandle is cheap: no NumPy, no device module, until something is evaluated.

One fresh interpreter (run with ``-O``, so user-input checks are also shown not to rely on
``assert``) records which modules appear after each step; the tests read that record.
"""
import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, sys
snap = {}
base = set(sys.modules)
def take(name):
    snap[name] = sorted(set(sys.modules) - base)

import metalcandle as mc
take("import")
y = (mc.ones((3, 4)) * 2 + mc.arange(4)).sum(axis=0)
z = mc.random.normal((3,)) @ mc.zeros((3, 2))
w = mc.array(1.5) * y
_ = (y.shape, y.dtype, z.size, y.ndim, z.nbytes, w.is_evaluated)
take("build")
from metalcandle.errors import ShapeError
try:
    mc.ones((2, 3)) + mc.ones((4,))
    snap["O_check"] = "no error"
except ShapeError as e:
    snap["O_check"] = "ShapeError"
take("error")
snap["value"] = y.tolist()
take("eval")
snap["device"] = mc.default_device()
print(json.dumps(snap))
"""


@pytest.fixture(scope="module")
def probe():
    env = dict(os.environ, METALCANDLE_DEVICE="cpu")
    r = subprocess.run([sys.executable, "-O", "-c", PROBE], capture_output=True, text=True,
                       timeout=600, env=env, cwd=os.path.dirname(__file__))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def numpy_mods(mods):
    return [m for m in mods if m == "numpy" or m.startswith("numpy.") or m == "ml_dtypes"]


def device_mods(mods):
    return [m for m in mods if m.startswith("metalcandle.backends") or
            m.startswith("metalcandle._metal") or m == "metalcandle.metal"]


def test_import_is_light(probe):
    mods = probe["import"]
    assert "metalcandle" in mods and "metalcandle._graph" in mods
    assert numpy_mods(mods) == []
    assert device_mods(mods) == []


def test_building_a_graph_stays_light(probe):
    assert numpy_mods(probe["build"]) == []
    assert device_mods(probe["build"]) == []


def test_checks_survive_python_O(probe):
    assert probe["O_check"] == "ShapeError"
    assert numpy_mods(probe["error"]) == []


def test_evaluation_loads_the_backend(probe):
    # The probe does see modules: the first evaluation brings in NumPy and the CPU backend.
    assert probe["value"] == [6.0, 9.0, 12.0, 15.0]
    assert "numpy" in probe["eval"]
    assert any(m.startswith("metalcandle.backends") for m in probe["eval"])


def test_device_env_var_honoured(probe):
    assert probe["device"] == "cpu"

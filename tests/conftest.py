"""Fixtures of the core suite: a per-test seeded ``rng``, ``rand`` for fresh inputs, the
``device`` fixture (one run per usable device), and a backend spy for laziness tests."""
import functools
import zlib

import numpy as np
import pytest

import metalcandle as mc
import helpers


# Modules that only test the metal device are not collected in a build without one (CI runs them
# in its second pass, on the -Dmetal=mock build); each also skips itself if run by path.
collect_ignore = [] if "metal" in mc.devices() else [
    "test_metal_executor.py", "test_metal_regions.py", "reliability/test_metal_faults.py"]


@pytest.fixture
def rng(request):
    """A NumPy Generator seeded from the test's node id: fresh per test, reproducible per run."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def rand(rng):
    """``rand(shape, dtype, low=None, high=None, nonzero=True)`` -> fresh NumPy values."""
    return functools.partial(helpers.rand, rng)


@pytest.fixture(params=mc.devices())
def device(request):
    """Run the test once per device of this process (today "cpu"; "metal" where available)."""
    prev = mc.default_device()
    mc.set_default_device(request.param)
    yield request.param
    mc.set_default_device(prev)


@pytest.fixture
def on_metal():
    """The metal device as the default, its error state reset, fusion on (the metal test modules
    use it for every test)."""
    prev = mc.default_device()
    mc.set_default_device("metal")
    mc.metal.reset()
    yield
    mc.set_default_device(prev)
    mc.set_fusion(True)


@pytest.fixture
def spy():
    """An ImplSpy on the NumPy backend table, restored after the test."""
    s = helpers.ImplSpy()
    yield s
    s.restore()


def _wants_float64(values):
    return any(isinstance(v, str) and v == "float64" or v is np.float64 or v is mc.float64
               or (isinstance(v, (tuple, list)) and _wants_float64(v)) for v in values)


def pytest_collection_modifyitems(config, items):
    """float64 exists only on the CPU (tests/test_errors.py checks the metal device refuses it at
    build time): cases that pair the metal device with a float64 dtype are deselected, not run."""
    keep, drop = [], []
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs is not None and cs.params.get("device") == "metal" and _wants_float64(cs.params.values()):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

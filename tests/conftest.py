"""Fixtures of the core suite: a per-test seeded ``rng``, ``rand`` for fresh inputs, the
``device`` fixture (one run per usable device), and a backend spy for laziness tests."""
import functools
import zlib

import numpy as np
import pytest

import metalcandle as mc
import helpers


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
def spy():
    """An ImplSpy on the NumPy backend table, restored after the test."""
    s = helpers.ImplSpy()
    yield s
    s.restore()

"""Fixtures of the reliability suite (the random-graph generator is graphgen.py)."""
import pytest

import metalcandle as mc


@pytest.fixture
def fusion_restored():
    prev = mc._fusion.enabled
    yield
    mc.set_fusion(prev)


@pytest.fixture(autouse=True)
def _device_recovers():
    """A failed command buffer leaves the Metal device in its error state: reset it after each
    test so one failure cannot cascade into the following tests."""
    yield
    if "metal" in mc.devices():
        mc.metal.reset()

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


# The metal-only modules of this directory are not collected in a build without the device (CI runs
# them in its -Dmetal=mock pass). This list shadows the one of tests/conftest.py in this directory.
collect_ignore = [] if "metal" in mc.devices() else ["test_metal_leaks.py", "test_metal_faults.py"]

"""Fixtures of the native-device tests.

Markers: none = runs everywhere (C policy through the pure-C test driver); `mock` = needs the
-Dmetal=mock build (Objective-C driver over the mock Metal framework + MSL simulator); `metal` =
a real Apple GPU. Each is skipped, with the reason, where its build or hardware is missing.

Development loop without reinstalling: METALCANDLE_NATIVE_MODULE=/path/to/_metal*.so loads that
build of metalcandle._metal (e.g. from `meson setup /tmp/native-build -Dmetal=mock`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import pytest


def _load_metal():
    path = os.environ.get("METALCANDLE_NATIVE_MODULE")
    if path:
        import metalcandle
        spec = importlib.util.spec_from_file_location("metalcandle._metal", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["metalcandle._metal"] = module
        spec.loader.exec_module(module)
        metalcandle._metal = module
        return module
    try:
        from metalcandle import _metal
    except ImportError:
        return None
    return _metal


NATIVE = _load_metal()
MOCK = NATIVE is not None and NATIVE.mock_available()
REAL_METAL = NATIVE is not None and NATIVE.metal_driver_available() and not MOCK and sys.platform == "darwin"
SHADERS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shaders")


@pytest.fixture(autouse=True)
def _native_requirements(request):
    if NATIVE is None:
        pytest.skip("metalcandle._metal is not built (meson -Dmetal=disabled)")
    if request.node.get_closest_marker("mock") and not MOCK:
        pytest.skip("needs the -Dmetal=mock build installed (mock Metal framework + MSL simulator)")
    if request.node.get_closest_marker("metal") and not REAL_METAL:
        pytest.skip("needs a real Apple GPU (macOS build with Metal)")


@pytest.fixture
def native():
    return NATIVE


@pytest.fixture
def tdev(native):
    """A device on the pure-C test driver; checks for leaks and driver misuse afterwards."""
    native.test_driver_reset()
    dev = native.Device("test")
    dev.load_library("kernel void fill_f32(\nkernel void fill_const_f32(\nkernel void add_f32(\n"
                     "kernel void scale_f32(\nkernel void inc_f32(\nkernel void fault(\n", "test_kernels.metal")
    yield dev
    dev.close()
    stats = native.test_driver_stats()
    native.test_driver_reset()
    assert stats["violations"] == 0, stats["first_violation"]
    for key in ("live_devices", "live_buffers", "live_libraries", "live_pipelines", "live_commands"):
        assert stats[key] == 0, (key, stats)


def wait_for_zero_live_objects(native, timeout=5.0, baseline=0):
    """The mock GPU thread drops its reference to a command buffer just after the handlers ran.
    Returns the live mock objects above ``baseline`` (objects of devices other tests left open,
    e.g. the process-wide device behind mc.set_default_device("metal"))."""
    deadline = time.monotonic() + timeout
    while native.mock_live_objects() > baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    return native.mock_live_objects() - baseline


@pytest.fixture
def gpu(native):
    """A Metal device (mock on Linux, the GPU on a Mac) loading shaders/ on first use.

    On the mock: no Metal API misuse and 0 live mock objects once the test released everything.
    """
    baseline = 0
    if MOCK:
        native.mock_reset_counters()
        baseline = native.mock_live_objects()
    dev = native.Device("metal", shader_dir=SHADERS)
    yield dev
    dev.close()
    if MOCK:
        counters = native.mock_counters()
        native.mock_reset_counters()
        assert counters["validation_errors"] == 0, counters["first_validation_error"]
        assert wait_for_zero_live_objects(native, baseline=baseline) == 0

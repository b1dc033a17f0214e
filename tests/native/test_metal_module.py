"""metalcandle.metal: importing it opens nothing; its functions behave without a device."""

from __future__ import annotations

import subprocess
import sys

import metalcandle.metal as metal


def test_import_opens_no_device():
    code = ("import sys, metalcandle.metal as m; "
            "assert 'metalcandle._metal' not in sys.modules, 'native module imported'; "
            "assert 'numpy' not in sys.modules, 'numpy imported'; "
            "assert m._device is None; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_stats_without_device_are_zero():
    if metal._device is None:
        s = metal.stats()
        assert s["dispatches"] == 0 and s["active_bytes"] == 0
    metal.clear_cache()
    metal.reset()


def test_is_available_is_bool():
    assert isinstance(metal.is_available(), bool)
    assert metal.shader_dir().name == "shaders"

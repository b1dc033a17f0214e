"""The mock's Metal.h against Apple's API metadata (tools/metal_stub/check_metal_h.py).

The metadata comes from the macOS wheel of pyobjc-framework-Metal: METALCANDLE_PYOBJC_METADATA
names an extracted Metal/_metadata.py, else the tool fetches the wheel with pip (cached); the
test is skipped when neither works (offline).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools/metal_stub/check_metal_h.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("check_metal_h", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def metadata():
    tool = load_tool()
    path = os.environ.get("METALCANDLE_PYOBJC_METADATA")
    try:
        path = Path(path) if path else tool.fetch_metadata(Path(os.environ.get(
            "METALCANDLE_PYOBJC_CACHE", "/tmp/metalcandle-pyobjc")))
        return tool, path.read_text()
    except Exception as e:  # noqa: BLE001 -- offline: nothing to check against
        pytest.skip(f"PyObjC's Metal metadata unavailable: {e}")


def test_metal_h_matches_apple(metadata):
    tool, text = metadata
    problems, unverified, summary = tool.check(tool.HEADER.read_text(), text)
    assert not problems, "\n".join(problems)
    assert len(unverified) <= 4, unverified


def test_checker_catches_mistakes(metadata):
    tool, text = metadata
    bad = tool.HEADER.read_text().replace("MTLDataTypeBool = 53", "MTLDataTypeBool = 52").replace(
        "memoryBarrierWithScope:(MTLBarrierScope)", "memoryBarrierWithScopes:(MTLBarrierScope)")
    problems, _, _ = tool.check(bad, text)
    assert any("MTLDataTypeBool" in p for p in problems)
    assert any("memoryBarrierWithScopes:" in p for p in problems)

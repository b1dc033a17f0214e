"""Fixtures of the simulator tests (marker `sim`): compiled shader modules and fresh RNGs."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from ._helpers import REPO, SHADER_DIR

if str(REPO) not in sys.path:  # tests/ need not be a package for tests.support to import
    sys.path.insert(0, str(REPO))

from tests.support import mslsim  # noqa: E402


def _needed_shaders(session) -> list[str]:
    """Shader files named by the SHADERS lists of the collected test modules."""
    names: set[str] = set()
    here = os.path.dirname(os.path.abspath(__file__))
    for item in session.items:
        module = getattr(item, "module", None)
        wanted = getattr(module, "SHADERS", ())
        # only this directory's test modules declare shader lists (other suites may bind the
        # name SHADERS to something else, e.g. a directory path string)
        if isinstance(wanted, (list, tuple)) and str(getattr(module, "__file__", "")).startswith(here):
            names.update(wanted)
    return sorted(names)


@pytest.fixture(scope="session")
def shaders(request):
    """Name -> mslsim.Module for shaders/<name>.metal; all needed files build in parallel once."""
    from tests.support.mslsim._build import compiler_identity
    try:
        compiler_identity(os.environ.get("CXX") or "g++")
    except mslsim.CompileError as e:
        pytest.skip(f"MSL simulator unavailable: {e}")
    names = _needed_shaders(request.session)
    modules = dict(zip(names, mslsim.compile_files([SHADER_DIR / f"{n}.metal" for n in names])))

    class Shaders(dict):
        def __missing__(self, name):
            self[name] = mslsim.compile_file(SHADER_DIR / f"{name}.metal")
            return self[name]

    return Shaders(modules)


@pytest.fixture
def rng(request):
    """A generator with a fresh seed per test, printed so that a failure can be replayed by
    setting MC_TEST_SEED."""
    seed = int(os.environ.get("MC_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))
    print(f"rng seed for {request.node.nodeid}: {seed}")
    return np.random.default_rng(seed)

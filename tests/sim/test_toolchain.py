"""Self-tests of the simulator's build side: diagnostics, cache, command line, C ABI, arg layouts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support import mslsim

from ._helpers import CONTIG_ARGS, MATMUL_ARGS, REPO, ROW_ARGS, SELFTEST_DIR, SHADER_DIR, STRIDED_ARGS

pytestmark = pytest.mark.sim
HERE = Path(__file__).resolve().parent
MSLSIM_INCLUDE = REPO / "tests" / "support" / "mslsim" / "include"


def marker_line(path: Path, marker: str) -> int:
    return next(i + 1 for i, line in enumerate(path.read_text().splitlines()) if marker in line)


def test_compile_error_points_at_metal_line():
    path = SELFTEST_DIR / "compile_error.metal"
    with pytest.raises(mslsim.CompileError) as e:
        mslsim.compile_file(path)
    assert f"compile_error.metal:{marker_line(path, 'COMPILE_ERROR')}:" in str(e.value)
    assert "no_such_member" in str(e.value)


def test_unsupported_parameter_points_at_metal_line():
    path = SELFTEST_DIR / "unsupported.metal"
    with pytest.raises(mslsim.CompileError, match=r"texture\(0\)") as e:
        mslsim.compile_file(path)
    assert f"unsupported.metal:{marker_line(path, 'UNSUPPORTED')}: error" in str(e.value)


def test_preprocessor_error_and_missing_file(tmp_path):
    bad = tmp_path / "bad.metal"
    bad.write_text('#include <metal_stdlib>\n#include "no_such_header.h"\n')
    with pytest.raises(mslsim.CompileError, match="bad.metal:2"):
        mslsim.compile_file(bad, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        mslsim.compile_file(tmp_path / "missing.metal", cache_dir=tmp_path)


def test_cache_by_content_and_defines():
    src = SELFTEST_DIR / "fill.metal"
    first = mslsim.build_shared_object(src, defines={"VALUE": "1.5f"})
    t0 = time.perf_counter()
    again = mslsim.build_shared_object(src, defines={"VALUE": "1.5f"})
    assert again.so_path == first.so_path and time.perf_counter() - t0 < 1.0
    other = mslsim.build_shared_object(src, defines={"VALUE": "2.5f"})
    assert other.so_path != first.so_path
    y = np.zeros(5, np.float32)
    mslsim.compile_file(src, defines={"VALUE": "2.5f"}).kernel("fill")(y, threads=5, threadgroup=5)
    assert (y == 2.5).all()


def test_command_line_compile_and_info(tmp_path):
    out = tmp_path / "unary.so"
    # run as a path from another directory, as the mock Metal framework's build does
    cli = [sys.executable, str(REPO / "tests" / "support" / "mslsim")]
    r = subprocess.run([*cli, "compile", str(SHADER_DIR / "unary.metal"), "-o", str(out)], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.exists()
    r = subprocess.run([sys.executable, "-m", "tests.support.mslsim", "info", str(SELFTEST_DIR / "selftest.metal")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"fc_scale"' in r.stdout and '"histogram"' in r.stdout
    r = subprocess.run([*cli, "compile", str(SELFTEST_DIR / "compile_error.metal"), "-o", str(tmp_path / "x.so")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "compile_error.metal:" in r.stderr


def _cc():
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    return cc


def test_c_client_of_launcher_abi(tmp_path):
    so = mslsim.build_shared_object(SHADER_DIR / "unary.metal").so_path
    exe = tmp_path / "abi_client"
    subprocess.run([_cc(), "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(MSLSIM_INCLUDE),
                    str(HERE / "abi_client.c"), "-o", str(exe), "-ldl"], check=True)
    r = subprocess.run([str(exe), str(so)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "status=1" in r.stdout and "no buffer bound at index 2" in r.stdout


def test_kernel_args_header_layout_matches_numpy_mirrors(tmp_path):
    exe = tmp_path / "args_layout"
    subprocess.run([_cc(), "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-I", str(SHADER_DIR),
                    str(HERE / "args_layout.c"), "-o", str(exe)], check=True)
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")
    mirrors = {"mc_contig_args": CONTIG_ARGS, "mc_strided_args": STRIDED_ARGS, "mc_row_args": ROW_ARGS,
               "mc_matmul_args": MATMUL_ARGS}
    for line in filter(None, lines):
        name, offset, size = line.split()
        struct, _, field = name.partition(".")
        dt = mirrors[struct]
        if not field:
            assert dt.itemsize == int(size), struct
            continue
        field_dtype, field_offset = dt.fields[field][:2]
        assert (field_offset, field_dtype.itemsize) == (int(offset), int(size)), name


def _inline_includes(path: Path, seen: set) -> str:
    """The source with its quoted #includes pasted in, as the host loader hands it to Metal."""
    out = []
    for line in path.read_text().splitlines():
        name = line.strip()[len('#include "'):-1] if line.strip().startswith('#include "') else None
        if name is None:
            out.append(line)
        elif name not in seen:
            seen.add(name)
            out.append(_inline_includes(path.parent / name, seen))
    return "\n".join(out)


def test_shader_with_inlined_headers_builds_outside_the_shader_dir():
    """newLibraryWithSource: has no include path: the sources must work with headers pasted in."""
    # A stable path in the cache folder keeps the build key stable, so warm runs hit the cache.
    src = mslsim.default_cache_dir() / "test-inputs" / "softmax_inlined.metal"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(_inline_includes(SHADER_DIR / "softmax.metal", set()))
    mod = mslsim.compile_file(src)
    x = np.random.default_rng().standard_normal((2, 40)).astype(np.float32)
    y = np.full_like(x, np.nan)
    args = np.zeros(1, ROW_ARGS)
    args["rows"], args["n"] = 2, 40
    mod.kernel("softmax_block_f32")(x, y, args, grid=2, threadgroup=32)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)

"""Build a .metal file into a cached shared object: pass 1, translation, pass 2."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import _frontend
from ._errors import CompileError

HERE = Path(__file__).resolve().parent
INCLUDE = HERE / "include"
PASS1_INCLUDE = INCLUDE / "pass1"
# Bump when the generated code changes in a way the hashed inputs do not show.
FRONTEND_VERSION = "1"

CXX_FLAGS = (
    "-std=c++17", "-fPIC", "-shared", "-pthread",
    "-fvisibility=hidden",  # every library carries its own runtime: keep its symbols private
    "-fno-strict-aliasing",  # kernels cast device pointers freely, as MSL allows
    "-Wall", "-Wno-unused-variable", "-Wno-unused-function", "-Wno-unused-but-set-variable",
    "-Wno-unused-local-typedefs", "-Wno-attributes",
)


@dataclass(frozen=True)
class BuildResult:
    so_path: Path
    cpp_path: Path
    translation: _frontend.Translation
    log: str


def default_cache_dir() -> Path:
    """MSLSIM_CACHE_DIR, else $XDG_CACHE_HOME/metalcandle-mslsim, else /tmp/mslsim-cache-<uid>."""
    if os.environ.get("MSLSIM_CACHE_DIR"):
        return Path(os.environ["MSLSIM_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "metalcandle-mslsim"
    return Path(tempfile.gettempdir()) / f"mslsim-cache-{os.getuid()}"


@functools.lru_cache(maxsize=None)
def compiler_identity(cxx: str) -> str:
    """The compiler's version line; also checks it can compile MSL half (_Float16)."""
    path = shutil.which(cxx)
    if path is None:
        raise CompileError(f"C++ compiler {cxx!r} not found (set CXX, or install g++ >= 12)")
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else cxx
    m = re.search(r"(\d+)\.\d+", first)
    major = int(m.group(1)) if m else 0
    clang = "clang" in first
    if major < (15 if clang else 12):
        raise CompileError(f"{cxx} is {first!r}: the simulator needs _Float16 for MSL half "
                           "(g++ >= 12 or clang++ >= 15)")
    return f"{path}|{first}"


@functools.lru_cache(maxsize=None)
def headers_digest() -> str:
    h = hashlib.sha256(FRONTEND_VERSION.encode())
    for p in sorted(INCLUDE.glob("*.h")):
        h.update(p.name.encode() + p.read_bytes())
    h.update(Path(_frontend.__file__).read_bytes())
    return h.hexdigest()


def define_args(defines: dict | None) -> list[str]:
    args = []
    for name, value in (defines or {}).items():
        if not re.fullmatch(r"[A-Za-z_]\w*", str(name)):
            raise ValueError(f"invalid macro name {name!r}")
        if value is None or value is True:
            args.append(f"-D{name}")
        elif value is False:
            args.append(f"-D{name}=0")
        else:
            args.append(f"-D{name}={value}")
    return args


def first_errors(log: str, limit: int = 12) -> str:
    """The compiler lines worth showing first: errors plus their 'required from' context."""
    keep = [ln for ln in log.splitlines() if re.search(r"\berror\b|required from here|note: in instantiation", ln)]
    return "\n".join((keep or log.splitlines())[:limit])


def preprocess(path: Path, cxx: str, defines: dict | None, include_dirs: tuple) -> str:
    cmd = [cxx, "-E", "-x", "c++", "-std=c++17", "-D__METAL_VERSION__=310", "-DMSLSIM=1",
           "-I", str(PASS1_INCLUDE), "-I", str(path.parent),
           *[a for d in include_dirs for a in ("-I", str(d))], *define_args(defines), str(path)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise CompileError(f"preprocessing {path} failed:\n{first_errors(r.stderr)}", path=str(path), log=r.stderr)
    return r.stdout


def build(path: str | os.PathLike, *, defines: dict | None = None, include_dirs: tuple = (),
          cxx: str | None = None, opt: str = "-O2", extra_flags: tuple = (),
          cache_dir: str | os.PathLike | None = None) -> BuildResult:
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such .metal file: {path}")
    cxx = cxx or os.environ.get("CXX") or "g++"
    identity = compiler_identity(cxx)
    translation = _frontend.translate(preprocess(path, cxx, defines, tuple(include_dirs)), str(path))
    flags = [*CXX_FLAGS, opt, *extra_flags]
    if "clang" not in identity:
        # Keep GCC from making inline statics STB_GNU_UNIQUE: those are shared across dlopen'ed
        # libraries and pin them in memory.
        flags.append("-fno-gnu-unique")
    key = hashlib.sha256("\0".join([translation.cpp, identity, *flags, headers_digest()]).encode()).hexdigest()[:24]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    base = cache / f"{path.stem}.{key}"
    so_path, cpp_path, err_path = Path(f"{base}.so"), Path(f"{base}.cpp"), Path(f"{base}.err")
    if so_path.exists():
        return BuildResult(so_path, cpp_path, translation, "")
    if err_path.exists():  # the same input failed before: the same diagnostics, without the wait
        log = err_path.read_text()
        raise CompileError(f"compiling {path} for the simulator failed:\n{first_errors(log)}",
                           path=str(path), log=log)
    # Unique temporary names, then atomic renames: concurrent builds of one key are harmless.
    fd, tmp_cpp = tempfile.mkstemp(suffix=".cpp", prefix=base.name + ".", dir=cache)
    with os.fdopen(fd, "w") as f:
        f.write(translation.cpp)
    tmp_so = tmp_cpp[:-4] + ".so"
    cmd = [cxx, *flags, "-I", str(INCLUDE), "-include", "mslsim_compat.h", "-x", "c++", tmp_cpp, "-o", tmp_so]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        os.replace(tmp_cpp, cpp_path)
        log = r.stderr.replace(tmp_cpp, str(cpp_path))
        if re.search(r"^[^:\n]+:\d+:\d+: error:", log, re.M):  # a real diagnostic, not a crash: cache it
            fd, tmp_err = tempfile.mkstemp(suffix=".err", prefix=base.name + ".", dir=cache)
            with os.fdopen(fd, "w") as f:
                f.write(log)
            os.replace(tmp_err, err_path)
        raise CompileError(f"compiling {path} for the simulator failed:\n{first_errors(log)}",
                           path=str(path), log=log)
    os.replace(tmp_cpp, cpp_path)
    os.replace(tmp_so, so_path)
    return BuildResult(so_path, cpp_path, translation, r.stderr)

"""Command line: build a .metal file into a launcher library for the mock Metal framework.

    python -m tests.support.mslsim compile FILE.metal [-D NAME[=VALUE]]... [-I DIR]... -o OUT.so
    python -m tests.support.mslsim info FILE.metal        # kernels, parameters, constants (JSON)
    python -m tests.support.mslsim cache-dir

Also runnable as ``python tests/support/mslsim ...`` from any directory. Exit status 0 on
success, 1 with the diagnostics (FILE.metal:LINE: error: ...) on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

if not __package__:  # run as a path: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
    __package__ = "tests.support.mslsim"

from . import CompileError, build_shared_object, default_cache_dir  # noqa: E402


def parse_defines(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        name, sep, value = item.partition("=")
        out[name] = value if sep else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.support.mslsim", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("compile", "info"):
        p = sub.add_parser(name)
        p.add_argument("file")
        p.add_argument("-D", dest="defines", action="append", default=[], metavar="NAME[=VALUE]")
        p.add_argument("-I", dest="include_dirs", action="append", default=[], metavar="DIR")
        p.add_argument("--cxx", default=None)
        p.add_argument("--opt", default="-O2")
        p.add_argument("--cache-dir", default=None)
        if name == "compile":
            p.add_argument("-o", dest="output", required=True)
    sub.add_parser("cache-dir")
    args = ap.parse_args(argv)

    if args.command == "cache-dir":
        print(default_cache_dir())
        return 0
    try:
        result = build_shared_object(args.file, defines=parse_defines(args.defines), include_dirs=args.include_dirs,
                                     cxx=args.cxx, opt=args.opt, cache_dir=args.cache_dir)
    except (CompileError, FileNotFoundError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    if args.command == "info":
        print(json.dumps(result.translation.info(), indent=2))
        return 0
    tmp = f"{args.output}.{os.getpid()}.tmp"     # concurrent compiles of one source may race
    shutil.copyfile(result.so_path, tmp)
    os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check the mock's Metal declarations against Apple's API metadata.

tests/support/mockmetal/include/Metal/Metal.h declares, by hand, the Metal subset metalcandle
uses, so the Objective-C driver compiles on Linux. This script checks every selector, its return
and argument type encodings, and every enum value there against the metadata PyObjC generates
from Apple's SDK, shipped in the macOS wheel of pyobjc-framework-Metal (fetched with pip; nothing
of Apple's is stored in this repository).

    python tools/metal_stub/check_metal_h.py                  # fetch (cached) and check
    python tools/metal_stub/check_metal_h.py --metadata FILE  # an extracted Metal/_metadata.py

Exit status: 0 all consistent, 1 a mismatch, 2 the metadata could not be obtained.
PyObjC lists every protocol method with its full signature; class (@interface) methods appear
only when they need special handling, so a class method absent from the metadata is reported as
"unverified" (not an error).
"""

from __future__ import annotations

import argparse
import ast
import glob
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "tests/support/mockmetal/include/Metal/Metal.h"
PLATFORM = "macosx_11_0_universal2"

ENCODINGS = {"void": "v", "BOOL": "Z", "NSUInteger": "Q", "NSInteger": "q", "uint64_t": "Q", "int": "i",
             "uint32_t": "I", "float": "f", "void*": "^v", "MTLSize": "{MTLSize=QQQ}", "MTLCommandBufferHandler": "@?"}


def fetch_metadata(cache: Path) -> Path:
    """Metal/_metadata.py from the pyobjc-framework-Metal macOS wheel (pip download, cached)."""
    out = cache / "Metal_metadata.py"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--platform", PLATFORM, "pyobjc-framework-Metal", "-d", tmp]
        subprocess.run(cmd, check=True)
        wheel = glob.glob(os.path.join(tmp, "pyobjc_framework_metal-*.whl"))[0]
        with zipfile.ZipFile(wheel) as z:
            out.write_bytes(z.read("Metal/_metadata.py"))
    return out


def parse_metadata(text: str) -> tuple[dict[str, int], dict[str, dict]]:
    enums = {k: int(v) for k, v in re.findall(r"\$(\w+)@(-?\d+)", text)}
    methods: dict[str, dict] = {}
    for m in re.finditer(r'r\(\s*b"(\w+)",\s*b"([^"]+)",\s*(\{.*?\})\s*,?\s*\)\n', text, re.S):
        try:
            methods.setdefault(m.group(2), ast.literal_eval(m.group(3)))
        except (ValueError, SyntaxError):
            pass
    return enums, methods


def encode(ctype: str, enum_types: set[str]) -> str:
    t = re.sub(r"\b(nullable|_Nullable|_Nonnull|__autoreleasing|const|NS_RETURNS_INNER_POINTER)\b", "", ctype)
    t = t.replace(" ", "")
    if t in ENCODINGS:
        return ENCODINGS[t]
    if t in enum_types:
        return "Q"
    if t.endswith("**"):
        return "^@"
    if t.startswith("id<") or t == "id" or (t.endswith("*") and t[0].isupper()):
        return "@"
    return "?" + t


def strip_modifiers(enc: str) -> str:
    return enc.lstrip("rnNoOV")


def same_but_sign(a: str, b: str) -> bool:
    """q vs Q, i vs I...: PyObjC keys protocol methods by selector alone, so a selector shared by
    several Metal protocols (e.g. -status: MTLCommandBufferStatus and MTLIOStatus) keeps one
    signature; the width agrees, only the sign may come from the other protocol."""
    return a != b and len(a) == len(b) == 1 and a.lower() == b.lower() and a.lower() in "qilsc"


def parse_header(text: str):
    """(container kind, container, selector, return type, [argument types]) per declaration."""
    text = re.sub(r"//[^\n]*", "", text)
    decls = []
    for block in re.finditer(r"@(protocol|interface)\s+(\w+)(.*?)@end", text, re.S):
        kind, name, body = block.groups()
        for m in re.finditer(r"^\s*-\s*\(([^)]*)\)\s*(\w+)(.*?);", body, re.M | re.S):
            ret, first, rest = m.groups()
            parts = re.findall(r"(\w+)\s*:\s*\(([^)]*)\)\s*\w+", first + rest)
            sel = "".join(p + ":" for p, _ in parts) if parts else first
            decls.append((kind, name, sel, ret, [t for _, t in parts]))
        for m in re.finditer(r"@property\s*\(([^)]*)\)\s*([^;]*?)\s*\b(\w+)\s*;", body):
            attrs, ptype, pname = m.groups()
            ptype = ptype.strip()
            decls.append((kind, name, pname, ptype, []))
            if "readonly" not in attrs:
                decls.append((kind, name, "set" + pname[0].upper() + pname[1:] + ":", "void", [ptype]))
    enum_types = set(re.findall(r"typedef\s+NS_(?:ENUM|OPTIONS)\s*\(\s*\w+\s*,\s*(\w+)\s*\)", text))
    enum_values = {k: int(v) for k, v in re.findall(r"^\s*(MTL\w+)\s*=\s*(\d+)\s*,", text, re.M)}
    return decls, enum_types, enum_values


def check(header_text: str, metadata_text: str) -> tuple[list[str], list[str], str]:
    enums, methods = parse_metadata(metadata_text)
    decls, enum_types, enum_values = parse_header(header_text)
    problems, unverified = [], []
    typed = 0
    for kind, container, sel, ret, args in decls:
        meta = methods.get(sel)
        if meta is None:
            if kind == "protocol":
                problems.append(f"{container}: -{sel} is not in Apple's Metal API")
            else:
                unverified.append(f"{container}: -{sel}")
            continue
        want_ret = strip_modifiers(meta.get("retval", {}).get("type", b"").decode())
        got_ret = strip_modifiers(encode(ret, enum_types))
        if want_ret and same_but_sign(want_ret, got_ret):
            unverified.append(f"{container}: -{sel} return sign ({got_ret} here, {want_ret} in PyObjC's shared entry)")
        elif want_ret and want_ret != got_ret:
            problems.append(f"{container}: -{sel} returns {ret.strip()!r} ({encode(ret, enum_types)}), "
                            f"Apple: {want_ret}")
        for i, arg in enumerate(args):
            want = strip_modifiers(meta.get("arguments", {}).get(i + 2, {}).get("type", b"").decode())
            got = strip_modifiers(encode(arg, enum_types))
            if want and same_but_sign(want, got):
                unverified.append(f"{container}: -{sel} argument {i} sign ({got} here, {want} in PyObjC)")
            elif want and want != got:
                problems.append(f"{container}: -{sel} argument {i} is {arg.strip()!r} ({got}), Apple: {want}")
        typed += 1
    for name, value in enum_values.items():
        if name not in enums:
            problems.append(f"enum {name} is not in Apple's Metal API")
        elif enums[name] != value:
            problems.append(f"enum {name} = {value}, Apple: {enums[name]}")
    summary = (f"{len(decls)} selectors ({typed} with Apple's type encodings, {len(unverified)} unverified), "
               f"{len(enum_values)} enum values checked against {len(methods)} PyObjC signatures and "
               f"{len(enums)} enum values")
    return problems, unverified, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metadata", help="an extracted Metal/_metadata.py (default: fetch with pip)")
    ap.add_argument("--header", default=str(HEADER))
    ap.add_argument("--cache", default=os.environ.get("METALCANDLE_PYOBJC_CACHE",
                                                      os.path.join(tempfile.gettempdir(), "metalcandle-pyobjc")))
    args = ap.parse_args(argv)
    try:
        meta_path = Path(args.metadata) if args.metadata else fetch_metadata(Path(args.cache))
        metadata = meta_path.read_text()
    except (OSError, subprocess.CalledProcessError, IndexError, KeyError) as e:
        print(f"cannot obtain PyObjC's Metal metadata: {e}", file=sys.stderr)
        return 2
    problems, unverified, summary = check(Path(args.header).read_text(), metadata)
    print(summary)
    for u in unverified:
        print("unverified:", u)
    for p in problems:
        print("MISMATCH", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

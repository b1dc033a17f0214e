"""Translate preprocessed MSL into host C++ plus one C launcher per kernel.

Input is the output of pass 1 (``c++ -E`` with empty Metal headers): the file's own macros
and includes are expanded and ``# N "file"`` line markers are kept, so every rewrite here
preserves the number of lines and diagnostics still point at the ``.metal`` source.

Rewrites:
  * ``[[...]]`` attributes are recorded, then blanked (Clang rejects them on explicit
    instantiations; GCC would only warn);
  * explicit instantiations ``template [[host_name("n")]] [[kernel]] ...;`` are recorded and
    blanked: the launcher's ``&f<T>`` instantiates the template anyway;
  * ``constant T x [[function_constant(i)]];`` becomes a FunctionConstant<T, i> whose value
    comes from the dispatch, so one compiled library serves every pipeline;
  * kernel-scope ``threadgroup T x[N];`` becomes a reference into per-threadgroup storage.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from dataclasses import dataclass, field

from ._errors import CompileError

BUILTINS = {
    "thread_position_in_grid": 2,
    "thread_position_in_threadgroup": 3,
    "threadgroup_position_in_grid": 4,
    "threads_per_threadgroup": 5,
    "threadgroups_per_grid": 6,
    "threads_per_grid": 7,
    "thread_index_in_threadgroup": 8,
    "simdgroup_index_in_threadgroup": 9,
    "thread_index_in_simdgroup": 10,
    "threads_per_simdgroup": 11,
    "simdgroups_per_threadgroup": 12,
    "dispatch_threads_per_threadgroup": 13,
}
KIND_BUFFER, KIND_THREADGROUP = 0, 1
STD_ATTRIBUTES = {"maybe_unused", "likely", "unlikely", "fallthrough", "nodiscard", "noreturn"}

ATTR_RE = re.compile(r"\[\[(.*?)\]\]", re.S)
LINEMARK_RE = re.compile(r'^# (\d+) "((?:[^"\\]|\\.)*)"[^\n]*$', re.M)
FUNCTION_CONSTANT_RE = re.compile(
    r"\bconstant\s+(?P<type>[A-Za-z_][\w:]*)\s+(?P<name>[A-Za-z_]\w*)\s*"
    r"\[\[\s*function_constant\s*\(\s*(?P<index>\d+)\s*\)\s*\]\]\s*;")
KERNEL_RE = re.compile(r"(?:\bkernel|\[\[\s*kernel\s*\]\])\s+void\s+(?P<name>\w+)\s*\(")
INSTANTIATION_RE = re.compile(r"\btemplate\s*(?P<attrs>(?:\[\[.*?\]\]\s*)+)", re.S)
THREADGROUP_DECL_RE = re.compile(
    r"(?P<pre>^|[;{}])(?P<ws>\s*)threadgroup\s+(?P<type>[A-Za-z_][\w:<>, ()]*?)\s+"
    r"(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\];]*\])*)\s*;", re.M)


@dataclass
class Param:
    name: str
    type: str
    kind: int
    index: int | None
    access: str  # "read" / "read_write" for memory, "" for built-ins
    condition: int = -1  # [[function_constant(c)]] on the parameter: present only if c is true


@dataclass
class Kernel:
    name: str           # host name: the launcher is mslsim_kernel_<name>
    function: str       # C++ expression naming the function, e.g. softmax<float>
    params: list[Param]
    file: str
    line: int


@dataclass
class FunctionConstant:
    name: str
    index: int
    type: str


@dataclass
class Translation:
    cpp: str
    kernels: list[Kernel] = field(default_factory=list)
    function_constants: list[FunctionConstant] = field(default_factory=list)

    def info(self) -> dict:
        return {
            "abi_version": 1,
            "kernels": [
                {"name": k.name, "function": k.function, "file": k.file, "line": k.line,
                 "params": [{"name": p.name, "type": p.type, "binding": binding_name(p.kind),
                             "index": p.index, "access": p.access,
                             "function_constant": p.condition if p.condition >= 0 else None}
                            for p in k.params]}
                for k in self.kernels],
            "function_constants": [{"name": c.name, "index": c.index, "type": c.type}
                                   for c in self.function_constants],
        }


def binding_name(kind: int) -> str:
    if kind == KIND_BUFFER:
        return "buffer"
    if kind == KIND_THREADGROUP:
        return "threadgroup"
    return next(n for n, k in BUILTINS.items() if k == kind)


def blank(text: str) -> str:
    """Same length with newlines kept, so line numbers stay right."""
    return re.sub(r"[^\n]", " ", text)


class Source:
    """Pass-1 text plus a map from offsets to (file, line) through its line markers."""

    def __init__(self, text: str, origin: str):
        self.text = text
        self.origin = origin
        self._offsets: list[int] = []
        self._marks: list[tuple[str, int]] = []
        for m in LINEMARK_RE.finditer(text):
            self._offsets.append(m.end() + 1)
            self._marks.append((m.group(2).encode().decode("unicode_escape"), int(m.group(1))))

    def location(self, offset: int) -> tuple[str, int]:
        i = bisect.bisect_right(self._offsets, offset) - 1
        if i < 0:
            return self.origin, self.text.count("\n", 0, offset) + 1
        file, line = self._marks[i]
        return file, line + self.text.count("\n", self._offsets[i], offset)

    def error(self, offset: int, message: str) -> CompileError:
        file, line = self.location(offset)
        return CompileError(f"{file}:{line}: error: {message}", path=self.origin)


def match_close(text: str, i: int, open_ch: str = "(", close_ch: str = ")") -> int:
    """Index of the bracket closing the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_ch:
            depth += 1
        elif text[j] == close_ch:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unbalanced {open_ch}{close_ch}")


def split_params(text: str) -> list[str]:
    out, cur, depth, k = [], [], 0, 0
    while k < len(text):
        if text.startswith("[[", k):
            end = text.index("]]", k) + 2
            cur.append(text[k:end])
            k = end
            continue
        c = text[k]
        if c in "(<[":
            depth += 1
        elif c in ")>]":
            depth -= 1
        if c == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        k += 1
    if "".join(cur).strip():
        out.append("".join(cur))
    return out


def parse_param(text: str, src: Source, offset: int, constants: dict[str, int]) -> Param:
    attrs = [a.strip() for group in ATTR_RE.findall(text) for a in split_params(group)]
    condition = -1
    for a in list(attrs):
        c = re.fullmatch(r"function_constant\s*\(\s*(\w+)\s*\)", a)
        if c:
            if c.group(1) not in constants:
                raise src.error(offset, f"[[function_constant({c.group(1)})]]: no function constant of that name")
            condition = constants[c.group(1)]
            attrs.remove(a)
    decl = " ".join(ATTR_RE.sub(" ", text).split())
    m = re.search(r"([A-Za-z_]\w*)\s*$", decl)
    if not m:
        raise src.error(offset, f"cannot read kernel parameter {decl!r}")
    name, ctype = m.group(1), decl[:m.start()].strip()
    is_memory = "*" in ctype or "&" in ctype
    read_only = re.search(r"\bconst\b|\bconstant\b", ctype) is not None
    access = ("read" if read_only else "read_write") if is_memory else ""
    for a in attrs:
        b = re.fullmatch(r"(buffer|threadgroup)\s*\(\s*(\d+)\s*\)", a)
        if b:
            kind = KIND_BUFFER if b.group(1) == "buffer" else KIND_THREADGROUP
            return Param(name, ctype, kind, int(b.group(2)), access, condition)
        if a in BUILTINS:
            return Param(name, ctype, BUILTINS[a], None, "", condition)
    if attrs:
        raise src.error(offset, f"kernel parameter '{name}': unsupported attribute [[{attrs[0]}]] "
                                "(the simulator runs buffers, threadgroup memory and thread-position built-ins)")
    if is_memory and re.search(r"\b(device|constant)\b", ctype):
        return Param(name, ctype, KIND_BUFFER, None, access, condition)  # index assigned in order below
    raise src.error(offset, f"kernel parameter '{name}' has no [[buffer(i)]] or built-in attribute")


def parse_params(text: str, src: Source, offset: int, constants: dict[str, int]) -> list[Param]:
    """Parameters of the list `text`, which starts at `offset` in the source."""
    params, pos = [], offset
    for p in split_params(text):
        params.append(parse_param(p, src, pos + len(p) - len(p.lstrip()), constants))
        pos += len(p) + 1  # the comma
    used = {p.index for p in params if p.kind == KIND_BUFFER and p.index is not None}
    nxt = 0
    for p in params:
        if p.kind == KIND_BUFFER and p.index is None:
            while nxt in used:
                nxt += 1
            p.index = nxt
            used.add(nxt)
    return params


def is_template_definition(text: str, start: int) -> bool:
    before = ATTR_RE.sub(lambda m: blank(m.group(0)), text[max(0, start - 2000):start]).rstrip()
    if not before.endswith(">"):
        return False
    depth = 0
    for j in range(len(before) - 1, -1, -1):
        depth += {">": 1, "<": -1}.get(before[j], 0)
        if depth == 0:
            return re.search(r"\btemplate\s*$", before[:j]) is not None
    return False


def host_name_of(attrs: list[str]) -> str | None:
    for a in attrs:
        m = re.fullmatch(r"\s*host_name\s*\((.*)\)\s*", a, re.S)
        if m:
            return "".join(re.findall(r'"([^"]*)"', m.group(1)))  # "a" "b" concatenates
    return None


def translate(text: str, origin: str) -> Translation:
    src = Source(text, origin)
    out = list(text)

    def replace(start: int, end: int, new: str) -> None:
        newlines = text.count("\n", start, end) - new.count("\n")
        out[start:end] = [""] * (end - start)
        out[start] = new + "\n" * max(0, newlines)

    result = Translation(cpp="")
    definitions: dict[str, list[Param]] = {}  # kernel templates by name
    kernel_spans: list[tuple[int, int]] = []
    constant_matches = list(FUNCTION_CONSTANT_RE.finditer(text))
    for m in constant_matches:
        result.function_constants.append(FunctionConstant(m.group("name"), int(m.group("index")), m.group("type")))
    constants = {c.name: c.index for c in result.function_constants}

    for m in KERNEL_RE.finditer(text):
        close = match_close(text, m.end() - 1)
        if not text[close + 1:].lstrip().startswith("{"):
            continue  # a declaration, or the kernel of an explicit instantiation
        params = parse_params(text[m.end():close], src, m.end(), constants)
        if is_template_definition(text, m.start()):
            definitions[m.group("name")] = params
            continue
        file, line = src.location(m.start())
        result.kernels.append(Kernel(m.group("name"), m.group("name"), params, file, line))

    for m in INSTANTIATION_RE.finditer(text):
        attrs = ATTR_RE.findall(m.group("attrs"))
        rest = text[m.end():]
        decl = re.match(r"(?:kernel\s+)?(?:void\s+(?P<fn>\w+)\s*<|decltype\s*\()", rest)
        if not decl or not any(a.strip() == "kernel" for a in attrs) and not rest.startswith("kernel"):
            continue
        name = host_name_of(attrs)
        if decl.group("fn"):
            fn = decl.group("fn")
            lt = m.end() + decl.end() - 1
            targs = text[lt + 1:match_close(text, lt, "<", ">")]
            paren = text.index("(", match_close(text, lt, "<", ">"))
            end = text.index(";", match_close(text, paren))
        else:  # template [[host_name(..)]] [[kernel]] decltype(f<T>) f<T>;
            paren = m.end() + decl.end() - 1
            inner = text[paren + 1:match_close(text, paren)]
            fm = re.match(r"\s*(\w+)\s*<(.*)>\s*$", inner, re.S)
            if not fm:
                raise src.error(m.start(), f"cannot read explicit instantiation decltype({inner.strip()})")
            fn, targs = fm.group(1), fm.group(2)
            end = text.index(";", match_close(text, paren))
        if fn not in definitions:
            raise src.error(m.start(), f"explicit instantiation of '{fn}': no kernel template of that name")
        function = f"{fn}<{' '.join(targs.split())}>"
        file, line = src.location(m.start())
        result.kernels.append(Kernel(name or f"{fn}_{len(result.kernels)}", function,
                                     [Param(**vars(p)) for p in definitions[fn]], file, line))
        kernel_spans.append((m.start(), end + 1))

    for start, end in kernel_spans:
        replace(start, end, blank(text[start:end]))

    for m, c in zip(constant_matches, result.function_constants):
        replace(m.start(), m.end(),
                f'static const ::mslsim::FunctionConstant<{c.type}, {c.index}> {c.name}{{"{c.name}"}};')

    text2 = "".join(out)
    text2 = ATTR_RE.sub(lambda m: m.group(0) if m.group(1).strip() in STD_ATTRIBUTES else blank(m.group(0)), text2)
    counter = itertools.count(1)

    def threadgroup_decl(m: re.Match) -> str:
        ctype, name, dims = m.group("type").strip(), m.group("name"), m.group("dims").replace(" ", "")
        ref = f"{ctype} (&{name}){dims}" if dims else f"{ctype}& {name}"
        body = f"{ref} = ::mslsim::tg_var<{ctype}{dims}, {next(counter)}>();"
        lead = m.group("pre") + m.group("ws")
        return lead + body + "\n" * m.group(0)[len(lead):].count("\n")  # keep the line count

    text2 = THREADGROUP_DECL_RE.sub(threadgroup_decl, text2)

    names = [k.name for k in result.kernels]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CompileError(f"{origin}: error: kernel name(s) defined twice: {', '.join(dupes)}", path=origin)
    result.cpp = text2 + launchers(result)
    return result


def c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def launchers(t: Translation) -> str:
    lines = ["", "// ---- generated by mslsim: one C launcher per kernel (see include/mslsim_abi.h) ----"]
    export = 'extern "C" __attribute__((visibility("default")))'
    for k in t.kernels:
        binds = ", ".join(f"{{{p.kind}, {p.index if p.index is not None else 0}, {c_string(p.name)}, {p.condition}}}"
                          for p in k.params) or "{0, 0, \"\", -1}"
        lines += [f"#line {k.line} {c_string(k.file)}",
                  f"{export} int mslsim_kernel_{k.name}(mslsim_dispatch* d) {{",
                  f"  static const ::mslsim::Binding b[] = {{{binds}}};",
                  f"  return ::mslsim::launch(&{k.function}, b, {len(k.params)}, {c_string(k.name)}, d);",
                  "}"]
    info = json.dumps(t.info(), separators=(",", ":"))
    lines += ['#line 1 "<mslsim-generated>"',
              f"{export} const char* mslsim_module_info(void) {{ return {c_string(info)}; }}",
              f"{export} uint32_t mslsim_abi_version(void) {{ return MSLSIM_ABI_VERSION; }}", ""]
    return "\n".join(lines)

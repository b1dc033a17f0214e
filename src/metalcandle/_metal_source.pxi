# _metal_source.pxi -- assembling a .metal file into one source string (included by _metal.pyx).

_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"\s*$')


def shader_source(path, include_dirs=()):
    """The MSL source of ``path`` with its local ``#include "x.h"`` files inlined.

    Metal compiles a single source string (no include path), so local headers are inlined, once
    each, between ``#line`` directives: compiler diagnostics still name the original file and line.
    """
    path = os.path.abspath(os.fspath(path))
    dirs = [os.path.dirname(path), *[os.fspath(d) for d in include_dirs]]
    seen = set()
    out = []

    def emit(file):
        with open(file, encoding="utf-8") as f:
            lines = f.read().splitlines()
        name = os.path.basename(file)
        out.append(f'#line 1 "{name}"')
        for lineno, line in enumerate(lines, 1):
            m = _INCLUDE.match(line)
            target = None
            if m:
                for d in dirs:
                    candidate = os.path.join(d, m.group(1))
                    if os.path.isfile(candidate):
                        target = os.path.abspath(candidate)
                        break
            if target is None:
                out.append("" if line.strip() == "#pragma once" else line)
                continue
            if target not in seen:
                seen.add(target)
                emit(target)
                out.append(f'#line {lineno + 1} "{name}"')
            else:
                out.append("")

    seen.add(path)
    emit(path)
    return "\n".join(out) + "\n"

"""The layer rule of docs/design.md §4, read from the import graph.

reference imports nothing of hw, sim or host; hw imports only reference; sim imports hw and
reference; host may import all of them. Every import counts: module-level and function-local,
relative and absolute ``zipml.*``. (Imports by name at run time, ``importlib.import_module``,
are not seen; only host uses them, for its backend registry.)

Function-local imports hide the layering rather than fix it, so each must say why it is lazy:
a comment ``# lazy: <the optional dependency or the cost>`` on its line or the line above.
Files that still have unannotated ones are listed in ``ALLOWANCE`` with their current count: a
ratchet. A file over its allowance fails, and so does a file under it, so the number can only
go down.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: package folder -> the layers it may import (besides itself); pyproject.toml maps
#: zipml.<name> to the folder <name>/
LAYERS = {
    "reference": set(),
    "hw": {"reference"},
    "sim": {"hw", "reference"},
    "host": {"reference", "hw", "sim", "root"},
}

#: unannotated function-local imports still allowed per file (lower it when you annotate or
#: hoist one; the test says when)
ALLOWANCE: dict[str, int] = {}

_LAZY = re.compile(r"#\s*lazy:\s*\S")


def _module_parts(relpath: str) -> list[str]:
    """``hw/build.py`` -> ["zipml", "hw", "build"]; ``hw/__init__.py`` -> ["zipml", "hw"]."""
    parts = ["zipml"] + list(pathlib.PurePosixPath(relpath).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _layer(parts: list[str]) -> str | None:
    """The project layer of an absolute module path, "root" for the ``zipml`` package itself
    (it re-exports host's estimators), None outside the project."""
    if not parts or parts[0] != "zipml":
        return None
    if len(parts) == 1:
        return "root"
    return parts[1] if parts[1] in LAYERS else "root"


def _targets(node, relpath: str):
    """(layer, module text) of each project module an import statement names."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            layer = _layer(alias.name.split("."))
            if layer:
                yield layer, alias.name
        return
    if node.level:
        package = _module_parts(relpath)
        if not relpath.endswith("__init__.py"):
            package = package[:-1]
        if node.level - 1 >= len(package):
            yield "beyond the top", "." * node.level + (node.module or "")
            return
        base = package[:len(package) - (node.level - 1)]
    else:
        base = []
    if node.module:
        base = base + node.module.split(".")
    if base == ["zipml"]:
        # `from zipml import host` / `from .. import sim`: the names are the subpackages
        for alias in node.names:
            layer = _layer(base + [alias.name])
            yield layer, "zipml." + alias.name
    else:
        layer = _layer(base)
        if layer:
            yield layer, ".".join(base)


def check_source(source: str, relpath: str):
    """Layer violations and unannotated function-local imports of one file.

    Returns
    -------
    violations : list of str
        ``"relpath:line: <layer> imports <module> (<layer> may import ...)"``.
    lazy : list of int
        Lines of function-local imports without a ``# lazy:`` comment.
    """
    own = pathlib.PurePosixPath(relpath).parts[0]
    allowed = LAYERS[own] | {own}
    lines = source.splitlines()
    violations, lazy = [], []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for layer, module in _targets(child, relpath):
                    if layer not in allowed:
                        may = ", ".join(sorted(LAYERS[own] - {"root"})) or "nothing of the project"
                        violations.append(f"{relpath}:{child.lineno}: {own} imports {module} "
                                          f"({own} may import {may})")
                if in_function:
                    # the comment on the statement's own lines, or alone on the line above
                    own_lines = lines[child.lineno - 1:child.end_lineno]
                    above = lines[child.lineno - 2].strip() if child.lineno >= 2 else ""
                    if not (any(_LAZY.search(line) for line in own_lines)
                            or (above.startswith("#") and _LAZY.search(above))):
                        lazy.append(child.lineno)
            visit(child, in_function or isinstance(child, (ast.FunctionDef,
                                                           ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source, filename=relpath), False)
    return violations, lazy


def _files():
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def _scan():
    violations, lazy = [], {}
    for relpath, path in _files():
        v, lz = check_source(path.read_text(encoding="utf-8"), relpath)
        violations += v
        if lz:
            lazy[relpath] = lz
    return violations, lazy


def test_layers_import_only_downward():
    violations, _ = _scan()
    assert not violations, ("imports against the layer rule (docs/design.md §4):\n"
                            + "\n".join(violations))


def test_function_local_imports_say_why_ratchet():
    _, lazy = _scan()
    problems = []
    for relpath in sorted(set(lazy) | set(ALLOWANCE)):
        lines = lazy.get(relpath, [])
        allowed = ALLOWANCE.get(relpath, 0)
        where = ", ".join(f"{relpath}:{n}" for n in lines)
        if len(lines) > allowed:
            problems.append(f"{relpath}: {len(lines)} function-local imports without a "
                            f"'# lazy: <reason>' comment, {allowed} allowed: move them to "
                            f"module level or say which optional dependency or cost keeps "
                            f"them lazy ({where})")
        elif len(lines) < allowed:
            problems.append(f"{relpath}: {len(lines)} unannotated function-local imports, "
                            f"fewer than its allowance {allowed}: lower ALLOWANCE[{relpath!r}] "
                            f"in tests/test_layers.py to {len(lines)}"
                            + (" (delete the entry)" if not lines else ""))
    assert not problems, "\n".join(problems)


# --- the checker itself can fail ---------------------------------------------------------------

_BAD_HW = '''\
import numpy as np
from ..reference.golden import EngineConfig        # allowed: hw -> reference
from ..host.files import write_json                 # not allowed
import zipml.sim.verilator                          # not allowed


def f():
    from .. import host                             # not allowed, and not annotated
    # lazy: an optional dependency, for the test
    import statsmodels
    import scipy  # lazy: costs 0.3 s to import
    from .dot import G
    return np
'''


def test_checker_finds_violations_and_lazy_imports():
    violations, lazy = check_source(_BAD_HW, "hw/example.py")
    assert violations == [
        "hw/example.py:3: hw imports zipml.host.files (hw may import reference)",
        "hw/example.py:4: hw imports zipml.sim.verilator (hw may import reference)",
        "hw/example.py:8: hw imports zipml.host (hw may import reference)",
    ]
    assert lazy == [8, 12]


@pytest.mark.parametrize("relpath, source, bad", [
    ("reference/x.py", "from zipml.hw import dot\n", True),
    ("reference/x.py", "from . import golden\nfrom .golden import F\n", False),
    ("reference/sub/x.py", "from ...hw.dot import G\n", True),
    ("reference/x.py", "import zipml\n", True),
    ("sim/x.py", "from ..hw.soc import System\nfrom ..reference import golden\n", False),
    ("sim/x.py", "from ..host.problem import resolve\n", True),
    ("host/x.py", "from ..sim import engine_rtl\nfrom zipml.hw.boards import BOARDS\n"
                  "from .. import ZipMLRegressor\n", False),
    ("host/x.py", "from .... import nowhere\n", True),
    ("hw/__init__.py", "from . import protocol\nfrom .. import reference\n", False),
    ("hw/__init__.py", "from .. import sim\n", True),
])
def test_checker_layers(relpath, source, bad):
    violations, _ = check_source(source, relpath)
    assert bool(violations) == bad, violations

"""No import cycles inside ``qwen_daemon``: every module's imports, read with :mod:`ast`, form a DAG.

Why a test: a cycle is how a module grows a second job unnoticed (the CLI's helpers imported by
the service backends, settings importing the token writer), and Python hides it until an import
order changes and a name is suddenly undefined. Function-level imports and ``if TYPE_CHECKING:``
imports count too: deferring an import hides a cycle from the interpreter, not from the reader.

Counted as an import of module M: ``import M``, ``from M import name`` and ``from P import M`` when
M is the submodule P.M (relative forms resolved against the importing module's package). The
implicit run of a package's ``__init__`` when one of its submodules is imported is not counted:
that would make every package whose ``__init__`` names a submodule a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import qwen_daemon

ROOT = Path(qwen_daemon.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their own name)."""
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _package_of(name: str, path: Path) -> str:
    """The package a relative import in module ``name`` is resolved against."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _known(name: str, known: set[str]) -> str | None:
    """``name`` or its nearest enclosing module that exists in the package; None if outside it."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports, anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from P import M`` imports the submodule P.M when there is one, else a name of P
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
        else:
            continue
        found.update(t for t in (_known(t, known) for t in targets) if t is not None)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the module count (~100)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def _short(name: str) -> str:
    return name.removeprefix("qwen_daemon.")


def test_the_package_has_no_import_cycle() -> None:
    found = cycles(graph())
    assert not found, "import cycles in qwen_daemon:\n" + "\n".join(
        "  " + ", ".join(_short(m) for m in cycle) for cycle in found
    )


# --- the scanner itself: each rule it applies, on a package made for the purpose ---------------


def _scan(tmp_path: Path, files: dict[str, str]) -> list[list[str]]:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    root = tmp_path / "pkg"
    mods = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
        for p in sorted(root.rglob("*.py"))
    }
    known = set(mods)
    return cycles({name: imports_of(name, path, known) for name, path in mods.items()})


def test_a_function_level_import_closes_a_cycle(tmp_path: Path) -> None:
    found = _scan(
        tmp_path,
        {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "def f():\n    from pkg import a\n"},
    )
    assert found == [["pkg.a", "pkg.b"]]


def test_a_type_checking_import_closes_a_cycle(tmp_path: Path) -> None:
    found = _scan(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import X\n",
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import Y\n",
        },
    )
    assert found == [["pkg.a", "pkg.b"]]


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    found = _scan(
        tmp_path,
        {
            "__init__.py": "",
            "sub/__init__.py": "from . import c\n",
            "sub/c.py": "from .. import a\n",
            "a.py": "from .sub import d\n",
            "sub/d.py": "from ..sub import c\nfrom . import e\n",
            "sub/e.py": "from os import path\n",
        },
    )
    # a -> sub.d -> sub.c -> a; sub.e is a leaf; sub/__init__ -> sub.c, but nothing imports sub
    assert found == [["pkg.a", "pkg.sub.c", "pkg.sub.d"]]


def test_a_name_from_a_package_is_an_import_of_the_package(tmp_path: Path) -> None:
    found = _scan(
        tmp_path,
        {
            "__init__.py": "",
            "p/__init__.py": "from pkg.p.m import N\n",
            "p/m.py": "from pkg.p import other\n",
        },
    )
    assert found == [["pkg.p", "pkg.p.m"]]


def test_no_cycle_no_report(tmp_path: Path) -> None:
    found = _scan(
        tmp_path,
        {"__init__.py": "", "a.py": "import pkg.b\nimport os\n", "b.py": "from . import c\n", "c.py": ""},
    )
    assert found == []

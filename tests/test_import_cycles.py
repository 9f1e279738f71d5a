"""No import cycles inside ``qwen_daemon``: every module's imports, read with :mod:`ast`, form a DAG.

Why a test: a cycle is how a module grows a second job unnoticed (the CLI's helpers imported by
the service backends, settings importing the token writer), and Python hides it until an import
order changes and a name is suddenly undefined. Function-level imports and ``if TYPE_CHECKING:``
imports count too: deferring an import hides a cycle from the interpreter, not from the reader.
What counts as an import is :mod:`tests.support.imports`'s rule.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.imports import cycles, graph, imports_of


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

"""The seams the module names promise: only ``cli/`` prints and only it is the CLI; ``service/``
holds backends that report through their caller; ``config`` parses settings and never writes."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.imports import ROOT, graph


def _prints(path: Path) -> list[str]:
    """Where the module calls ``print`` or touches ``sys.stdout``/``sys.stderr``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append(f"{path.name}:{node.lineno} print")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("stdout", "stderr")
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        ):
            found.append(f"{path.name}:{node.lineno} sys.{node.attr}")
    return found


def test_the_service_backends_print_nothing() -> None:
    found = [hit for path in sorted((ROOT / "service").glob("*.py")) for hit in _prints(path)]
    assert not found, found


def _in_cli(name: str) -> bool:
    return name == "qwen_daemon.cli" or name.startswith("qwen_daemon.cli.")


def test_only_the_cli_and_the_entry_point_import_the_cli() -> None:
    """The service backends once imported the CLI's private helpers; nothing but the CLI may."""
    edges = graph()
    outside = sorted(
        f"{name} -> {target}"
        for name, targets in edges.items()
        if not _in_cli(name) and name != "qwen_daemon.__main__"
        for target in targets
        if _in_cli(target)
    )
    assert not outside, outside


def test_config_reads_and_never_writes() -> None:
    """Settings and paths only: it reads ``config.toml`` (``read_private``) and parses ``[[notify]]``."""
    assert graph()["qwen_daemon.config"] <= {
        "qwen_daemon.errors",
        "qwen_daemon.private_files",
        "qwen_daemon.push.channels",
    }
    tree = ast.parse((ROOT / "config.py").read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert names & {"write_private_file", "create_private_file", "ensure_private_dir", "secrets"} == set()

"""No test or benchmark reaches into another object's private attributes where a public way exists.

Tests that read ``host._sinks`` or set ``daemon._port`` pin the implementation instead of the
contract: a refactor that keeps every behaviour breaks them. This scan (``ast``, no imports of the
scanned files) fails on any ``x._name`` whose ``x`` is not ``self``/``cls`` and whose ``_name`` is
not a dunder, and on ``getattr``/``setattr``/``hasattr``/``delattr`` (``monkeypatch`` and
``mock.patch.object`` too) with such a name as a string, or ``mock.patch``/``monkeypatch.setattr``
with a dotted path through one. A class using its own private names inside its own body
(``other._key`` in ``__eq__``, ``conn._recv()`` in a classmethod) is fine: that is still inside it.

What has no public way at all is listed in ``ALLOWED`` below, each with its reason. A new entry
needs the same: first look for (or add, if it is a genuine part of the product's contract) a
public accessor, a constructor argument, or a public seam such as ``sqlite3.connect``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("tests", "bench")

#: (file relative to the project root, the expression as ``ast.unparse`` writes it) -> why there
#: is no public way. Keyed by expression rather than line so that unrelated edits keep it valid.
ALLOWED: dict[tuple[str, str], str] = {
    # os._exit is the documented stdlib way to exit without cleanup (a crash, as a real agent's);
    # the underscore is a naming convention there, not privacy
    ("tests/fake_agent.py", "os._exit"): "stdlib: documented public function",
    # the ACP SDK's AgentSideConnection offers only typed requests (whose response models drop
    # fields such as Qwen's top-level "answers") and "_"-prefixed ext ones; Qwen's vendor
    # methods need the JSON-RPC connection underneath, which the SDK does not expose
    ("tests/fake_agent.py", "cast(Any, self.client)._conn"): "ACP SDK: no public raw request",
    # the SDK routes only "_"-prefixed methods to ext_*; Qwen Code's un-prefixed vendor methods
    # need the connection's handler wrapped (the probe asserts it exists, so an SDK upgrade
    # that moves it fails loudly)
    ("tests/test_qwen_probe.py", "conn._conn"): "ACP SDK: no public hook for vendor methods",
    ("tests/test_qwen_probe.py", "inner._handler"): "ACP SDK: no public hook for vendor methods",
    # the product overrides the SDK's Connection._process_message (inline update delivery); this
    # contract test pins that private method's name and signature, and calls the override
    ("tests/test_acp_sdk_contract.py", "Connection._process_message"): "the SDK method the product overrides",
    ("tests/test_acp_sdk_contract.py", "wire.conn._process_message"): "the SDK method the product overrides",
    # argparse has no public way to list a parser's subcommands
    ("tests/test_cli.py", "parser._actions"): "argparse: no public list of subcommands",
    ("tests/test_cli.py", "argparse._SubParsersAction"): "argparse: no public list of subcommands",
}

#: calls naming an attribute as a string: ``f(obj, "_name")`` (``object`` is ``mock.patch.object``)
ATTR_FUNCTIONS = {"getattr", "setattr", "hasattr", "delattr", "object"}
#: calls naming one by a dotted path: ``monkeypatch.setattr("pkg.mod._name", v)``, ``mock.patch(...)``
PATH_FUNCTIONS = {"setattr", "delattr", "patch"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_names(cls: ast.ClassDef) -> set[str]:
    """The private names a class defines: its methods and class attributes, and ``self._x``
    assigned anywhere in its body."""
    names: set[str] = set()
    for stmt in cls.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names.update(t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name))
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {name for name in names if is_private(name)}


def private_reads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, expression) of each reach into another object's private name."""

    def visit(node: ast.AST, allowed: frozenset[str]) -> Iterator[tuple[int, str]]:
        if isinstance(node, ast.ClassDef):
            allowed = allowed | own_names(node)
        if (
            isinstance(node, ast.Attribute)
            and is_private(node.attr)
            and node.attr not in allowed
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            yield node.lineno, ast.unparse(node)
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            strings = [
                a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else "" for a in node.args
            ]
            by_name = name in ATTR_FUNCTIONS and len(strings) >= 2 and is_private(strings[1])
            by_path = name in PATH_FUNCTIONS and any(is_private(part) for part in strings[0].split(".")[1:])
            if (by_name and strings[1] not in allowed) or by_path:
                yield node.lineno, ast.unparse(node)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, allowed)

    yield from visit(tree, frozenset())


def scan() -> tuple[list[str], set[tuple[str, str]]]:
    """Each offending ``file:line: expression``, and the allow-list entries that were used."""
    found: list[str] = []
    used: set[tuple[str, str]] = set()
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for line, expr in private_reads(ast.parse(path.read_text(encoding="utf-8"), rel)):
                if (rel, expr) in ALLOWED:
                    used.add((rel, expr))
                else:
                    found.append(f"{rel}:{line}: {expr}")
    return found, used


def test_no_test_or_benchmark_reads_private_attributes() -> None:
    found, _ = scan()
    listed = "\n".join(found)
    assert not found, f"private attributes read from outside their class (find a public way):\n{listed}"


def test_every_allow_list_entry_is_still_needed() -> None:
    """An entry whose read is gone is removed, so the list stays the list of what is left."""
    _, used = scan()
    assert set(ALLOWED) - used == set()


def test_the_scan_catches_private_reads_and_spares_what_it_should() -> None:
    source = """
import os
host._sinks
daemon._port = 1
getattr(host, "_spare")
monkeypatch.setattr(Store, "_connect", traced)
mock.patch.object(Store, "_connect")
monkeypatch.setattr("qwen_daemon.sessions.store.Store._connect", traced)
mock.patch("qwen_daemon.runtime._helper")
monkeypatch.setattr("qwen_daemon.runtime.helper", traced)
mock.patch("qwen_daemon.runtime.Daemon.__init__")
self._fine
cls._fine
obj.__dict__
obj.public
class Conn:
    def __init__(self):
        self._buffer = b""
    def _recv(self):
        return self._buffer
    @classmethod
    def open(cls):
        conn = cls()
        conn._recv()
        return conn._buffer
other._recv
"""
    assert [expr for _, expr in private_reads(ast.parse(source))] == [
        "host._sinks",
        "daemon._port",
        "getattr(host, '_spare')",
        "monkeypatch.setattr(Store, '_connect', traced)",
        "mock.patch.object(Store, '_connect')",
        "monkeypatch.setattr('qwen_daemon.sessions.store.Store._connect', traced)",
        "mock.patch('qwen_daemon.runtime._helper')",
        "other._recv",
    ]

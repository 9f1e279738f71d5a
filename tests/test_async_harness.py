"""The tests have one async harness: pytest-asyncio (``async def`` tests and fixtures, a fresh loop
per test), plus :class:`tests.support.loop_thread.LoopThread` for a server that blocking code
drives from the test's thread (Playwright's sync API, CLIs, urllib).

Why a test: hand-made loop runners crept back one test module at a time before (six kinds, 60-odd
call sites); each behaved a little differently at shutdown. This reads every module under tests/
and fails on a loop started anywhere else, except in a program's own ``main`` (the fake agent, the
attack client and the shape recorder run as processes of their own).
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: starting or driving an event loop by hand
LOOP_RUNNERS = {"run", "run_until_complete", "new_event_loop", "run_sync", "run_forever"}
#: the one place a loop is started on purpose
HARNESS = TESTS / "support" / "loop_thread.py"


def loop_runners(source: str) -> list[tuple[int, str]]:
    """``(line, call)`` of every loop started outside a module-level function named ``main``."""
    module = ast.parse(source)
    entry_points = [
        node
        for node in module.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "main"
    ]
    allowed = {id(node) for main in entry_points for node in ast.walk(main)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(module):
        if id(node) in allowed or not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name, owner = node.func.attr, ast.unparse(node.func.value)
        if name in LOOP_RUNNERS and (name != "run" or owner == "asyncio"):
            found.append((node.lineno, ast.unparse(node.func)))
    return sorted(found)


def test_no_test_module_runs_an_event_loop_of_its_own() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}: {call}"
        for path in sorted(TESTS.rglob("*.py"))
        if path != HARNESS
        for line, call in loop_runners(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "make the test async (pytest-asyncio) or use LoopThread:\n" + "\n".join(offenders)


def test_the_check_finds_the_runners_it_forbids() -> None:
    source = (
        "import asyncio\n"
        "def test_a():\n    asyncio.run(go())\n"
        "def helper():\n    loop = asyncio.new_event_loop()\n    loop.run_until_complete(go())\n"
        "def main():\n    asyncio.run(go())\n"
        "def test_b():\n    subprocess.run(['true'])\n"
        "def test_c():\n    def main():\n        asyncio.run(go())\n"
    )
    assert loop_runners(source) == [
        (3, "asyncio.run"),
        (5, "asyncio.new_event_loop"),
        (6, "loop.run_until_complete"),
        (13, "asyncio.run"),
    ]

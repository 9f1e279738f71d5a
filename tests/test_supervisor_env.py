"""The supervisor's variables are named once (:mod:`qwen_daemon.supervisor_env`) and an agent gets
none of them: a list re-spelled elsewhere is how the three copies drifted apart before."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import qwen_daemon
from qwen_daemon.agents.host import AgentHost
from qwen_daemon.supervisor_env import (
    LISTEN_VARIABLES,
    NOTIFY_VARIABLES,
    SUPERVISOR_VARIABLES,
    without_supervisor,
)
from tests.support.daemon import FAKE_AGENT

PACKAGE = Path(qwen_daemon.__file__).resolve().parent
#: what systemd gives a service about itself; an agent inheriting any of these misbehaves
SYSTEMD_SAYS = {
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
}


def test_the_one_list_holds_both_slices_and_every_variable_systemd_sets_about_the_daemon() -> None:
    assert len(set(SUPERVISOR_VARIABLES)) == len(SUPERVISOR_VARIABLES)
    assert set(NOTIFY_VARIABLES) | set(LISTEN_VARIABLES) <= set(SUPERVISOR_VARIABLES)
    assert set(SUPERVISOR_VARIABLES) >= SYSTEMD_SAYS


def test_without_supervisor_drops_each_variable_and_keeps_the_rest() -> None:
    base = {name: "x" for name in SUPERVISOR_VARIABLES} | {"PATH": "/bin", "HOME": "/h"}
    assert without_supervisor(base) == {"PATH": "/bin", "HOME": "/h"}
    assert without_supervisor(base, {"HOME": "/other", "QWEN": "1"}) == {
        "PATH": "/bin",
        "HOME": "/other",
        "QWEN": "1",
    }
    assert base["NOTIFY_SOCKET"] == "x"  # the caller's mapping is not changed


def test_no_other_module_spells_a_list_of_them() -> None:
    """A tuple, list or set literal naming two or more of them outside the one module is a copy."""
    copies = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "supervisor_env.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                names = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if len(names & set(SUPERVISOR_VARIABLES)) >= 2:
                    copies.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not copies, copies


async def test_an_agent_inherits_none_of_them(tmp_path: Path) -> None:
    env_dump = tmp_path / "env.txt"
    wrapper = tmp_path / "agent.sh"
    wrapper.write_text(f'#!/bin/sh\nenv > "{env_dump}"\nexec "{sys.executable}" "{FAKE_AGENT}"\n')
    wrapper.chmod(0o755)
    env = {name: "1" for name in SUPERVISOR_VARIABLES} | {"NOTIFY_SOCKET": "/nonexistent", "KEEP_ME": "1"}
    env["PATH"] = "/usr/bin:/bin"
    host = AgentHost([str(wrapper)], str(tmp_path), tmp_path / "agent.log", env)
    try:
        await host.ensure_started()
    finally:
        await host.stop()
    names = {line.split("=", 1)[0] for line in env_dump.read_text().splitlines()}
    assert "KEEP_ME" in names
    assert not names & set(SUPERVISOR_VARIABLES), names & set(SUPERVISOR_VARIABLES)

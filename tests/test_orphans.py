"""No agent process outlives the daemon: quick start/stop cycles leave zero strays.

(The ``kill -9`` case, with the watchman, is in ``test_recovery.py``.)
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from qwen_daemon.agents.orphans import OrphanGuard
from qwen_daemon.sessions.manager import SessionManager
from tests.support.daemon import fake_settings

TINY_AGENT = str(Path(__file__).with_name("tiny_agent.py"))
pytestmark = pytest.mark.timeout(120)


def marked_processes(mark: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries ``mark``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(")")[1].split()[0]
        except OSError:
            continue
        if mark.encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def test_hundred_start_stop_cycles_leave_no_stray_process(tmp_path: Path) -> None:
    mark = f"QWEN_DAEMON_TEST_MARK={uuid.uuid4().hex}"
    workspace = tmp_path / "ws"
    workspace.mkdir()
    settings = fake_settings(tmp_path, agent_cmd=(sys.executable, TINY_AGENT), max_sessions=1000)
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}

    async def main() -> None:
        for cycle in range(100):
            manager = SessionManager(settings, env=env)
            manager.load()
            session = await manager.create(str(workspace))
            assert session.host.running
            if cycle % 2:
                await manager.delete(session.id)  # stops the agent now; the others stop at shutdown
            await manager.shutdown()
        assert marked_processes(mark) == []

    asyncio.run(main())
    assert settings.paths.agent_groups_file.read_text() == ""


def test_sweep_kills_groups_a_dead_daemon_left(tmp_path: Path) -> None:
    import subprocess

    leftover = subprocess.Popen(["sleep", "300"], start_new_session=True)
    groups = tmp_path / "agent-groups"
    groups.write_text(f"{leftover.pid}\n")
    guard = OrphanGuard(groups)
    assert guard.sweep() == 1
    assert leftover.wait(timeout=10) == -9
    assert groups.read_text() == ""
    assert guard.sweep() == 0

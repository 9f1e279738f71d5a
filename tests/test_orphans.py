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
from tests.support.probe import marked_processes

TINY_AGENT = str(Path(__file__).with_name("tiny_agent.py"))
pytestmark = pytest.mark.timeout(120)


async def test_hundred_start_stop_cycles_leave_no_stray_process(tmp_path: Path) -> None:
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

    await main()
    assert settings.paths.agent_groups_file.read_text() == ""


def test_sweep_kills_groups_a_dead_daemon_left(tmp_path: Path) -> None:
    """Only with the proof a daemon records (start time and marker); a stranger's id survives it:
    see tests/hardening/test_sweep.py."""
    import subprocess

    from qwen_daemon.agents.orphans import AgentGroup

    dead_daemon = OrphanGuard(tmp_path / "unused")  # only its token: it never started a watchman
    env = {**os.environ, **dead_daemon.agent_env}
    leftover = subprocess.Popen(["sleep", "300"], start_new_session=True, env=env)
    groups = tmp_path / "agent-groups"
    groups.write_text(AgentGroup.of(leftover.pid, dead_daemon.token).line())
    guard = OrphanGuard(groups)
    assert guard.sweep() == 1
    assert leftover.wait(timeout=10) == -9
    assert groups.read_text() == ""
    assert guard.sweep() == 0


async def test_a_retired_host_never_starts_again_and_a_stop_during_its_start_wins(tmp_path: Path) -> None:
    """A host the manager dropped is retired: a caller still waiting to use it gets AgentFailed,
    not a fresh process nobody tracks; a stop that lands while the agent starts stops it."""
    from qwen_daemon.agents.host import AgentHost
    from qwen_daemon.errors import AgentFailed

    mark = f"QWEN_DAEMON_TEST_MARK={uuid.uuid4().hex}"
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}

    async def main() -> None:
        host = AgentHost((sys.executable, TINY_AGENT), str(tmp_path), tmp_path / "agent.log", env=env)
        starting = asyncio.ensure_future(host.ensure_started())
        await asyncio.sleep(0)  # one step: the start takes its lock and awaits the spawn
        assert host.starting
        await host.retire()
        with pytest.raises(AgentFailed):
            await starting
        assert not host.running
        with pytest.raises(AgentFailed, match="stopped for good"):
            await host.ensure_started()
        assert marked_processes(mark) == []

    await main()

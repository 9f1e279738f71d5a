"""The agent pool (qwen_daemon/agents/pool.py) on its own, without a session manager.

The pool knows nothing of sessions: whether an agent may sleep is what its ``idle_since`` callback
says, and memory pressure is what psutil says. Spares and reaping as a whole are tested through
the daemon in tests/test_agents.py and tests/test_races.py.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from qwen_daemon.agents import pool
from qwen_daemon.agents.host import AgentHost
from qwen_daemon.agents.pool import AgentPool
from tests.support.daemon import fake_settings

MIB = 1024 * 1024


def test_memory_is_short_is_what_psutil_says(monkeypatch: pytest.MonkeyPatch) -> None:
    available = [pool.SPARE_MIN_AVAILABLE_MIB * MIB]
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=available[0]))
    assert not pool.memory_is_short()
    available[0] -= 1
    assert pool.memory_is_short()


def test_unreadable_memory_is_never_short(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable() -> None:
        raise OSError("no /proc here")

    monkeypatch.setattr(psutil, "virtual_memory", unreadable)
    assert not pool.memory_is_short()


def test_the_pools_views_cannot_be_edited_from_outside(tmp_path: Path) -> None:
    settings = fake_settings(tmp_path)
    agents = AgentPool(settings)
    host = AgentHost((), str(tmp_path), tmp_path / "unused.log")
    with pytest.raises(TypeError):
        agents.hosts[("fake", str(tmp_path))] = host  # type: ignore[index]
    with pytest.raises(TypeError):
        agents.spares[("fake", str(tmp_path))] = host  # type: ignore[index]
    name = settings.default_agent
    assert agents.host_for(name, str(tmp_path)) is agents.hosts[(name, str(tmp_path.resolve()))]


async def test_an_agent_sleeps_only_once_its_users_have_been_idle_long_enough(tmp_path: Path) -> None:
    settings = fake_settings(tmp_path, agent_idle_timeout=60.0)
    agents = AgentPool(settings)
    loop = asyncio.get_running_loop()
    host = agents.host_for(settings.default_agent, str(tmp_path))
    try:
        await host.ensure_started()
        agents.idle_since = lambda _host: None  # a turn runs, or a client watches
        assert await agents.sleep_idle_agents() == [] and host.running
        agents.idle_since = lambda _host: loop.time() - 30  # idle, but not for long enough
        assert await agents.sleep_idle_agents() == [] and host.running
        agents.idle_since = lambda _host: loop.time() - 61
        assert await agents.sleep_idle_agents() == [host]
        assert not host.running
        assert list(agents.hosts.values()) == [host], "a sleeping agent still serves its sessions"
    finally:
        await agents.shutdown()
    assert agents.hosts == {} and not host.running


def test_no_server_module_reaches_the_process_object() -> None:
    """Handlers get the narrow HandlerContext (server/context.py); none imports the Daemon's
    module, not even for type checking."""
    server = Path(pool.__file__).parents[1] / "server"
    for path in sorted(server.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert not name.startswith("qwen_daemon.runtime"), f"{path.name} imports {name}"

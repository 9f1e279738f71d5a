"""Sessions, agents and the reaper racing each other: each scenario a lifecycle review reproduced.

Agents here run under a marker variable (so a stray one is found) and, where a race needs a slow
stop, ignore stdin EOF and SIGTERM: stopping one then takes the full escalation (about 5 s), the
window in which the other side of the race acts.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.agents import pool
from qwen_daemon.agents.host import AgentHost
from qwen_daemon.errors import ShuttingDown
from qwen_daemon.sessions.store import Store
from tests.support.daemon import FAKE_AGENT, Api, fake_settings, running_daemon
from tests.support.probe import marked_processes, until

pytestmark = pytest.mark.timeout(90)


class Agents:
    """The fake agent's command line for one test: marked, optionally gated or slow to stop."""

    def __init__(self, tmp_path: Path) -> None:
        self.mark = f"QWEN_DAEMON_RACE_{uuid.uuid4().hex[:10]}"
        self.gate = tmp_path / "agent-may-start"

    def command(self, *, gated: bool = False, slow_stop: bool = False) -> tuple[str, ...]:
        env = [f"{self.mark}=1"]
        if gated:
            env.append(f"FAKE_AGENT_INIT_GATE={self.gate}")
        if slow_stop:
            env.append("FAKE_AGENT_IGNORE_SIGTERM=1")
        return ("/usr/bin/env", *env, sys.executable, FAKE_AGENT)

    def running(self) -> list[int]:
        return marked_processes(self.mark)


def workspaces(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    return first, second


async def run(tmp_path: Path, command: tuple[str, ...], body: Any, **overrides: Any) -> None:
    async def main() -> None:
        async with running_daemon(fake_settings(tmp_path, agent_cmd=command, **overrides)) as api:
            await body(api)

    await main()


def being_stopped(host: AgentHost) -> bool:
    """The slow agent saw its stdin close (the first step of a stop) and carries on regardless."""
    return host.log_path.exists() and "stdin closed, ignoring it" in host.log_path.read_text()


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(e["type"], e.get("state") or e.get("stop_reason")) for e in events]


@pytest.mark.parametrize("spares", [0, 1])
async def test_a_session_deleted_while_it_starts_stays_deleted(tmp_path: Path, spares: int) -> None:
    """It came back: its start moved it from closed to idle (201 for a deleted session), and its
    row was written again after the delete, so it was listed after a restart."""
    agents = Agents(tmp_path)
    ws, _ = workspaces(tmp_path)

    async def body(api: Api) -> None:
        manager = api.daemon.manager
        creating = asyncio.ensure_future(api.call("POST", "/api/sessions", {"cwd": str(ws)}))
        await until(lambda: bool(manager.sessions) and bool(agents.running()))
        (sid,) = manager.sessions
        assert (await api.call("DELETE", f"/api/sessions/{sid}")).status == 204
        agents.gate.touch()
        created = await creating
        assert created.status in (409, 502), created.body  # closed meanwhile / its agent stopped
        assert sid not in manager.sessions
        manager.persist.flush()
        assert manager.persist.store.sessions() == []
        for host in [*manager.pool.hosts.values(), *manager.pool.spares.values()]:
            assert host.session_count == 0, "nothing is routed to the deleted session"

    await run(tmp_path, agents.command(gated=True), body, spare_agents=spares)


async def test_a_daemon_stopped_while_a_session_starts_keeps_no_half_made_session(tmp_path: Path) -> None:
    """The client is told to create it again once the daemon is back; it used to find a failed
    one listed besides."""
    agents = Agents(tmp_path)
    ws, _ = workspaces(tmp_path)

    async def body(api: Api) -> None:
        manager = api.daemon.manager
        creating = asyncio.ensure_future(manager.create(str(ws)))
        await until(lambda: bool(manager.sessions) and bool(agents.running()))
        await manager.shutdown()
        with pytest.raises(ShuttingDown):
            await creating
        assert agents.running() == []

    await run(tmp_path, agents.command(gated=True), body)
    store = Store(fake_settings(tmp_path).paths.database)
    try:
        assert store.sessions() == []
    finally:
        store.close()


async def test_a_prompt_while_its_agent_is_put_to_sleep_restarts_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The prompt went to the agent being stopped and failed ("the agent went away"), and the
    failure killed the reaper; now it waits for the stop and starts the agent again."""
    agents = Agents(tmp_path)
    ws, _ = workspaces(tmp_path)

    async def body(api: Api) -> None:
        manager = api.daemon.manager
        sid = (await api.create(ws))["id"]
        session = manager.get(sid)
        old = session.host.pid
        session.last_activity -= 3600
        sleeping = asyncio.ensure_future(manager.pool.sleep_idle_agents())
        await until(lambda: being_stopped(session.host))
        before = len(await api.events(sid))
        prompted = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say hello there"})
        assert prompted.status == 202
        await api.wait_event(sid, lambda e: e["type"] == "turn_ended", timeout=30)
        assert ("turn_ended", "end_turn") in kinds((await api.events(sid))[before:])
        assert await sleeping == [session.host]
        assert session.host.running and session.host.pid != old
        assert agents.running() == [session.host.pid]

    await run(tmp_path, agents.command(slow_stop=True), body, agent_idle_timeout=600.0, spare_agents=0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_the_reaper_judges_each_agent_just_before_letting_it_go(tmp_path: Path) -> None:
    """Decided from a list made before the first (slow) stop, an agent whose turn started
    meanwhile was stopped under it."""
    agents = Agents(tmp_path)
    one, two = workspaces(tmp_path)

    async def body(api: Api) -> None:
        manager = api.daemon.manager
        second, third = [manager.get((await api.create(ws))["id"]) for ws in (two, one)]
        for session in (second, third):
            session.last_activity -= 3600
        assert list(manager.pool.hosts.values()) == [second.host, third.host]
        sleeping = asyncio.ensure_future(manager.pool.sleep_idle_agents())
        await until(lambda: being_stopped(second.host))  # the first agent of the list is going
        await api.call("POST", f"/api/sessions/{third.id}/prompt", {"text": "wait"})
        assert await sleeping == [second.host]
        assert third.host.running and third.state == "running"
        await api.call("POST", f"/api/sessions/{third.id}/cancel")

    await run(tmp_path, agents.command(slow_stop=True), body, agent_idle_timeout=600.0)


async def test_a_spare_taken_while_the_reaper_stops_spares_does_not_kill_the_reaper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory runs short and the reaper stops every spare, slowly; a session takes one meanwhile.
    The reaper died on a KeyError, and the shutdown after it left an agent running."""
    agents = Agents(tmp_path)
    one, two = workspaces(tmp_path)
    short = [False]
    monkeypatch.setattr(pool, "memory_is_short", lambda: short[0])

    async def body(api: Api) -> None:
        manager = api.daemon.manager
        for ws in (one, two):
            assert (await api.call("POST", "/api/agents/qwen/warm", {"cwd": str(ws)})).status == 202
        short[0] = True
        reaping_spares = asyncio.ensure_future(manager.pool.reap_spares())
        await until(lambda: len(manager.pool.spares) == 1)  # the first spare is being stopped
        short[0] = False
        session = await api.create(two)
        await reaping_spares
        assert manager.get(session["id"]).host.running

    await run(tmp_path, agents.command(slow_stop=True), body, spare_agents=2)
    assert agents.running() == []


async def test_a_request_the_stop_cuts_short_is_told_so(tmp_path: Path) -> None:
    """A mode switch waiting for its agent to restart when the daemon stops: 503 shutting_down
    (it was 502 'the agent went away', which reads like a broken agent)."""
    agents = Agents(tmp_path)
    ws, _ = workspaces(tmp_path)
    agents.gate.touch()

    async def body(api: Api) -> None:
        manager = api.daemon.manager
        session = manager.get((await api.create(ws))["id"])
        agents.gate.unlink()  # the next start hangs at initialize
        await manager.pool.stop_host(session.host, retire=False)
        switching = asyncio.ensure_future(
            api.call("POST", f"/api/sessions/{session.id}/mode", {"mode_id": "plan"})
        )
        await until(lambda: len(agents.running()) == 1)  # restarting for the switch
        api.daemon.request_stop()
        switched = await switching
        assert (switched.status, switched.body["error"]["code"]) == (503, "shutting_down"), switched.body
        await api.daemon.wait_stopped()
        assert agents.running() == []

    await run(tmp_path, agents.command(gated=True), body)

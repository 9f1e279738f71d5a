"""Named agents, per-session modes and warm spare agents, with two different fake agents.

``fake`` is the scripted fake agent (it advertises the modes ``default`` and ``plan``); ``tiny``
is the stdlib agent that advertises none. Both are chosen by name, per session, through the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from qwen_daemon.agents import pool
from qwen_daemon.config import ConfigError, Paths, load_settings
from qwen_daemon.errors import ShuttingDown
from tests.support.daemon import FAKE_AGENT, Api, running_daemon
from tests.support.probe import marked_processes, until

pytestmark = pytest.mark.timeout(60)
TINY_AGENT = str(Path(__file__).with_name("tiny_agent.py"))


def write_config(paths: Paths, text: str) -> None:
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(text, encoding="utf-8")


def two_agents(paths: Paths, extra: str = "") -> None:
    write_config(
        paths,
        f'port = 0\ndefault_agent = "fake"\n{extra}\n'
        f'[agents.fake]\ncommand = ["{sys.executable}", "{FAKE_AGENT}"]\n'
        f'[agents.tiny]\ncommand = ["{sys.executable}", "{TINY_AGENT}"]\nenv = {{ TINY = "1" }}\n',
    )


async def serve(paths: Paths, body: Callable[[Api, Path], Awaitable[None]]) -> None:
    workspace = paths.config_dir.parent / "workspace"
    workspace.mkdir(exist_ok=True)

    async def main() -> None:
        async with running_daemon(load_settings(env={})) as api:
            await body(api, workspace)

    await main()


def test_config_names_agents(paths: Paths) -> None:
    two_agents(paths)
    settings = load_settings(env={})
    assert settings.default_agent == "fake"
    assert settings.agent_names() == ["fake", "qwen", "tiny"]
    assert settings.agent_spec("tiny").env == {"TINY": "1"}
    assert settings.agent_spec("qwen").command is None  # the pinned Qwen Code, found at start


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('default_agent = "nope"', "not a configured agent"),
        ("[agents.x]\nenv = {}", "needs a 'command'"),
        ('[agents.x]\ncommand = "a"\nshell = true', "unknown key"),
        ('[agents."bad name"]\ncommand = "a"', "may only contain"),
        ("agents = 3", "must be a table"),
    ],
)
def test_bad_agent_config_is_one_clear_error(paths: Paths, text: str, message: str) -> None:
    write_config(paths, text)
    with pytest.raises(ConfigError, match=message):
        load_settings(env={})


async def test_sessions_choose_their_agent(paths: Paths) -> None:
    two_agents(paths)

    async def body(api: Api, ws: Path) -> None:
        listed = (await api.call("GET", "/api/agents")).body
        assert listed["default_agent"] == "fake"
        assert [a["name"] for a in listed["agents"]] == ["fake", "qwen", "tiny"]
        plain = await api.create(ws)
        tiny = await api.create(ws, agent="tiny")
        assert plain["agent"] == "fake" and tiny["agent"] == "tiny"
        manager = api.daemon.manager
        pids = {manager.get(s["id"]).host.pid for s in (plain, tiny)}
        assert len(pids) == 2, "one agent process per (agent, workspace)"
        reply = await api.call("POST", f"/api/sessions/{tiny['id']}/prompt", {"text": "hi"})
        assert reply.status == 202
        await api.wait_event(tiny["id"], lambda e: e["type"] == "turn_ended")
        unknown = await api.call("POST", "/api/sessions", {"cwd": str(ws), "agent": "nope"})
        assert unknown.status == 400 and "fake, qwen, tiny" in unknown.body["error"]["message"]
        agents = {a["name"]: a for a in (await api.call("GET", "/api/agents")).body["agents"]}
        assert [m["id"] for m in agents["fake"]["modes"]] == ["default", "plan"]
        assert agents["tiny"]["running"] == [os.path.realpath(ws)]

    await serve(paths, body)


async def test_modes_per_session(paths: Paths) -> None:
    two_agents(paths)

    async def body(api: Api, ws: Path) -> None:
        planned = await api.create(ws, mode="plan")
        other = await api.create(ws)
        assert planned["mode"] == "plan" and other["mode"] == "default"
        reply = await api.call("POST", f"/api/sessions/{planned['id']}/mode", {"mode_id": "default"})
        assert reply.status == 200 and reply.body["mode"] == "default"
        assert reply.body["modes"]["current_mode_id"] == "default"
        bad = await api.call("POST", f"/api/sessions/{other['id']}/mode", {"mode_id": "yolo"})
        assert bad.status == 400 and "default, plan" in bad.body["error"]["message"]
        ws_client = await api.ws(other["id"])
        switched = await api.call("POST", f"/api/sessions/{other['id']}/mode", {"mode_id": "plan"})
        assert switched.status == 200 and switched.body["mode"] == "plan"
        await ws_client.until(lambda f: f.get("type") == "mode_changed")  # watchers hear of it
        assert (await api.call("GET", f"/api/sessions/{other['id']}")).body["mode"] == "plan"
        tiny = await api.create(ws, agent="tiny")
        none = await api.call("POST", f"/api/sessions/{tiny['id']}/mode", {"mode_id": "plan"})
        assert none.status == 400 and "offers no modes" in none.body["error"]["message"]
        before = {s["id"] for s in (await api.call("GET", "/api/sessions")).body["sessions"]}
        refused = await api.call("POST", "/api/sessions", {"cwd": str(ws), "agent": "tiny", "mode": "plan"})
        assert refused.status == 400 and "offers no modes" in refused.body["error"]["message"]
        known = await api.call("POST", "/api/sessions", {"cwd": str(ws), "agent": "fake", "mode": "yolo"})
        assert known.status == 400 and "default, plan" in known.body["error"]["message"]
        after = {s["id"] for s in (await api.call("GET", "/api/sessions")).body["sessions"]}
        assert after == before, "a refused mode left a session behind"

    await serve(paths, body)


async def test_a_warm_spare_serves_the_next_session(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    two_agents(paths, "spare_agents = 1")

    async def body(api: Api, ws: Path) -> None:
        manager = api.daemon.manager
        first = await api.create(ws)
        pid = manager.get(first["id"]).host.pid
        assert (await api.call("DELETE", f"/api/sessions/{first['id']}")).status == 204
        assert [h.pid for h in manager.pool.spares.values()] == [pid]
        assert manager.pool.hosts == {}
        second = await api.create(ws)
        assert manager.get(second["id"]).host.pid == pid, "the spare's process serves the new session"
        assert manager.pool.spares == {}
        await api.call("DELETE", f"/api/sessions/{second['id']}")
        (spare,) = manager.pool.spares.values()
        monkeypatch.setattr(pool, "memory_is_short", lambda: True)
        await manager.pool.reap_spares()
        assert manager.pool.spares == {} and not spare.running

    await serve(paths, body)


def slow_agent(paths: Paths) -> Path:
    """Configure the agent ``slow`` (the default, spares on); it answers ``initialize`` only once
    the returned file exists."""
    gate = paths.config_dir.parent / "agent-may-start"
    write_config(
        paths,
        f'port = 0\nspare_agents = 1\ndefault_agent = "slow"\n[agents.slow]\n'
        f'command = ["{sys.executable}", "{FAKE_AGENT}"]\nenv = {{ FAKE_AGENT_INIT_GATE = "{gate}" }}\n',
    )
    return gate


async def test_a_session_made_while_its_spare_starts_waits_for_that_spare(paths: Paths) -> None:
    """A browser warms the workspace it picked and Create is clicked before the agent is up: the
    session takes that starting agent instead of dropping it (a process nobody would stop)."""
    gate = slow_agent(paths)

    async def body(api: Api, ws: Path) -> None:
        manager = api.daemon.manager
        warming = asyncio.ensure_future(manager.pool.warm("slow", str(ws)))
        await until(lambda: bool(manager.pool.spares))
        (spare,) = manager.pool.spares.values()
        creating = asyncio.ensure_future(api.create(ws))
        await until(lambda: not manager.pool.spares)  # the new session has claimed the workspace's agent
        gate.touch()
        session = await creating
        assert manager.get(session["id"]).host is spare
        assert await warming is spare
        assert list(manager.pool.hosts.values()) == [spare] and manager.pool.spares == {}
        assert marked_processes(str(gate)) == [spare.pid]

    await serve(paths, body)


async def test_a_warm_displaced_while_it_starts_answers_nothing_warm(paths: Paths) -> None:
    """With one spare, warming a second workspace before the first agent is up displaces it: the
    first warm answers with no agent (pid null), not an error; the second is warm."""
    gate = slow_agent(paths)

    async def body(api: Api, ws: Path) -> None:
        manager = api.daemon.manager
        other = ws.parent / "other"
        other.mkdir()
        first = asyncio.ensure_future(api.call("POST", "/api/agents/slow/warm", {"cwd": str(ws)}))
        await until(lambda: bool(manager.pool.spares))
        second = asyncio.ensure_future(api.call("POST", "/api/agents/slow/warm", {"cwd": str(other)}))
        displaced = await first
        assert displaced.status == 202 and displaced.body["pid"] is None, displaced.body
        gate.touch()
        warm = await second
        assert warm.status == 202 and warm.body["cwd"] == str(other)
        assert marked_processes(str(gate)) == [warm.body["pid"]]
        listed = (await api.call("GET", "/api/agents")).body
        assert listed["spare_agents"] == 1
        assert [a["spares"] for a in listed["agents"] if a["name"] == "slow"] == [[str(other)]]

    await serve(paths, body)


async def test_stopping_the_daemon_while_a_session_starts_leaves_no_agent(paths: Paths) -> None:
    """The daemon stops while a new session waits for a warming agent: the create is refused as
    ``shutting_down`` and no agent is started after the stop (there used to be one, orphaned)."""
    gate = slow_agent(paths)

    async def body(api: Api, ws: Path) -> None:
        manager = api.daemon.manager
        warming = asyncio.ensure_future(manager.pool.warm("slow", str(ws)))
        await until(lambda: bool(manager.pool.spares))
        creating = asyncio.ensure_future(manager.create(str(ws)))
        await until(lambda: not manager.pool.spares)
        await manager.shutdown()
        with pytest.raises(ShuttingDown):
            await creating
        assert not (await warming).running  # the warm answers "nothing warm", not an error
        assert marked_processes(str(gate)) == []

    await serve(paths, body)


async def test_spares_off_spawn_none(paths: Paths) -> None:
    two_agents(paths, "spare_agents = 0")

    async def body(api: Api, ws: Path) -> None:
        manager = api.daemon.manager
        first = await api.create(ws)
        host = manager.get(first["id"]).host
        await api.call("DELETE", f"/api/sessions/{first['id']}")
        assert manager.pool.spares == {} and not host.running
        warm = await api.call("POST", "/api/agents/fake/warm", {"cwd": str(ws)})
        assert warm.status == 202 and manager.pool.spares == {}

    await serve(paths, body)


async def test_agents_warmed_at_start_for_recent_workspaces(paths: Paths) -> None:
    two_agents(paths, "spare_agents = 1")

    async def first_run(api: Api, ws: Path) -> None:
        await api.create(ws)

    async def second_run(api: Api, ws: Path) -> None:
        manager = api.daemon.manager
        assert manager.pool.warming is not None
        await manager.pool.warming
        key = ("fake", os.path.realpath(ws))
        # the restored session's own agent is what gets warmed: its next prompt starts at once
        host = manager.pool.spares.get(key) or manager.pool.hosts[key]
        assert host.running

    await serve(paths, first_run)
    await serve(paths, second_run)


async def test_no_spare_at_start_when_off(paths: Paths) -> None:
    two_agents(paths, "spare_agents = 0")

    async def first_run(api: Api, ws: Path) -> None:
        await api.create(ws)

    async def second_run(api: Api, ws: Path) -> None:
        manager = api.daemon.manager
        assert manager.pool.warming is None and manager.pool.spares == {}
        assert not any(h.running for h in manager.pool.hosts.values())

    await serve(paths, first_run)
    await serve(paths, second_run)


@pytest.mark.usefixtures("daemon_reaper")
def test_cli_lists_agents_and_creates_sessions_with_agent_and_mode(paths: Paths, tmp_path: Path) -> None:
    two_agents(paths)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qwen_daemon", *args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    assert cli("start").returncode == 0
    try:
        listed = json.loads(cli("agents", "--json").stdout)
        assert [a["name"] for a in listed["agents"]] == ["fake", "qwen", "tiny"]
        made = cli("new", str(tmp_path), "--mode", "plan", "--json")
        assert made.returncode == 0, made.stderr
        session = json.loads(made.stdout)
        assert session["agent"] == "fake" and session["mode"] == "plan"
        switched = cli("mode", session["id"], "default")
        assert switched.returncode == 0 and "mode=default" in switched.stdout
        refused = cli("mode", session["id"], "yolo")
        assert refused.returncode == 1 and "not offered" in refused.stderr
        tiny = cli("new", str(tmp_path), "--agent", "tiny")
        assert tiny.returncode == 0 and "agent=tiny" in tiny.stdout
        assert "fake" in cli("agents").stdout
    finally:
        assert cli("stop").returncode == 0


async def test_a_session_whose_agent_is_gone_at_restart_stays_listed(paths: Paths) -> None:
    """Its named agent uninstalled, the session used to vanish from the list until the agent was
    back; it is listed as failed, naming the agent, and comes back whole with the agent."""
    sid = ""

    async def make(api: Api, ws: Path) -> None:
        nonlocal sid
        sid = (await api.create(ws, agent="tiny"))["id"]

    async def gone(api: Api, ws: Path) -> None:
        listed = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert listed["state"] == "failed" and "'tiny' is not available" in listed["failure"], listed
        refused = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "hi"})
        assert refused.status == 409 and refused.body["error"]["code"] == "session_failed"

    async def back(api: Api, ws: Path) -> None:
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["state"] == "idle"
        before = len(await api.events(sid))
        assert (await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "hello"})).status == 202
        await api.wait_event(sid, lambda e: e["type"] == "turn_ended" and e["seq"] > before)

    two_agents(paths)
    await serve(paths, make)
    text = paths.config_file.read_text()
    paths.config_file.write_text(
        text.replace(f'["{sys.executable}", "{TINY_AGENT}"]', '["/nonexistent/tiny-agent"]')
    )
    await serve(paths, gone)
    paths.config_file.write_text(text)
    await serve(paths, back)


async def test_next_agent_session_is_created_ahead_of_time(paths: Paths) -> None:
    two_agents(paths, "spare_agents = 1")

    async def body(api: Api, ws: Path) -> None:
        manager = api.daemon.manager
        first = await api.create(ws)
        host = manager.get(first["id"]).host
        ready = await host.spare_session_id()
        assert ready is not None
        second = await api.create(ws, mode="plan")
        assert manager.get(second["id"]).agent_session_id == ready
        assert second["mode"] == "plan"

    await serve(paths, body)

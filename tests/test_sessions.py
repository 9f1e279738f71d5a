"""The session state machine and agent host, driven against the scripted fake agent (a real subprocess)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.agents.host import AgentHost
from qwen_daemon.config import Paths, Settings
from qwen_daemon.contract.bodies import Prompt
from qwen_daemon.contract.validate import ContractError, check
from qwen_daemon.errors import (
    AgentFailed,
    BadRequest,
    LimitReached,
    PermissionAlreadyAnswered,
    PermissionNotFound,
    SessionBusy,
    SessionClosed,
    SessionFailed,
    SessionNotFound,
)
from qwen_daemon.sessions.manager import SessionManager
from qwen_daemon.sessions.session import Session
from tests.support.probe import until
from tests.support.sessions import loaded_manager

FAKE_AGENT = str(Path(__file__).with_name("fake_agent.py"))
pytestmark = pytest.mark.timeout(60)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    paths = Paths(tmp_path / "config", tmp_path / "state", tmp_path / "log", tmp_path / "run")
    values: dict[str, Any] = {"agent_cmd": (sys.executable, FAKE_AGENT), "paths": paths, "spare_agents": 0}
    values.update(overrides)
    return Settings(**values)


def types(session: Session) -> list[str]:
    return [e.type for e in session.events.since(0)]


def text_of(session: Session, kind: str = "agent_message_chunk") -> str:
    return "".join(e.data["text"] for e in session.events.since(0) if e.type == kind)


def last(session: Session, kind: str) -> dict[str, Any]:
    return [e.data for e in session.events.since(0) if e.type == kind][-1]


async def run(
    tmp_path: Path,
    body: Callable[[SessionManager, Path], Awaitable[None]],
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> None:
    """Run ``body`` with a loaded manager (a store under ``tmp_path``) whose agent is the fake."""
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)

    async def main() -> None:
        settings = make_settings(tmp_path, **overrides)
        async with loaded_manager(settings, env={**os.environ, **(env or {})}) as manager:
            await body(manager, workspace)

    await main()


async def finish_turn(session: Session) -> None:
    await until(lambda: "turn_ended" in types(session) and session.state == "idle")


async def test_prompt_streams_reply_and_ends_turn(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws), "demo")
        assert session.state == "idle"
        prompt_id = session.prompt("say hello streaming world\nthink pondering\nplan a;b")
        await finish_turn(session)
        assert text_of(session) == "hello streaming world"
        assert text_of(session, "agent_thought_chunk") == "pondering"
        assert [e["content"] for e in last(session, "plan")["entries"]] == ["a", "b"]
        assert last(session, "turn_ended") == {**last(session, "turn_ended"), "prompt_id": prompt_id}
        assert last(session, "turn_ended")["stop_reason"] == "end_turn"
        seqs = [e.seq for e in session.events.since(0)]
        assert seqs == list(range(1, len(seqs) + 1))
        kinds = types(session)
        assert kinds.index("user_message") < kinds.index("turn_started") < kinds.index("agent_message_chunk")
        assert [e.data["state"] for e in session.events.since(0) if e.type == "state"] == [
            "starting",
            "idle",
            "running",
            "idle",
        ]

    await run(tmp_path, body)


async def test_second_prompt_is_refused_and_never_forwarded(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws))
        session.prompt("sleep 300\nsay first done")
        with pytest.raises(SessionBusy):
            session.prompt("say second")
        await finish_turn(session)
        # the fake agent cancels a running turn on a second prompt (like Qwen); it ran to the end
        assert last(session, "turn_ended")["stop_reason"] == "end_turn"
        assert "first done" in text_of(session) and "second" not in text_of(session)

    await run(tmp_path, body)


async def test_permission_allow_reject_and_errors(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws))
        session.prompt("permission Write notes.txt")
        await until(lambda: session.state == "awaiting_permission")
        request = last(session, "permission_request")
        assert [o["option_id"] for o in request["options"]] == ["proceed_always", "proceed_once", "cancel"]
        assert {"option_id", "name", "kind"} <= set(request["options"][0])
        assert request["tool_call"]["title"] == "Write notes.txt"
        assert session.detail()["pending_permissions"][0]["request_id"] == request["request_id"]
        with pytest.raises(BadRequest):
            session.answer_permission(request["request_id"], "not-offered")
        with pytest.raises(PermissionNotFound):
            session.answer_permission("nope", "proceed_once")
        session.answer_permission(request["request_id"], "proceed_once")
        with pytest.raises(PermissionAlreadyAnswered):
            session.answer_permission(request["request_id"], "cancel")
        await finish_turn(session)
        resolved = last(session, "permission_resolved")
        assert resolved == {**resolved, "request_id": request["request_id"], "option_id": "proceed_once"}
        assert last(session, "tool_call_update")["status"] == "completed"
        assert "allowed proceed_once" in text_of(session)

        session.prompt("permission Write other.txt\nsay after")
        await until(lambda: session.state == "awaiting_permission")
        session.answer_permission(last(session, "permission_request")["request_id"], "cancel")
        await until(lambda: types(session).count("turn_ended") == 2 and session.state == "idle")
        assert last(session, "turn_ended")["stop_reason"] == "end_turn"  # as real Qwen Code ends it
        assert last(session, "tool_call_update")["status"] == "failed"
        assert "after" not in text_of(session)

    await run(tmp_path, body)


async def test_cancel_ends_turn_and_clears_pending_permission(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws))
        session.prompt("wait")
        await until(lambda: session.state == "running")
        await session.cancel()
        await finish_turn(session)
        assert last(session, "turn_ended")["stop_reason"] == "cancelled"

        session.prompt("permission Edit x")
        await until(lambda: session.state == "awaiting_permission")
        request_id = last(session, "permission_request")["request_id"]
        await session.cancel()
        assert session.pending == {}
        assert last(session, "permission_resolved") == {
            **last(session, "permission_resolved"),
            "request_id": request_id,
            "option_id": None,
        }
        await until(lambda: types(session).count("turn_ended") == 2 and session.state == "idle")
        with pytest.raises(PermissionAlreadyAnswered):
            session.answer_permission(request_id, "proceed_once")
        await session.cancel()  # nothing running: harmless

    await run(tmp_path, body)


async def test_agent_crash_mid_turn_then_recovers(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws))
        first_pid = session.host.pid
        session.prompt("say before\ncrash")
        await finish_turn(session)
        assert last(session, "turn_ended")["stop_reason"] == "error"
        assert "error" in types(session)
        session.prompt("say alive again")
        await until(lambda: types(session).count("turn_ended") == 2 and session.state == "idle")
        assert "alive again" in text_of(session)
        assert session.host.pid != first_pid

    await run(tmp_path, body)


async def test_agent_crash_restores_the_agent_session_with_load(tmp_path: Path) -> None:
    history = tmp_path / "agent-history"
    history.mkdir()

    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws))
        agent_session = session.agent_session_id
        session.prompt("say remembered")
        await finish_turn(session)
        session.prompt("crash")
        await until(lambda: types(session).count("turn_ended") == 2 and session.state == "idle")
        session.prompt("say back")
        await until(lambda: types(session).count("turn_ended") == 3 and session.state == "idle")
        assert session.agent_session_id == agent_session  # loaded, not replaced
        assert text_of(session).count("remembered") == 1  # the load's replay is not duplicated
        assert "back" in text_of(session)

    await run(tmp_path, body, env={"FAKE_AGENT_HISTORY_DIR": str(history)})


async def test_crash_loop_fails_the_session_instead_of_spinning(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws))
        for turn in range(1, 4):
            session.prompt("crash")
            await until(lambda n=turn: types(session).count("turn_ended") == n and not session.busy)  # type: ignore[misc]
        await until(lambda: session.state == "failed")  # the third exit may be seen just after the turn
        assert "keeps crashing" in (session.failure or "")
        with pytest.raises(SessionFailed):
            session.prompt("say hi")

    await run(tmp_path, body)


async def test_agent_error_reaches_user(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws))
        session.prompt("error the model is on fire")
        await finish_turn(session)
        assert "the model is on fire" in last(session, "error")["message"]
        assert last(session, "turn_ended")["stop_reason"] == "error"

    await run(tmp_path, body)


async def test_authentication_required_fails_session_with_agent_message(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        with pytest.raises(AgentFailed, match="Authentication required") as info:
            await manager.create(str(ws))
        session = manager.get(str(info.value.details["session_id"]))
        assert session.state == "failed"
        assert "Authentication required" in last(session, "error")["message"]
        assert manager.pool.hosts == {}  # its agent was stopped

    await run(tmp_path, body, env={"FAKE_AGENT_AUTH_REQUIRED": "1"})


async def test_agent_that_exits_at_start_or_is_missing(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        with pytest.raises(AgentFailed, match=r"went away|exited"):
            await manager.create(str(ws))

    await run(tmp_path, body, env={"FAKE_AGENT_EXIT_AT_START": "1"})

    async def missing(manager: SessionManager, ws: Path) -> None:
        with pytest.raises(AgentFailed, match="not found"):
            await manager.create(str(ws))

    await run(tmp_path, missing, agent_cmd=("no-such-agent-binary-xyz", "--acp"))


async def test_huge_update_line_is_relayed(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws))
        session.prompt("big 700\nsay still here")
        await finish_turn(session)
        commands = [e for e in session.events.since(0) if e.type == "commands_changed"][-1]
        assert len(commands.json) > 700 * 1024 and commands.data["commands"]
        assert len(session.events.since(0)[-1].json) > 0
        assert "still here" in text_of(session)

    await run(tmp_path, body)


async def test_validation_limits_and_delete(tmp_path: Path) -> None:
    async def body(manager: SessionManager, ws: Path) -> None:
        for bad in (None, 3, "relative/path", str(ws / "missing"), str(ws / "file.txt")):
            (ws / "file.txt").write_text("x")
            with pytest.raises(BadRequest):
                await manager.create(bad)
        with pytest.raises(BadRequest):
            await manager.create(str(ws), title=["x"])
        one = await manager.create(str(ws))
        two = await manager.create(str(ws))
        assert one.host is two.host  # one agent per workspace
        with pytest.raises(LimitReached):
            await manager.create(str(ws))
        with pytest.raises(ContractError):  # a blank prompt is refused with the request body
            check(Prompt, {"text": "   "})
        await manager.delete(one.id)
        with pytest.raises(SessionNotFound):
            manager.get(one.id)
        assert one.state == "closed"
        with pytest.raises(SessionClosed):
            one.prompt("say hi")
        assert two.host.running
        await manager.delete(two.id)
        assert not two.host.running and manager.pool.hosts == {}

    await run(tmp_path, body, max_sessions=2)


async def test_no_timer_closes_a_session_its_agent_sleeps_and_wakes(tmp_path: Path) -> None:
    """Walking away used to close a session for good (idle_timeout); now only its agent sleeps
    (agent_idle_timeout), the session stays idle and open, and the next prompt wakes the agent,
    which restores its own conversation (the same agent session, loaded, no error)."""
    history = tmp_path / "agent-history"
    history.mkdir()

    async def body(manager: SessionManager, ws: Path) -> None:
        loop = asyncio.get_running_loop()
        session = await manager.create(str(ws))
        agent_session, first_pid = session.agent_session_id, session.host.pid
        session.prompt("say before the nap")
        await finish_turn(session)
        await until(lambda: not session.host.running)
        asleep_at = loop.time()
        await until(lambda: loop.time() - asleep_at > 1.0)  # many reaper periods of 0.05 s
        assert session.state == "idle" and manager.get(session.id) is session
        session.prompt("say awake")
        await until(lambda: types(session).count("turn_ended") == 2 and session.state == "idle")
        assert last(session, "turn_ended")["stop_reason"] == "end_turn"
        assert session.host.pid not in (None, first_pid)
        assert session.agent_session_id == agent_session  # restored, not replaced
        assert "error" not in types(session)
        assert text_of(session).count("before the nap") == 1 and "awake" in text_of(session)

    await run(tmp_path, body, env={"FAKE_AGENT_HISTORY_DIR": str(history)}, agent_idle_timeout=0.2)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_stop_escalates_to_sigkill_and_kills_the_group(tmp_path: Path) -> None:
    log_path = tmp_path / "agent.log"
    env = {**os.environ, "FAKE_AGENT_IGNORE_SIGTERM": "1", "FAKE_AGENT_SPAWN_CHILD": "1"}
    host = AgentHost(
        (sys.executable, FAKE_AGENT), str(tmp_path), log_path, env, stop_timeouts=(0.3, 0.3, 2.0)
    )
    try:
        await host.ensure_started()
        pid = host.pid
        assert pid is not None
        await until(lambda: log_path.exists() and "child pid=" in log_path.read_text())
        child = int(log_path.read_text().split("child pid=")[1].split()[0])
        assert os.getpgid(child) == pid  # the agent leads its own group, with its child in it
        loop = asyncio.get_running_loop()
        started = loop.time()
        await host.stop()
        assert loop.time() - started < 5
        assert not pid_alive(pid)
        await until(lambda: not pid_alive(child) or _is_zombie(child))
    finally:
        await host.retire()  # a failed check must not leave the agent behind


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


async def test_agent_environment_has_no_supervisor_variables(tmp_path: Path) -> None:
    env_dump = tmp_path / "env.txt"
    wrapper = tmp_path / "agent.sh"
    wrapper.write_text(f'#!/bin/sh\nenv > "{env_dump}"\nexec "{sys.executable}" "{FAKE_AGENT}"\n')
    wrapper.chmod(0o755)

    async def body(manager: SessionManager, ws: Path) -> None:
        await manager.create(str(ws))
        names = {line.split("=", 1)[0] for line in env_dump.read_text().splitlines()}
        assert not names & {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"}
        assert "KEEP_ME" in names

    supervisor = {
        "NOTIFY_SOCKET": "/nonexistent",
        "WATCHDOG_USEC": "1000",
        "WATCHDOG_PID": "1",
        "LISTEN_FDS": "1",
        "LISTEN_PID": "1",
        "KEEP_ME": "1",
    }
    await run(tmp_path, body, env=supervisor, agent_cmd=(str(wrapper),))


async def test_shutdown_cancels_running_turns_and_stops_agents(tmp_path: Path) -> None:
    pids: list[int] = []

    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws))
        session.prompt("wait")
        await until(lambda: session.state == "running")
        assert session.host.pid is not None
        pids.append(session.host.pid)
        await manager.shutdown()
        # suspended, not closed: the session carries on after the restart
        assert session.state == "idle"
        assert last(session, "turn_ended")["stop_reason"] == "interrupted"

    await run(tmp_path, body)
    assert not pid_alive(pids[0])
    with pytest.raises(ProcessLookupError):
        os.killpg(pids[0], 0)


def test_new_ids_never_begin_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A leading ``-`` makes an id unusable as a CLI argument (argparse reads it as an option)."""
    import secrets

    from qwen_daemon.sessions import ids as session_module

    drawn = iter(["-H5-YtY4OgOp", "-x", "aB-cD_eF"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda nbytes: next(drawn))
    assert session_module.new_id() == "aB-cD_eF"
    monkeypatch.undo()
    assert not any(session_module.new_id(1).startswith("-") for _ in range(2000))


async def test_an_answer_reaches_the_agent_only_once_it_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database cannot be written (a full disk; injected here), the answer waits: the
    agent used to act on it at once, and a crash then left it recorded as expired."""
    import sqlite3

    from qwen_daemon.sessions.store import Store

    real_flush = Store.flush
    disk_full = [False]

    def flush(store: Store) -> int:
        if disk_full[0]:
            raise sqlite3.OperationalError("database or disk is full")
        return real_flush(store)

    monkeypatch.setattr(Store, "flush", flush)
    monkeypatch.setattr("qwen_daemon.sessions.persistence.Persistence.RETRY_SECONDS", 0.05)

    async def main() -> None:
        async with loaded_manager(make_settings(tmp_path), env=dict(os.environ)) as manager:
            ws = tmp_path / "ws"
            ws.mkdir()
            session = await manager.create(str(ws))
            session.prompt("permission Write notes.txt")
            await until(lambda: session.state == "awaiting_permission")
            request_id = last(session, "permission_request")["request_id"]
            pending = session.pending[request_id]
            disk_full[0] = True
            session.answer_permission(request_id, "proceed_once")
            await until(lambda: "database or disk is full" in caplog.text)
            assert not pending.future.done(), "the agent must not act on an unstored answer"
            disk_full[0] = False
            await finish_turn(session)
            assert "allowed proceed_once" in text_of(session)
            assert manager.persist.store.permission_status(session.id, request_id) == "answered"

    await main()


def current_mode(session: Session) -> str | None:
    """The mode in force, as the session's detail tells clients."""
    modes = session.detail()["modes"]
    return modes["current_mode_id"] if modes is not None else None


async def test_mode_changed_from_the_agent_and_from_the_daemon(tmp_path: Path) -> None:
    """A switch the agent makes itself and one the daemon asks for are both ``mode_changed``: the
    session follows either by the event's type, and no ACP update is left for clients to parse."""

    async def body(manager: SessionManager, ws: Path) -> None:
        session = await manager.create(str(ws))
        assert session.mode == "default" and current_mode(session) == "default"
        session.prompt("mode plan")  # the agent switches by itself
        await finish_turn(session)
        assert last(session, "mode_changed") == {**last(session, "mode_changed"), "mode_id": "plan"}
        assert session.mode == "plan" and current_mode(session) == "plan"
        seen = session.events.last_seq
        await session.set_mode("default")  # the daemon asks, for a client
        await until(lambda: len([e for e in session.events.since(seen) if e.type == "mode_changed"]) == 2)
        after = session.events.since(seen)
        assert [e.data["mode_id"] for e in after if e.type == "mode_changed"] == ["default", "default"]
        assert session.mode == "default" and current_mode(session) == "default"
        assert "agent_update" not in types(session)
        assert "sessionUpdate" not in "".join(e.json for e in session.events.since(0))

    await run(tmp_path, body)

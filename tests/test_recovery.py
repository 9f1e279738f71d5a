"""Sessions that survive restarts: graceful stop, ``kill -9`` mid-stream, expired permissions,
agents that sleep and wake, pruning. Real daemon processes and the scripted fake agent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from qwen_daemon.cli import wait_gone
from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from tests.support.daemon import FAKE_AGENT, Api, fake_settings, frames_in, running_daemon
from tests.support.probe import cli, start_daemon

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("daemon_reaper")]


@pytest.fixture
def history_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Let the fake agent keep histories on disk, so ``session/load`` works in a new process."""
    path = tmp_path / "agent-history"
    path.mkdir()
    monkeypatch.setenv("FAKE_AGENT_HISTORY_DIR", str(path))
    return path


def texts(events: list[dict[str, Any]], kind: str = "agent_message_chunk") -> str:
    return "".join(e.get("text", "") for e in events if e["type"] == kind)


async def finish(api: Api, sid: str, after: int) -> dict[str, Any]:
    ended = await api.wait_event(sid, lambda e: e["seq"] > after and e["type"] == "turn_ended")
    await api.wait_state(sid, "idle")
    return ended


async def test_graceful_restart_keeps_everything_and_restores_the_agent_session(
    tmp_path: Path, history_dir: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    settings = fake_settings(tmp_path)

    async def main() -> None:
        async with running_daemon(settings) as api:
            sid = (await api.create(workspace, title="keep me"))["id"]
            await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say first turn\nmode plan"})
            await finish(api, sid, 0)
            before = await api.events(sid)
            first_instance = api.daemon.instance_id
        assert any(history_dir.iterdir()) is not False  # the agent kept its history on disk

        async with running_daemon(settings) as api:
            assert api.daemon.instance_id != first_instance
            [listed] = (await api.call("GET", "/api/sessions")).body["sessions"]
            assert listed["id"] == sid and listed["title"] == "keep me" and listed["state"] == "idle"
            assert listed["last_seq"] == before[-1]["seq"]
            assert await api.events(sid) == before
            last = before[-1]["seq"]
            await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say second turn"})
            ended = await finish(api, sid, last)
            assert ended["stop_reason"] == "end_turn"
            after = await api.events(sid)
            assert [e["seq"] for e in after] == list(range(1, len(after) + 1))
            new = [e for e in after if e["seq"] > last]
            assert texts(new) == "second turn"  # session/load's replay was not added again
            assert texts(after).count("first turn") == 1
            assert not any(e["type"] == "error" for e in new), new
            modes = [e["mode_id"] for e in new if e["type"] == "mode_changed"]
            assert "plan" in modes  # the mode was re-applied after the restore
            hello_ws = await api.ws(sid, after=last)
            hello = await hello_ws.recv()
            assert hello is not None and hello["instance_id"] == api.daemon.instance_id

    await main()


# --- a daemon process we can kill -9 -------------------------------------------------------------


class Proc:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        info = read_discovery(paths)
        assert info is not None
        self.pid, self.base = info.pid, f"http://127.0.0.1:{info.port}"
        self.token = paths.token_file.read_text().strip()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = tornado.httpclient.HTTPRequest(
            self.base + path,
            method=method,
            body=json.dumps(body) if body is not None else (b"" if method == "POST" else None),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        response = await self.http.fetch(request, raise_error=False)
        return response.code, json.loads(response.body) if response.body else None

    async def ws(self, sid: str, after: int) -> tornado.websocket.WebSocketClientConnection:
        request = tornado.httpclient.HTTPRequest(
            f"ws://{self.base[7:]}/api/sessions/{sid}/ws?after={after}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        return await tornado.websocket.websocket_connect(request)

    async def events(self, sid: str, after: int = 0) -> list[dict[str, Any]]:
        status, body = await self.call("GET", f"/api/sessions/{sid}/events?after={after}")
        assert status == 200, body
        return list(body["events"])

    async def wait(self, sid: str, pred: Any, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in await self.events(sid):
                if pred(event):
                    return event
            await asyncio.sleep(0.02)
        raise AssertionError("event never arrived")


def wait_dead(pid: int, timeout: float = 15) -> None:
    assert wait_gone(pid, timeout), f"process {pid} is still alive"


def agent_pids(paths: Paths) -> list[int]:
    pids = []
    for log in paths.agent_log_dir.glob("*.log"):
        for word in log.read_text().split():
            if word.startswith("pid="):
                pids.append(int(word[4:]))
    return pids


@asynccontextmanager
async def daemon_process(paths: Paths) -> AsyncIterator[Proc]:
    start_daemon()
    proc = Proc(paths)
    try:
        yield proc
    finally:
        proc.http.close()


def kill9(proc: Proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    wait_dead(proc.pid)


async def test_kill_9_mid_stream_loses_nothing_a_client_saw(
    tmp_path: Path, paths: Paths, history_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_AGENT_SPAWN_CHILD", "1")
    workspace = tmp_path / "ws"
    workspace.mkdir()

    async def main() -> None:
        async with daemon_process(paths) as first:
            status, created = await first.call("POST", "/api/sessions", {"cwd": str(workspace)})
            assert status == 201, created
            sid = created["id"]
            conn = await first.ws(sid, after=0)
            status, _ = await first.call("POST", f"/api/sessions/{sid}/prompt", {"text": "stream 5000 2"})
            assert status == 202
            seen: list[dict[str, Any]] = []
            while len([f for f in seen if f.get("type") == "agent_message_chunk"]) < 200:
                message = await asyncio.wait_for(conn.read_message(), 20)
                assert message is not None, "the daemon closed the connection"
                seen.extend(frame for frame in frames_in(message) if "seq" in frame)
            kill9(first)
            while await asyncio.wait_for(conn.read_message(), 20) is not None:
                pass  # drain until the dead daemon's connection is seen closed
            conn.close()
        doomed = agent_pids(paths)
        assert len(doomed) == 2  # the agent and the child it spawned
        for pid in doomed:
            wait_dead(pid)  # the watchman killed the agent's group when the daemon died

        async with daemon_process(paths) as second:
            stored = await second.events(sid)
            by_seq = {e["seq"]: e for e in stored}
            assert all(by_seq[f["seq"]] == f for f in seen), "an event a client saw was lost or changed"
            assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
            ended = [e for e in stored if e["type"] == "turn_ended"]
            assert ended[-1]["stop_reason"] == "interrupted"
            assert stored[-1]["type"] == "state" and stored[-1]["state"] == "idle"
            resumed = await second.events(sid, after=seen[-1]["seq"])
            assert resumed == [e for e in stored if e["seq"] > seen[-1]["seq"]]
            status, _ = await second.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say alive again"})
            assert status == 202
            last = stored[-1]["seq"]
            done = await second.wait(sid, lambda e: e["seq"] > last and e["type"] == "turn_ended")
            assert done["stop_reason"] == "end_turn"
            assert "alive again" in texts(await second.events(sid, after=last))
            await second.call("POST", "/api/stop")
            wait_dead(second.pid)

    await main()


async def test_permission_pending_at_a_crash_expires(tmp_path: Path, paths: Paths, history_dir: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()

    async def main() -> None:
        async with daemon_process(paths) as first:
            _, created = await first.call("POST", "/api/sessions", {"cwd": str(workspace)})
            sid = created["id"]
            await first.call("POST", f"/api/sessions/{sid}/prompt", {"text": "permission Write x"})
            request = await first.wait(sid, lambda e: e["type"] == "permission_request")
            kill9(first)
        async with daemon_process(paths) as second:
            status, detail = await second.call("GET", f"/api/sessions/{sid}")
            assert status == 200 and detail["state"] == "idle" and detail["pending_permissions"] == []
            events = await second.events(sid)
            expired = [e for e in events if e["type"] == "permission_resolved"]
            assert expired[-1]["request_id"] == request["request_id"] and expired[-1]["expired"] is True
            status, body = await second.call(
                "POST",
                f"/api/sessions/{sid}/permissions/{request['request_id']}",
                {"option_id": "proceed_once"},
            )
            assert status == 409 and "expired" in body["error"]["message"]
            await second.call("POST", "/api/stop")
            wait_dead(second.pid)

    await main()


async def test_idle_agents_sleep_and_wake_transparently(tmp_path: Path, history_dir: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()

    async def main() -> None:
        async with running_daemon(fake_settings(tmp_path, agent_idle_timeout=0.3)) as api:
            sid = (await api.create(workspace))["id"]
            await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say before sleep"})
            await finish(api, sid, 0)
            host = api.daemon.manager.get(sid).host
            deadline = time.monotonic() + 15
            while host.running:
                assert time.monotonic() < deadline, "the idle agent was never stopped"
                await asyncio.sleep(0.05)
            assert (await api.call("GET", f"/api/sessions/{sid}")).body["state"] == "idle"
            last = (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"]
            await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say after waking"})
            ended = await finish(api, sid, last)
            assert ended["stop_reason"] == "end_turn"
            new = [e for e in await api.events(sid) if e["seq"] > last]
            assert texts(new) == "after waking" and not any(e["type"] == "error" for e in new)

    await main()


async def test_prune_removes_old_closed_sessions_only(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()

    # closed the way the former idle timeout left sessions in older databases
    from qwen_daemon.sessions.store import SessionRecord, Store

    settings = fake_settings(tmp_path)
    store = Store(settings.paths.database)
    closed = "closed-one"
    store.save_session(
        SessionRecord(closed, str(workspace), "t", "qwen", None, None, "closed", None, "c", "u", time.time())
    )
    store.close()

    async def main() -> None:
        async with running_daemon(settings) as api:
            assert (await api.call("GET", f"/api/sessions/{closed}")).body["state"] == "closed"
            kept = (await api.create(workspace))["id"]
            reply = await api.call("POST", "/api/sessions/prune", {})
            assert reply.status == 200 and reply.body == {"pruned": []}  # within the 30-day retention
            assert (await api.call("POST", "/api/sessions/prune", {"older_than_days": -1})).status == 400
            reply = await api.call("POST", "/api/sessions/prune", {"older_than_days": 0})
            assert reply.body == {"pruned": [closed]}
            assert (await api.call("GET", f"/api/sessions/{closed}")).status == 404
            assert (await api.call("GET", f"/api/sessions/{kept}")).status == 200

    await main()


def test_damaged_database_is_moved_aside_and_the_daemon_starts(paths: Paths) -> None:
    paths.database.parent.mkdir(parents=True, exist_ok=True)
    paths.database.write_bytes(b"garbage, not SQLite " * 50)
    start_daemon()
    try:
        [kept] = list(paths.database.parent.glob("sessions.db.corrupt-*"))
        assert kept.read_bytes().startswith(b"garbage")
        log = paths.log_file.read_text()
        assert str(kept) in log and str(paths.database) in log
        assert cli("status").returncode == 0
    finally:
        assert cli("stop").returncode == 0


def test_unusable_database_stops_start_with_the_file_named(paths: Paths) -> None:
    paths.database.mkdir(parents=True)
    res = cli("start", "--port", "0", "--agent-cmd", f"{sys.executable} {FAKE_AGENT}")
    assert res.returncode != 0
    assert str(paths.database) in res.stderr and "Traceback" not in res.stderr
    assert cli("status").returncode == 3


def test_cli_prune_with_the_daemon_stopped_and_running(paths: Paths) -> None:
    from qwen_daemon.sessions.store import SessionRecord, Store

    store = Store(paths.database)
    old = time.time() - 40 * 86400
    store.save_session(SessionRecord("old", "/", "old", "a", None, None, "closed", None, "c", "u", old))
    store.save_session(
        SessionRecord("fresh", "/", "fresh", "a", None, None, "closed", None, "c", "u", time.time())
    )
    store.save_session(SessionRecord("open", "/", "open", "a", None, None, "idle", None, "c", "u", None))
    store.close()
    res = cli("sessions", "--prune")
    assert res.returncode == 0 and "pruned 1 closed session(s): old" in res.stdout
    start_daemon()
    try:
        listed = cli("sessions", "--json")
        assert sorted(s["id"] for s in json.loads(listed.stdout)) == ["fresh", "open"]
        res = cli("sessions", "--prune", "--older-than-days", "0")
        assert res.returncode == 0 and "pruned 1 closed session(s): fresh" in res.stdout
    finally:
        assert cli("stop").returncode == 0

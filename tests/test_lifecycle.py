"""Sessions live until the user deletes or archives them (issue 13): rename and archive, reopen
what failed or was closed, modes kept across restarts, and a graceful stop that says so.

In-process daemons with the scripted fake agent (a real subprocess); a "restart" is a second
daemon on the same isolated home, so everything it shows came from the store.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.config import AgentSpec, Settings
from qwen_daemon.sessions.migrations import MIGRATIONS
from qwen_daemon.sessions.store import Store
from tests.support.daemon import Api, fake_settings, running_daemon

pytestmark = pytest.mark.timeout(120)
TINY_AGENT = str(Path(__file__).with_name("tiny_agent.py"))

Step = Callable[[Api, Path], Awaitable[None]]


@pytest.fixture
def history_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Let the fake agent keep histories on disk, so ``session/load`` works in a new process."""
    path = tmp_path / "agent-history"
    path.mkdir()
    monkeypatch.setenv("FAKE_AGENT_HISTORY_DIR", str(path))
    return path


async def runs(tmp_path: Path, *steps: Step, settings: list[Settings] | None = None) -> None:
    """Each step against its own daemon, one after the other, on the same store (restarts)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)

    async def main() -> None:
        for index, step in enumerate(steps):
            chosen = settings[index] if settings else fake_settings(tmp_path)
            async with running_daemon(chosen) as api:
                await step(api, workspace)

    await main()


async def turn(api: Api, sid: str, text: str) -> dict[str, Any]:
    """Prompt and wait for that turn's end; returns its turn_ended event."""
    before = (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"]
    reply = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": text})
    assert reply.status == 202, reply.body
    ended = await api.wait_event(sid, lambda e: e["seq"] > before and e["type"] == "turn_ended")
    await api.wait_state(sid, "idle")
    return ended


async def listed(api: Api, query: str = "") -> list[str]:
    reply = await api.call("GET", f"/api/sessions{query}")
    assert reply.status == 200, reply.body
    return [s["id"] for s in reply.body["sessions"]]


def texts(events: list[dict[str, Any]]) -> str:
    return "".join(e.get("text", "") for e in events if e["type"] == "agent_message_chunk")


# --- rename and archive -----------------------------------------------------------------------


async def test_patch_renames_and_archives_and_the_list_filters(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        one, two = (await api.create(ws, title="one"))["id"], (await api.create(ws))["id"]
        url = f"/api/sessions/{one}"
        reply = await api.call("PATCH", url, {"title": "  a   new\tname "})
        assert reply.status == 200 and reply.body["title"] == "a new name", reply.body
        assert reply.body["archived"] is False and "pending_permissions" in reply.body  # the detail
        reply = await api.call("PATCH", url, {"archived": True})
        assert reply.status == 200 and reply.body["archived"] is True and reply.body["title"] == "a new name"
        assert await listed(api) == [two]
        assert await listed(api, "?archived=false") == [two]
        assert await listed(api, "?archived=true") == [one]
        summary = (await api.call("GET", "/api/sessions?archived=true")).body["sessions"][0]
        assert summary["archived"] is True and summary["title"] == "a new name"
        reply = await api.call("PATCH", url, {"archived": False, "title": ""})
        assert reply.body["archived"] is False and reply.body["title"] == ws.name  # blank: as at create
        assert await listed(api) == [one, two] and await listed(api, "?archived=true") == []

        refusals: list[tuple[Any, str]] = [
            ({}, "at least one"),
            ({"title": "x", "state": "idle"}, "unknown field"),
            ({"title": 7}, "title must be a string"),
            ({"title": None}, "title must be a string"),
            ({"title": "x" * 201}, "longer than 200"),
            ({"archived": "yes"}, "archived must be true or false"),
            ({"archived": None}, "archived must be true or false"),
            ({"archived": 1}, "archived must be true or false"),
            (["title"], "JSON object"),
        ]
        for payload, message in refusals:
            reply = await api.call("PATCH", url, payload)
            assert reply.status == 400 and reply.body["error"]["code"] == "bad_request", (payload, reply.body)
            assert message in reply.body["error"]["message"], (payload, reply.body)
        detail = (await api.call("GET", url)).body
        assert detail["title"] == ws.name and detail["archived"] is False  # nothing half-applied
        reply = await api.call("PATCH", url, {"archived": True, "title": 5})
        assert reply.status == 400 and (await api.call("GET", url)).body["archived"] is False
        assert (await api.call("PATCH", "/api/sessions/nope", {"title": "x"})).status == 404
        for query in ("?archived=yes", "?archived=1", "?archived=True", "?archived="):
            reply = await api.call("GET", f"/api/sessions{query}")
            assert reply.status == 400 and reply.body["error"]["code"] == "bad_request", query

    await runs(tmp_path, body)


async def test_prompting_an_archived_session_unarchives_it_and_all_of_it_survives_restarts(
    tmp_path: Path,
) -> None:
    sid = ""

    async def archive(api: Api, ws: Path) -> None:
        nonlocal sid
        sid = (await api.create(ws))["id"]
        await turn(api, sid, "say kept")
        reply = await api.call("PATCH", f"/api/sessions/{sid}", {"title": "renamed", "archived": True})
        assert reply.status == 200

    async def still_archived(api: Api, ws: Path) -> None:
        assert await listed(api) == [] and await listed(api, "?archived=true") == [sid]
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["title"] == "renamed" and detail["archived"] is True and detail["state"] == "idle"
        ended = await turn(api, sid, "say back again")
        assert ended["stop_reason"] == "end_turn"
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["archived"] is False
        assert await listed(api) == [sid] and await listed(api, "?archived=true") == []

    async def unarchived(api: Api, ws: Path) -> None:
        assert await listed(api) == [sid]
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["title"] == "renamed" and detail["archived"] is False
        assert "kept" in texts(await api.events(sid)) and "back again" in texts(await api.events(sid))

    await runs(tmp_path, archive, still_archived, unarchived)


def test_an_older_database_gains_archived_and_modes_when_opened(tmp_path: Path) -> None:
    """A database written before schema 2 opens with every session unarchived and no modes."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(f"{MIGRATIONS[0]}\nPRAGMA user_version=1;")
    db.execute(
        "INSERT INTO sessions VALUES ('s1', '/w', 't', 'qwen', 'a-1', 'plan', 'closed', NULL, 'c', 'u', 1.0)"
    )
    db.commit()
    db.close()
    store = Store(path)
    try:
        [record] = store.sessions()
        assert (record.id, record.state, record.mode) == ("s1", "closed", "plan")
        assert record.archived is False and record.modes is None
        record.archived, record.modes = (
            True,
            {"current_mode_id": "plan", "available": [{"id": "plan", "name": "Plan"}]},
        )
        store.save_session(record)
        store.flush()
        [again] = store.sessions()
        assert again.archived is True and again.modes == record.modes
    finally:
        store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


# --- modes ------------------------------------------------------------------------------------


async def test_modes_are_in_the_detail_after_a_restart_before_any_prompt(
    tmp_path: Path, history_dir: Path
) -> None:
    """The UI's mode selector reads ``modes`` from the detail; it was null after a restart until
    the first prompt restarted the agent."""
    sid = ""

    async def make(api: Api, ws: Path) -> None:
        nonlocal sid
        sid = (await api.create(ws, mode="plan"))["id"]
        await turn(api, sid, "say planned")

    async def restarted(api: Api, ws: Path) -> None:
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert api.daemon.manager.get(sid).host.pid is None  # no agent has run in this daemon
        assert detail["mode"] == "plan" and detail["modes"]["current_mode_id"] == "plan", detail
        assert {m["id"] for m in detail["modes"]["available"]} == {"default", "plan"}
        agents = (await api.call("GET", "/api/agents")).body["agents"]
        assert {m["id"] for m in next(a for a in agents if a["name"] == "qwen")["modes"]} == {
            "default",
            "plan",
        }
        # the agent's session/load resets its mode to default; the daemon re-applies plan
        assert (await turn(api, sid, "say after"))["stop_reason"] == "end_turn"
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["mode"] == "plan" and detail["modes"]["current_mode_id"] == "plan", detail
        switched = await api.call("POST", f"/api/sessions/{sid}/mode", {"mode_id": "default"})
        assert switched.status == 200

    async def again(api: Api, ws: Path) -> None:
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["mode"] == "default" and detail["modes"]["current_mode_id"] == "default", detail

    await runs(tmp_path, make, restarted, again)


# --- a graceful stop --------------------------------------------------------------------------


async def test_a_turn_cut_off_by_a_graceful_stop_ends_interrupted(tmp_path: Path) -> None:
    """Not "cancelled": the user did not cancel it, the daemon stopped (as after a crash)."""
    sid = ""

    async def stopped_mid_turn(api: Api, ws: Path) -> None:
        nonlocal sid
        sid = (await api.create(ws))["id"]
        assert (await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say working\nwait"})).status
        await api.wait_event(sid, lambda e: e["type"] == "agent_message_chunk")
        # leaving the block stops the daemon gracefully, the turn still running

    async def restarted(api: Api, ws: Path) -> None:
        events = await api.events(sid)
        [ended] = [e for e in events if e["type"] == "turn_ended"]
        assert ended["stop_reason"] == "interrupted", ended
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["state"] == "idle"
        assert (await turn(api, sid, "say fine"))["stop_reason"] == "end_turn"

    await runs(tmp_path, stopped_mid_turn, restarted)


# --- reopen -----------------------------------------------------------------------------------


async def crash_three_times(api: Api, sid: str) -> dict[str, Any]:
    for _ in range(3):
        ended = await api.call("GET", f"/api/sessions/{sid}")
        if ended.body["state"] == "failed":
            break
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "crash"})
        before = ended.body["last_seq"]

        def ended_after(e: dict[str, Any], b: int = before) -> bool:
            return bool(e["seq"] > b and e["type"] == "turn_ended")

        await api.wait_event(sid, ended_after)
    return await api.wait_state(sid, "failed")


async def test_reopen_after_a_crash_loop_restores_the_conversation_and_survives_restarts(
    tmp_path: Path, history_dir: Path
) -> None:
    """Three fast crashes fail the session (and every one of its workspace) for good, across
    restarts; reopen brings it back, and the next prompt restarts the agent and loads the
    agent's own conversation (the same agent session, no "could not restore")."""
    sid, agent_session = "", ""

    async def crash(api: Api, ws: Path) -> None:
        nonlocal sid, agent_session
        sid = (await api.create(ws))["id"]
        agent_session = api.daemon.manager.get(sid).agent_session_id or ""
        await turn(api, sid, "say remember PAPAYA")
        failed = await crash_three_times(api, sid)
        assert "keeps crashing" in failed["failure"]
        refused = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say hi"})
        assert refused.status == 409 and refused.body["error"]["code"] == "session_failed"

    async def reopen(api: Api, ws: Path) -> None:
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["state"] == "failed" and "keeps crashing" in detail["failure"]  # persisted
        reply = await api.call("POST", f"/api/sessions/{sid}/reopen")
        assert reply.status == 200, reply.body
        assert reply.body["state"] == "idle" and reply.body["failure"] is None, reply.body
        assert not api.daemon.manager.get(sid).host.crash_looping
        seen = (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"]
        again = await api.call("POST", f"/api/sessions/{sid}/reopen")  # open already: unchanged
        assert again.status == 200 and again.body["state"] == "idle"
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"] == seen  # no new event

    async def reopened_for_good(api: Api, ws: Path) -> None:
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["state"] == "idle" and detail["failure"] is None, detail
        before = detail["last_seq"]
        assert (await turn(api, sid, "say awake"))["stop_reason"] == "end_turn"
        new = [e for e in await api.events(sid) if e["seq"] > before]
        assert not any(e["type"] == "error" for e in new), new
        assert texts(new) == "awake"
        assert api.daemon.manager.get(sid).agent_session_id == agent_session  # loaded, not new

    await runs(tmp_path, crash, reopen, reopened_for_good)


async def test_reopen_in_the_same_daemon_after_a_crash_loop(tmp_path: Path, history_dir: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        await turn(api, sid, "say first")
        await crash_three_times(api, sid)
        host = api.daemon.manager.get(sid).host
        assert host.crash_looping
        reply = await api.call("POST", f"/api/sessions/{sid}/reopen")
        assert reply.status == 200 and reply.body["state"] == "idle"
        assert not host.crash_looping and api.daemon.manager.get(sid).host is host
        before = reply.body["last_seq"]
        assert (await turn(api, sid, "say second"))["stop_reason"] == "end_turn"
        new = [e for e in await api.events(sid) if e["seq"] > before]
        assert texts(new) == "second" and not any(e["type"] == "error" for e in new)
        # and a crash after that counts from one again: the session stays open
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "crash"})
        await api.wait_event(sid, lambda e: e["seq"] > before and e.get("stop_reason") == "error")
        assert (await api.wait_state(sid, "idle"))["failure"] is None

    await runs(tmp_path, body)


async def test_reopen_refuses_a_session_whose_agent_is_gone_naming_it(tmp_path: Path) -> None:
    tiny = AgentSpec("tiny", (sys.executable, TINY_AGENT))
    with_tiny = fake_settings(tmp_path, agents={"tiny": tiny})
    without = fake_settings(tmp_path)
    moved = fake_settings(tmp_path, agents={"tiny": AgentSpec("tiny", ("/nonexistent/tiny-agent",))})
    sid = ""

    async def make(api: Api, ws: Path) -> None:
        nonlocal sid
        sid = (await api.create(ws, agent="tiny"))["id"]

    async def removed_from_config(api: Api, ws: Path) -> None:
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["state"] == "failed" and detail["agent"] == "tiny", detail  # not swapped for qwen
        assert "'tiny'" in detail["failure"]
        reply = await api.call("POST", f"/api/sessions/{sid}/reopen")
        assert reply.status == 409 and reply.body["error"]["code"] == "agent_unavailable", reply.body
        assert "'tiny'" in reply.body["error"]["message"] and "config" in reply.body["error"]["message"]
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["state"] == "failed"

    async def not_installed(api: Api, ws: Path) -> None:
        reply = await api.call("POST", f"/api/sessions/{sid}/reopen")
        assert reply.status == 409 and reply.body["error"]["code"] == "agent_unavailable", reply.body
        assert "'tiny'" in reply.body["error"]["message"]

    async def back(api: Api, ws: Path) -> None:
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["state"] == "idle"
        assert (await turn(api, sid, "hello"))["stop_reason"] == "end_turn"

    await runs(
        tmp_path,
        make,
        removed_from_config,
        not_installed,
        back,
        settings=[with_tiny, without, moved, with_tiny],
    )


async def test_a_rename_while_its_agent_is_missing_does_not_store_the_failure(tmp_path: Path) -> None:
    """The failure of a session whose agent left the config is only listed, never stored: a
    rename or archive in the meantime writes the whole record, and once the agent is back the
    session must come back idle (with its new title), not failed for good."""
    tiny = AgentSpec("tiny", (sys.executable, TINY_AGENT))
    with_tiny = fake_settings(tmp_path, agents={"tiny": tiny})
    without = fake_settings(tmp_path)
    sid = ""

    async def make(api: Api, ws: Path) -> None:
        nonlocal sid
        sid = (await api.create(ws, agent="tiny"))["id"]

    async def rename_while_missing(api: Api, ws: Path) -> None:
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["state"] == "failed"
        reply = await api.call("PATCH", f"/api/sessions/{sid}", {"title": "Renamed", "archived": True})
        assert reply.status == 200, reply.body
        assert reply.body["state"] == "failed" and reply.body["title"] == "Renamed", reply.body
        reply = await api.call("PATCH", f"/api/sessions/{sid}", {"archived": False})
        assert reply.status == 200, reply.body

    async def agent_back(api: Api, ws: Path) -> None:
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["state"] == "idle" and detail["failure"] is None, detail
        assert detail["title"] == "Renamed" and detail["archived"] is False, detail
        assert (await turn(api, sid, "hello"))["stop_reason"] == "end_turn"

    await runs(tmp_path, make, rename_while_missing, agent_back, settings=[with_tiny, without, with_tiny])


async def test_reopen_an_old_closed_session(tmp_path: Path, history_dir: Path) -> None:
    """Sessions the former idle timer closed (read-only, prompts refused) can be reopened, and
    stay open across restarts; the next prompt restores the agent's conversation."""
    sid = ""

    async def make(api: Api, ws: Path) -> None:
        nonlocal sid
        sid = (await api.create(ws))["id"]
        await turn(api, sid, "say from before")

    def close_it_the_old_way() -> None:
        db = sqlite3.connect(fake_settings(tmp_path).paths.database)
        db.execute(
            "UPDATE sessions SET state = 'closed', closed_at = ? WHERE id = ?", (time.time() - 60, sid)
        )
        db.commit()
        db.close()

    async def closed(api: Api, ws: Path) -> None:
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["state"] == "closed"
        refused = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say hi"})
        assert refused.status == 409 and refused.body["error"]["code"] == "session_closed"
        reply = await api.call("POST", f"/api/sessions/{sid}/reopen")
        assert reply.status == 200 and reply.body["state"] == "idle", reply.body
        assert (await api.call("POST", "/api/sessions/prune", {"older_than_days": 0})).body == {"pruned": []}

    async def open_for_good(api: Api, ws: Path) -> None:
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["state"] == "idle", detail
        before = detail["last_seq"]
        assert (await turn(api, sid, "say after")).get("stop_reason") == "end_turn"
        new = [e for e in await api.events(sid) if e["seq"] > before]
        assert texts(new) == "after" and not any(e["type"] == "error" for e in new), new

    async def staged() -> None:
        await runs(tmp_path, make)
        close_it_the_old_way()
        await runs(tmp_path, closed, open_for_good)

    await staged()


async def test_reopen_of_an_unknown_session_is_404(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        reply = await api.call("POST", "/api/sessions/nope/reopen")
        assert reply.status == 404 and reply.body["error"]["code"] == "session_not_found"

    await runs(tmp_path, body)


async def test_the_new_answers_match_the_openapi_document(tmp_path: Path) -> None:
    """PATCH, reopen, the archived list and the agent_unavailable error, checked against their
    documented schemas (tests/test_openapi.py checks every route is documented)."""
    import jsonschema

    from qwen_daemon.server.openapi import document

    def check(name: str, value: Any) -> None:
        jsonschema.Draft202012Validator({**document(), "$ref": f"#/components/schemas/{name}"}).validate(
            value
        )

    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        reply = await api.call("PATCH", f"/api/sessions/{sid}", {"title": "t", "archived": True})
        check("SessionDetail", reply.body)
        [summary] = (await api.call("GET", "/api/sessions?archived=true")).body["sessions"]
        check("Session", summary)
        check("SessionDetail", (await api.call("POST", f"/api/sessions/{sid}/reopen")).body)
        check("Error", (await api.call("PATCH", f"/api/sessions/{sid}", {"nope": 1})).body)
        check("Error", (await api.call("GET", "/api/sessions?archived=maybe")).body)
        paths = document()["paths"]
        assert "patch" in paths["/api/sessions/{session_id}"]
        assert "post" in paths["/api/sessions/{session_id}/reopen"]
        assert "archived" in document()["components"]["schemas"]["Session"]["required"]

    await runs(tmp_path, body)

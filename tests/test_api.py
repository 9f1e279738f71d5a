"""The HTTP API on a real server with the scripted fake agent: every status code the API promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.server.openapi import document
from tests.support.daemon import Api, serve

pytestmark = pytest.mark.timeout(60)


def assert_error(reply: Any, status: int, code: str | None = None) -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert set(reply.body) == {"error"}, reply.body
    assert isinstance(reply.body["error"]["message"], str) and reply.body["error"]["message"]
    if code is not None:
        assert reply.body["error"]["code"] == code, reply.body


async def test_session_lifecycle(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        assert (await api.call("GET", "/api/sessions")).body == {"sessions": []}
        reply = await api.call("POST", "/api/sessions", {"cwd": str(ws), "title": "My task"})
        assert reply.status == 201
        session = reply.body
        assert reply.headers["Location"] == f"/api/sessions/{session['id']}"
        assert session["state"] == "idle" and session["title"] == "My task" and session["cwd"] == str(ws)
        assert session["url"] == f"/s/{session['id']}" and session["last_seq"] >= 1
        assert session["pending_permissions"] == []
        listed = (await api.call("GET", "/api/sessions")).body["sessions"]
        assert [s["id"] for s in listed] == [session["id"]]
        assert set(listed[0]) == set(document()["components"]["schemas"]["Session"]["required"])
        got = await api.call("GET", f"/api/sessions/{session['id']}")
        assert got.status == 200 and got.body["id"] == session["id"]

        default_title = await api.create(ws)
        assert default_title["title"] == "workspace"

        deleted = await api.call("DELETE", f"/api/sessions/{session['id']}")
        assert deleted.status == 204 and deleted.body is None
        assert_error(await api.call("GET", f"/api/sessions/{session['id']}"), 404, "session_not_found")
        assert_error(await api.call("DELETE", f"/api/sessions/{session['id']}"), 404, "session_not_found")

    await serve(tmp_path, body)


async def test_create_validation(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        (ws / "file.txt").write_text("x")
        for payload in (
            {},
            {"cwd": 42},
            {"cwd": "relative/dir"},
            {"cwd": str(ws / "missing")},
            {"cwd": str(ws / "file.txt")},
            {"cwd": str(ws), "title": 5},
            {"cwd": str(ws), "colour": "red"},
        ):
            assert_error(await api.call("POST", "/api/sessions", payload), 400, "bad_request")
        for raw in (b"not json", b"[1,2]", b"", b'{"cwd": NaN}', b"\xff\xfe"):
            assert_error(await api.call("POST", "/api/sessions", raw=raw), 400, "bad_request")
        reply = await api.call(
            "POST", "/api/sessions", raw=b'{"cwd": "/"}', headers={"Content-Type": "text/plain"}
        )
        assert_error(reply, 400, "bad_request")
        huge = await api.call("POST", "/api/sessions", {"cwd": str(ws), "title": "x" * 400_000})
        assert 400 <= huge.status < 500
        assert (await api.call("GET", "/api/sessions")).body == {"sessions": []}

    await serve(tmp_path, body)


async def test_session_limit_gives_429(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        await api.create(ws)
        await api.create(ws)
        assert_error(await api.call("POST", "/api/sessions", {"cwd": str(ws)}), 429, "limit_reached")

    await serve(tmp_path, body, max_sessions=2)


async def test_prompt_busy_cancel_and_events(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        base = f"/api/sessions/{sid}"
        reply = await api.call("POST", f"{base}/prompt", {"text": "say hello there\nwait"})
        assert reply.status == 202 and set(reply.body) == {"prompt_id"}
        busy = await api.call("POST", f"{base}/prompt", {"text": "say second"})
        assert_error(busy, 409, "session_busy")
        await api.wait_event(sid, lambda e: e["type"] == "agent_message_chunk" and "there" in e["text"])
        cancel = await api.call("POST", f"{base}/cancel")
        assert cancel.status == 202
        ended = await api.wait_event(sid, lambda e: e["type"] == "turn_ended")
        assert ended["stop_reason"] == "cancelled" and ended["prompt_id"] == reply.body["prompt_id"]
        await api.wait_state(sid, "idle")

        events = await api.events(sid)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert all({"seq", "type", "ts"} <= set(e) for e in events)
        assert not any(e["type"] == "user_message" and e["text"] == "say second" for e in events)
        tail = (await api.call("GET", f"{base}/events?after=3")).body
        assert [e["seq"] for e in tail["events"]] == list(range(4, len(events) + 1))
        assert tail["last_seq"] == len(events)
        assert (await api.call("GET", f"{base}/events?after={len(events)}")).body["events"] == []
        for bad in ("-1", "x", "1.5"):
            assert_error(await api.call("GET", f"{base}/events?after={bad}"), 400, "bad_request")

        for payload in ({}, {"text": ""}, {"text": "  \n"}, {"text": 7}):
            assert_error(await api.call("POST", f"{base}/prompt", payload), 400, "bad_request")
        assert (await api.call("POST", f"{base}/cancel")).status == 202  # idle: harmless
        assert_error(await api.call("POST", "/api/sessions/nope/prompt", {"text": "hi"}), 404)
        assert_error(await api.call("POST", "/api/sessions/nope/cancel"), 404)
        assert_error(await api.call("GET", "/api/sessions/nope/events"), 404)

    await serve(tmp_path, body)


async def test_permission_answers(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        base = f"/api/sessions/{sid}"
        await api.call("POST", f"{base}/prompt", {"text": "permission Write notes.txt"})
        detail = await api.wait_state(sid, "awaiting_permission")
        [pending] = detail["pending_permissions"]
        rid = pending["request_id"]
        assert [o["option_id"] for o in pending["options"]] == ["proceed_always", "proceed_once", "cancel"]
        url = f"{base}/permissions/{rid}"
        assert_error(await api.call("POST", url, {"option_id": "bogus"}), 400, "bad_request")
        assert_error(await api.call("POST", url, {}), 400, "bad_request")
        assert_error(await api.call("POST", url, {"option_id": 3}), 400, "bad_request")
        assert_error(
            await api.call("POST", f"{base}/permissions/unknown", {"option_id": "cancel"}),
            404,
            "permission_not_found",
        )
        ok = await api.call("POST", url, {"option_id": "proceed_once"})
        assert ok.status == 200 and ok.body == {"request_id": rid, "option_id": "proceed_once"}
        again = await api.call("POST", url, {"option_id": "cancel"})
        assert_error(again, 409, "permission_already_answered")
        await api.wait_event(sid, lambda e: e["type"] == "tool_call_update" and e["status"] == "completed")
        await api.wait_state(sid, "idle")

    await serve(tmp_path, body)


async def test_agent_refusal_is_502_with_agent_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_AGENT_AUTH_REQUIRED", "1")

    async def body(api: Api, ws: Path) -> None:
        reply = await api.call("POST", "/api/sessions", {"cwd": str(ws)})
        assert reply.status == 502
        assert reply.body["error"]["code"] == "agent_error"
        assert "Authentication required" in reply.body["error"]["message"]
        sid = reply.body["error"]["session_id"]
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["state"] == "failed" and "Authentication required" in detail["failure"]
        events = await api.events(sid)
        assert any(e["type"] == "error" and "Authentication required" in e["message"] for e in events)
        assert_error(await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "hi"}), 409)
        assert (await api.call("GET", "/health")).status == 200  # the daemon keeps running

    await serve(tmp_path, body)


async def test_auth_and_methods(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        for method, path in (
            ("GET", "/api/sessions"),
            ("POST", "/api/sessions"),
            ("GET", "/api/sessions/x"),
            ("POST", "/api/stop"),
            ("GET", "/api/sessions/x/events"),
        ):
            assert_error(await api.call(method, path, {}, token=None), 401, "unauthorized")
            assert_error(await api.call(method, path, {}, token="wrong" * 9), 401, "unauthorized")
        assert_error(await api.call("PUT", "/api/sessions", {}), 405)
        assert_error(await api.call("GET", "/api/stop"), 405)
        assert_error(await api.call("GET", "/api/sessions/x/prompt"), 405)
        assert_error(await api.call("GET", "/api/nowhere"), 404)
        health = await api.call("GET", "/health", token=None)
        assert health.status == 200
        assert set(health.body) == {"status", "version", "pid", "instance_id", "started_at"}

    await serve(tmp_path, body)

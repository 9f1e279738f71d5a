"""The WebSocket stream: replay from ``after``, live events, commands, several clients, bad frames."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from tests.support.daemon import Api, WsClient, serve

pytestmark = pytest.mark.timeout(60)


def seqs(client: WsClient) -> list[int]:
    return [f["seq"] for f in client.events()]


def is_idle_again(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "turn_ended"


def test_replay_after_then_live_without_gap(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say one two three"})
        await api.wait_event(sid, lambda e: e["type"] == "turn_ended")
        await api.wait_state(sid, "idle")
        stored = await api.events(sid)

        client = await api.ws(sid, after=3)
        hello = await client.recv()
        assert hello is not None and hello["type"] == "hello" and "seq" not in hello
        assert hello["instance_id"] == api.daemon.instance_id and hello["last_seq"] == len(stored)
        assert hello["session"]["id"] == sid
        await client.until(lambda f: f.get("seq") == len(stored))
        assert seqs(client) == list(range(4, len(stored) + 1))
        assert client.events() == stored[3:]

        await client.send({"type": "prompt", "text": "say live words", "id": "p1"})
        ack = await client.until(lambda f: f.get("type") == "ack")
        assert ack["id"] == "p1" and ack["op"] == "prompt" and ack["prompt_id"]
        await client.seen(is_idle_again)
        await client.until(lambda f: f.get("type") == "state" and f.get("state") == "idle")
        assert seqs(client) == list(range(4, seqs(client)[-1] + 1))
        assert "live words" in "".join(f.get("text", "") for f in client.events())
        client.close()

    serve(tmp_path, body)


def test_client_joining_mid_stream_sees_every_event_once(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        first = await api.ws(sid)
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "stream 300 1"})
        await first.until(lambda f: f.get("type") == "agent_message_chunk" and f["text"] == "chunk 20\n")
        second = await api.ws(sid, after=0)  # joins while chunks keep coming
        for client in (first, second):
            await client.seen(is_idle_again, timeout=30)
        total = seqs(first)[-1]
        assert seqs(first) == list(range(1, total + 1))
        assert seqs(second)[:total] == list(range(1, total + 1))
        chunks = [f["text"] for f in second.events() if f["type"] == "agent_message_chunk"]
        assert chunks == [f"chunk {i}\n" for i in range(1, 301)]

    serve(tmp_path, body)


def test_two_clients_first_permission_answer_wins(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        a, b = await api.ws(sid), await api.ws(sid)
        await a.send({"type": "prompt", "text": "permission Write x.txt"})
        request = await b.until(lambda f: f.get("type") == "permission_request")
        await a.until(lambda f: f.get("type") == "permission_request")
        rid = request["request_id"]
        await a.send({"type": "permission", "request_id": rid, "option_id": "proceed_once", "id": 1})
        await a.until(lambda f: f.get("type") == "ack" and f.get("id") == 1)
        await b.send({"type": "permission", "request_id": rid, "option_id": "cancel", "id": 2})
        refused = await b.until(lambda f: f.get("type") == "error" and f.get("id") == 2)
        assert refused["error"]["code"] == "permission_already_answered"
        for client in (a, b):
            resolved = await client.seen(lambda f: f.get("type") == "permission_resolved")
            assert resolved["option_id"] == "proceed_once" and resolved["request_id"] == rid
            await client.seen(is_idle_again)
        final = (await api.wait_state(sid, "idle"))["last_seq"]
        for client in (a, b):
            await client.seen(lambda f: f.get("seq") == final)
        assert a.events() == b.events()

    serve(tmp_path, body)


def test_bad_frames_get_error_frames_and_connection_stays(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        client = await api.ws(sid)
        await client.recv()  # hello
        bad: list[Any] = [
            "not json",
            "[1, 2]",
            {"type": 5},
            {"type": "bogus"},
            {"type": "prompt"},
            {"type": "prompt", "text": ""},
            {"type": "permission", "request_id": "nope", "option_id": "x"},
            {"type": "permission", "option_id": "x"},
            {"type": "ping", "id": {"no": "objects"}},
        ]
        codes = []
        for frame in bad:
            await client.send(frame)
            reply = await client.until(lambda f: f.get("type") in ("error", "ack"))
            assert reply["type"] == "error" and "seq" not in reply, (frame, reply)
            codes.append(reply["error"]["code"])
        assert codes == ["bad_request"] * 6 + ["permission_not_found", "bad_request", "bad_request"]
        await client.send({"type": "ping", "id": 7})
        pong = await client.until(lambda f: f.get("type") == "ack")
        assert pong == {"type": "ack", "op": "pong", "id": 7, "last_seq": pong["last_seq"]}
        await client.send({"type": "cancel"})
        assert (await client.until(lambda f: f.get("type") == "ack"))["op"] == "cancel"

    serve(tmp_path, body)


def test_handshake_refusals(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]

        async def status_of(path: str, headers: dict[str, str]) -> int:
            request = tornado.httpclient.HTTPRequest(
                f"ws://127.0.0.1:{api.daemon.port}{path}", headers=headers
            )
            with pytest.raises(tornado.httpclient.HTTPClientError) as info:
                await tornado.websocket.websocket_connect(request)
            return info.value.code

        auth = {"Authorization": f"Bearer {api.daemon.token}"}
        assert await status_of(f"/api/sessions/{sid}/ws", {}) == 401
        assert await status_of(f"/api/sessions/{sid}/ws", {**auth, "Origin": "http://evil.example"}) == 403
        assert await status_of("/api/sessions/nope/ws", auth) == 404
        assert await status_of(f"/api/sessions/{sid}/ws?after=-4", auth) == 400

        # not a WebSocket handshake at all, or a broken one: JSON errors, as everywhere else
        ws_headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZQ==",
        }
        for headers, status, code in [
            ({}, 400, "bad_request"),
            ({**ws_headers, "Sec-WebSocket-Version": "99"}, 426, "upgrade_required"),
            ({**ws_headers, "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": ""}, 400, "bad_request"),
        ]:
            reply = await api.call("GET", f"/api/sessions/{sid}/ws", headers=headers)
            assert (reply.status, reply.body["error"]["code"]) == (status, code), reply.body
        assert reply.headers.get("Content-Type", "").startswith("application/json")

    serve(tmp_path, body)


def test_deleting_the_session_closes_its_streams(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        client = await api.ws(sid)
        await client.recv()
        assert (await api.call("DELETE", f"/api/sessions/{sid}")).status == 204
        while await client.recv() is not None:
            pass
        assert client.conn.close_code == 4000

    serve(tmp_path, body)


def test_stream_sockets_send_without_nagle_delay(tmp_path: Path) -> None:
    """Small frames go out at once: with Nagle on, a frame written while the previous one waited
    for its delayed ACK sat ~40 ms in the kernel (the first chunks of every turn did)."""

    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        client = await api.ws(sid)
        await client.until(lambda f: f.get("type") == "hello")
        (handler,) = api.daemon.websockets
        assert handler.ws_connection is not None
        sock = handler.ws_connection.stream.socket  # type: ignore[attr-defined]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

    serve(tmp_path, body)


def test_lone_surrogates_are_refused_from_clients_and_relayed_escaped_from_agents(tmp_path: Path) -> None:
    """``"\\ud800"`` is valid JSON but not text UTF-8 can hold: a client sending one gets a 400 (or
    an error frame); an agent's reaches clients and the store as the JSON escape, losing nothing."""

    async def body(api: Api, ws: Path) -> None:
        refused = await api.call("POST", "/api/sessions", {"cwd": str(ws), "title": "\ud800"})
        assert refused.status == 400 and "lone surrogate" in refused.body["error"]["message"]
        assert (await api.call("GET", "/api/sessions")).body["sessions"] == []
        sid = (await api.create(ws))["id"]
        refused = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say \udc00"})
        assert refused.status == 400
        client = await api.ws(sid)
        await client.recv()  # hello
        await client.send({"type": "ping", "id": "\ud800"})
        error = await client.until(lambda f: f.get("type") == "error")
        assert error["error"]["code"] == "bad_request" and "id" not in error

        await client.send({"type": "prompt", "text": 'md "\\ud800 caf\\u00e9"', "id": "p"})
        await client.seen(is_idle_again)
        assert "\ud800 café" in "".join(f.get("text", "") for f in client.events())
        assert "\ud800 café" in "".join(e.get("text", "") for e in await api.events(sid))
        stored = api.daemon.manager.persist.store.events(sid)
        assert any("\\ud800" in payload for *_, payload in stored)
        assert (await api.call("GET", "/api/sessions")).status == 200

    serve(tmp_path, body)

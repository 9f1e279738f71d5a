"""The WebSocket stream: replay from ``after``, live events, several clients, connection frames,
and every other frame (commands included: they are REST requests) refused the same way."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from qwen_daemon.server import stream
from tests.support.daemon import Api, WsClient, frames_in, serve

pytestmark = pytest.mark.timeout(60)


def seqs(client: WsClient) -> list[int]:
    return [f["seq"] for f in client.events()]


def is_idle_again(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "turn_ended"


async def test_replay_after_then_live_without_gap(tmp_path: Path) -> None:
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

        accepted = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say live words"})
        assert accepted.status == 202 and accepted.body["prompt_id"]
        await client.seen(is_idle_again)
        await client.until(lambda f: f.get("type") == "state" and f.get("state") == "idle")
        assert seqs(client) == list(range(4, seqs(client)[-1] + 1))
        assert "live words" in "".join(f.get("text", "") for f in client.events())
        client.close()

    await serve(tmp_path, body)


async def test_client_joining_mid_stream_sees_every_event_once(tmp_path: Path) -> None:
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

    await serve(tmp_path, body)


async def test_two_clients_first_permission_answer_wins(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        a, b = await api.ws(sid), await api.ws(sid)
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "permission Write x.txt"})
        request = await b.until(lambda f: f.get("type") == "permission_request")
        await a.until(lambda f: f.get("type") == "permission_request")
        rid = request["request_id"]
        url = f"/api/sessions/{sid}/permissions/{rid}"
        assert (await api.call("POST", url, {"option_id": "proceed_once"})).status == 200
        refused = await api.call("POST", url, {"option_id": "cancel"})
        assert refused.status == 409 and refused.body["error"]["code"] == "permission_already_answered"
        for client in (a, b):
            resolved = await client.seen(lambda f: f.get("type") == "permission_resolved")
            assert resolved["option_id"] == "proceed_once" and resolved["request_id"] == rid
            await client.seen(is_idle_again)
        final = (await api.wait_state(sid, "idle"))["last_seq"]
        for client in (a, b):
            await client.seen(lambda f: f.get("seq") == final)
        assert a.events() == b.events()

    await serve(tmp_path, body)


async def test_bad_frames_get_error_frames_and_connection_stays(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        client = await api.ws(sid)
        await client.recv()  # hello
        bad: list[Any] = [
            "not json",
            "[1, 2]",
            {"type": 5},
            {"type": "bogus"},
            {"type": "visibility", "visible": "yes"},
            {"type": "ping", "id": {"no": "objects"}},
        ]
        # commands are REST requests only: a command frame is an unknown frame like any other
        commands: list[Any] = [
            {"type": "prompt", "text": "say hi", "id": "c1"},
            {"type": "cancel", "id": "c2"},
            {"type": "permission", "request_id": "nope", "option_id": "x", "id": "c3"},
            {"type": "mode", "mode_id": "plan", "id": "c4"},
        ]
        for frame in [*bad, *commands]:
            await client.send(frame)
            reply = await client.until(lambda f: f.get("type") in ("error", "ack"))
            assert reply["type"] == "error" and "seq" not in reply, (frame, reply)
            assert reply["error"]["code"] == "bad_request", (frame, reply)
            if isinstance(frame, dict) and frame in commands:
                assert reply["id"] == frame["id"]
                assert reply["error"]["message"] == (
                    f"unknown frame type {frame['type']!r}; expected visibility or ping "
                    "(commands are REST requests: see /api/openapi.json)"
                )
        await client.send({"type": "ping", "id": 7})
        pong = await client.until(lambda f: f.get("type") == "ack")
        assert pong == {"type": "ack", "op": "pong", "id": 7, "last_seq": pong["last_seq"]}
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["state"] == "idle" and detail["last_seq"] == pong["last_seq"]  # nothing ran

    await serve(tmp_path, body)


async def test_handshake_refusals(tmp_path: Path) -> None:
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

    await serve(tmp_path, body)


async def test_deleting_the_session_closes_its_streams(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        client = await api.ws(sid)
        await client.recv()
        assert (await api.call("DELETE", f"/api/sessions/{sid}")).status == 204
        while await client.recv() is not None:
            pass
        assert client.conn.close_code == 4000

    await serve(tmp_path, body)


async def test_stream_sockets_send_without_nagle_delay(tmp_path: Path) -> None:
    """Small frames go out at once: with Nagle on, a frame written while the previous one waited
    for its delayed ACK sat ~40 ms in the kernel (the first chunks of every turn did)."""

    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        client = await api.ws(sid)
        await client.until(lambda f: f.get("type") == "hello")
        (handler,) = api.daemon.websockets
        assert handler.ws_connection is not None
        sock = handler.ws_connection.stream.socket  # type: ignore[union-attr]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

    await serve(tmp_path, body)


async def test_lone_surrogates_are_refused_from_clients_and_relayed_escaped_from_agents(
    tmp_path: Path,
) -> None:
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

        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": 'md "\\ud800 caf\\u00e9"'})
        await client.seen(is_idle_again)
        assert "\ud800 café" in "".join(f.get("text", "") for f in client.events())
        assert "\ud800 café" in "".join(e.get("text", "") for e in await api.events(sid))
        stored = api.daemon.manager.persist.store.events(sid)
        assert any("\\ud800" in payload for *_, payload in stored)
        assert (await api.call("GET", "/api/sessions")).status == 200

    await serve(tmp_path, body)


async def test_events_published_in_one_loop_turn_share_one_message_a_line_each(tmp_path: Path) -> None:
    """Everything queued in one loop turn goes out in one ``write_message``: one message, its
    frames joined by newlines; a client splitting it sees each frame once, in order. A newline in
    an event's text is escaped JSON, so it does not split its frame."""

    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        log = api.daemon.manager.get(sid).events
        raw, split = await api.ws(sid, after=log.last_seq), await api.ws(sid, after=log.last_seq)
        hello = await asyncio.wait_for(raw.conn.read_message(), 15)
        assert isinstance(hello, str) and [f["type"] for f in frames_in(hello)] == ["hello"]
        assert (await split.recv() or {}).get("type") == "hello"

        first = log.append("agent_message_chunk", text="one\n")  # committed and published together
        second = log.append("agent_message_chunk", text="two")
        message = await asyncio.wait_for(raw.conn.read_message(), 15)
        assert isinstance(message, str) and message.count("\n") == 1, message
        assert frames_in(message) == [first.data, second.data]

        await split.send({"type": "ping", "id": "after"})
        pong = await split.until(lambda f: f.get("type") == "ack")
        assert pong["id"] == "after" and pong["last_seq"] == second.seq
        assert split.frames[1:] == [first.data, second.data, pong]  # each once, in order

    await serve(tmp_path, body)


async def test_a_large_batch_is_cut_into_messages_and_a_stored_newline_cannot_split_a_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay is many frames in one loop turn: they go out in messages of at most
    ``MAX_MESSAGE_CHARS`` (client libraries cap a message), in order. Text read back from the
    store may hold a raw newline between JSON tokens (a row written by other means): it reaches
    the client as one frame that parses to the same object."""
    monkeypatch.setattr(stream, "MAX_MESSAGE_CHARS", 400)

    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "stream 150 1"})
        await api.wait_state(sid, "idle")
        stored = await api.events(sid)
        assert len(stored) > 120  # the first ones are older than the window: replayed from the store
        with contextlib.closing(sqlite3.connect(api.daemon.settings.paths.database)) as db:
            db.execute(
                "UPDATE events SET payload = ? WHERE session_id = ? AND seq = 2",
                (json.dumps(stored[1], indent=1), sid),
            )
            db.commit()
        client = await api.ws(sid, after=0)
        messages: list[str] = []
        while len(client.frames) < len(stored) + 1:  # the greeting, then the replay
            message = await asyncio.wait_for(client.conn.read_message(), 15)
            assert isinstance(message, str)
            messages.append(message)
            client.frames.extend(frames_in(message))
        assert client.events() == stored
        assert len(messages) > 10 and all(len(m) <= 400 or "\n" not in m for m in messages)

    await serve(tmp_path, body, event_history=100)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked frame a server sent, in order."""
    frames, at = [], 0
    while at + 2 <= len(data):
        size, head = data[at + 1] & 0x7F, 2
        if size == 126:
            size, head = int.from_bytes(data[at + 2 : at + 4], "big"), 4
        elif size == 127:
            size, head = int.from_bytes(data[at + 2 : at + 10], "big"), 10
        frames.append((data[at] & 0x0F, data[at + head : at + head + size]))
        at += head + size
    return frames


async def test_a_client_that_stops_reading_is_closed_as_too_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Past ``MAX_UNFLUSHED_BYTES`` written but not taken by the client, the daemon closes the
    socket with 4008 instead of buffering without bound; the count comes from the write Futures
    of Tornado's public API, so this keeps working whatever Tornado calls its buffer. What did
    arrive before the close is whole: newline-delimited frames, events in seq order without a gap."""
    monkeypatch.setattr(stream, "MAX_UNFLUSHED_BYTES", 1024 * 1024)

    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that barely reads
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", api.daemon.port))
        request = (
            f"GET /api/sessions/{sid}/ws HTTP/1.1\r\nHost: 127.0.0.1:{api.daemon.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\nAuthorization: Bearer {api.daemon.token}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += await loop.sock_recv(sock, 4096)
        assert received.startswith(b"HTTP/1.1 101"), received[:200]
        with caplog.at_level("WARNING", logger="qwen_daemon.server.stream"):
            for _ in range(6):  # ~3 MB a turn, which the socket buffers cannot all take
                await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "big 3000"})
                await api.wait_state(sid, "idle")
                if "client too slow" in caplog.text:
                    break
            assert "client too slow" in caplog.text
        try:
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 15):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        finally:
            sock.close()
        frames = _frames(received.partition(b"\r\n\r\n")[2])
        opcode, payload = frames[-1]
        assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == stream.CLOSE_TOO_SLOW
        texts = [frame for opcode, message in frames if opcode == 0x1 for frame in frames_in(message)]
        assert texts[0]["type"] == "hello"
        got = [frame["seq"] for frame in texts if "seq" in frame]
        assert got and got == list(range(1, len(got) + 1)), got  # from the first (no ?after), none lost

    await serve(tmp_path, body)

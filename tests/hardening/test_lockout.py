"""Finding 1 of issue 14, "Lock-out (medium)": connections without the token must not shut the user out.

The finding: 515 sockets that each send complete headers with ``Content-Length: 100`` and one body
byte, then nothing, filled the 512-connection cap and kept it full, because the HTTP server had no
body timeout and authentication ran only after the whole body had arrived; ``/health``, the API,
the web UI and the CLI were refused for as long as the sockets stayed open.

Here a separate attacker process (``tests/support/attack.py``) keeps 2,000 token-less sockets on a
standalone daemon, each dribbling a request head, a body to a route that needs the token, or a
body to a public route, and reopening at once whatever the daemon closes. During the attack
``GET /health``, an authenticated ``GET /api/sessions`` and the CLI (``status``, whose own health
probe gives up after 2 s, and ``sessions``) must each be answered within 2 s, and a WebSocket
opened before the attack must still work after it.

Why this fails on the old code: the first 512 slow sockets held every slot for good and each later
connection, ours included, was closed as soon as it was accepted (a reset, not an answer).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from tests.support.daemon import Api, frames_in, serve
from tests.support.probe import get_json, start_daemon
from tests.support.rawhttp import raw_exchange

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("daemon_reaper")]

SOCKETS = 2000
#: what the user must get: an answer within this many seconds, whatever the attack does
ANSWER_WITHIN = 2.0
#: probe rounds (each: /health, then an authenticated call), and for at least this long
MIN_ROUNDS = 10
MIN_ATTACK_SECONDS = 10.0


async def start_attack(port: int, seconds: float = 120.0) -> asyncio.subprocess.Process:
    """The attacker process, once every one of its sockets has been opened (or refused)."""
    attacker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.attack", "--port", str(port), "--sockets", str(SOCKETS),
        "--seconds", str(seconds), "--max-opens", "2000000",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert attacker.stdout is not None
    line = await asyncio.wait_for(attacker.stdout.readline(), 60)
    assert line.strip() == b"ready", line
    return attacker


async def stop_attack(attacker: asyncio.subprocess.Process) -> dict[str, Any]:
    """Close its stdin (it stops by itself within a second or two) and read its counters."""
    assert attacker.stdin is not None
    attacker.stdin.close()
    out, _ = await asyncio.wait_for(attacker.communicate(), 30)
    assert attacker.returncode == 0
    counters: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return counters


async def timed(what: str, call: Any) -> Any:
    """Run a blocking probe in a thread; fail naming it unless it answered within ANSWER_WITHIN."""
    began = time.perf_counter()
    try:
        result = await asyncio.to_thread(call)
    except Exception as exc:  # a reset or a timeout is exactly the lock-out
        raise AssertionError(f"{what} was not answered during the attack: {exc!r}") from exc
    elapsed = time.perf_counter() - began
    assert elapsed < ANSWER_WITHIN, f"{what} took {elapsed:.2f} s during the attack"
    return result


async def cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qwen_daemon", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"qwen-daemon {' '.join(args)} failed during the attack: {out!r} {err!r}"
    return out.decode()


async def ack(ws: tornado.websocket.WebSocketClientConnection) -> dict[str, Any]:
    """The next ``ack`` frame (session events may come before it, in its message too), or fail."""
    while True:
        message = await asyncio.wait_for(ws.read_message(), 15)
        assert message is not None, "the WebSocket was closed"
        for frame in frames_in(message):
            if frame["type"] == "ack":
                return dict(frame)


async def test_token_less_slow_connections_cannot_lock_the_user_out(paths: Paths, tmp_path: Path) -> None:
    start_daemon()
    info = read_discovery(paths)
    assert info is not None
    token = paths.token_file.read_text().strip()
    base = info.url.rstrip("/")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    sid = get_json(f"{base}/api/sessions", token=token, body={"cwd": str(workspace)})["id"]

    async def main() -> dict[str, Any]:
        request = tornado.httpclient.HTTPRequest(
            f"{base.replace('http', 'ws', 1)}/api/sessions/{sid}/ws",
            headers={"Authorization": f"Bearer {token}"},
        )
        ws = await tornado.websocket.websocket_connect(request)
        hello = await asyncio.wait_for(ws.read_message(), 15)
        assert hello is not None and frames_in(hello)[0]["type"] == "hello"  # the replay may follow it
        attacker = await start_attack(info.port)
        try:
            began, rounds = time.monotonic(), 0
            while rounds < MIN_ROUNDS or time.monotonic() - began < MIN_ATTACK_SECONDS:
                rounds += 1
                health = await timed("GET /health", lambda: get_json(f"{base}/health", timeout=ANSWER_WITHIN))
                assert health["status"] == "ok"
                listed = await timed(
                    "GET /api/sessions", lambda: get_json(f"{base}/api/sessions", ANSWER_WITHIN, token)
                )
                assert [s["id"] for s in listed["sessions"]] == [sid]
            # `status` gives up on a health probe after 2 s; "sessions": 1 needs the token too
            status = json.loads(await cli("status", "--json"))
            assert status["running"] is True and status["sessions"] == 1, status
            assert sid in await cli("sessions")
            await ws.write_message(json.dumps({"type": "ping", "id": 1}))
            assert (await ack(ws))["op"] == "pong"
        finally:
            counters = await stop_attack(attacker)
        assert ws.close_code is None, "the WebSocket was dropped to make room"
        ws.close()
        while await asyncio.wait_for(ws.read_message(), 15) is not None:
            pass  # until the close handshake is done and the socket released
        return counters

    counters = await main()
    assert counters["opened"] >= SOCKETS, counters  # every slot got in at least once
    log = paths.log_file.read_text()
    assert "connections are open" in log  # the cap was reached: the attack really pressed on it


async def test_a_token_less_body_gets_its_401_without_a_reset(tmp_path: Path) -> None:
    """No token: decided when the head arrives. A client waiting for ``100 Continue`` or a body
    over the cap gets the 401 at once; a body within the cap is read and dropped first, so the 401
    is not lost to a reset (and, while it trickles in, the connection is one closed for room)."""

    async def body(api: Api, ws: Path) -> None:
        head = (
            f"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1:{api.daemon.port}\r\n"
            "Content-Type: application/json\r\n"
        )
        for extra, chunks in (
            (f"Content-Length: {9 * 1024 * 1024}\r\n", None),  # never sent: over the cap
            ("Content-Length: 100\r\nExpect: 100-continue\r\n", None),  # never sent: not asked for
            ("Content-Length: 100\r\n", [b"{" * 100]),
        ):
            status, answer = await raw_exchange(api.daemon.port, head + extra + "\r\n", chunks)
            assert status == 401 and answer["error"]["code"] == "unauthorized", answer

    await serve(tmp_path, body)


async def test_a_full_server_lets_in_only_the_token_the_cookie_or_health(tmp_path: Path) -> None:
    """What a newcomer to a full server must send first to get in (``Daemon.worth_room``)."""
    from qwen_daemon.server.base import COOKIE_PREFIX

    async def body(api: Api, ws: Path) -> None:
        daemon = api.daemon
        _device, secret = daemon.devices.create("a phone")
        cookie = f"{COOKIE_PREFIX}{daemon.port}={secret}"
        host = "Host: 127.0.0.1\r\n"
        admitted = [
            b"GET /health HTTP/1.1\r\n",
            b"HEAD /health HTTP/1.1\r\n",
            f"GET /api/sessions HTTP/1.1\r\n{host}Authorization: Bearer {daemon.token}\r\n".encode(),
            f"GET /?token={daemon.token} HTTP/1.1\r\n".encode(),
            f"GET /s/x HTTP/1.1\r\n{host}Cookie: a=b; {cookie}\r\n\r\n".encode(),
        ]
        refused = [
            b"",
            b"GET /hea",
            b"POST /health HTTP/1.1\r\n",
            b"GET /healthz HTTP/1.1\r\n",
            f"GET /api/sessions HTTP/1.1\r\n{host}Authorization: Bearer {daemon.token[:-1]}\r\n".encode(),
            f"GET /api/sessions HTTP/1.1\r\n{host}Authorization: Bearer {daemon.token}x\r\n".encode(),
            f"GET /api/sessions HTTP/1.1\r\n{host}Cookie: {cookie}0\r\n".encode(),
            f"GET /?token={daemon.token}0 HTTP/1.1\r\n".encode(),
            b"\x16\x03\x01\x02\x00",  # a TLS hello to a plain-HTTP daemon
        ]
        assert all(daemon.worth_room(head) for head in admitted)
        assert not any(daemon.worth_room(head) for head in refused)

    await serve(tmp_path, body)

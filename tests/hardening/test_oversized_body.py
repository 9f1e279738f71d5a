"""Finding 7 of issue 14: "An oversized body is a connection reset, not an answer."

The finding: a request body over the server's 8 MiB cap (``MAX_BODY_SIZE``) had its connection
dropped mid-upload, so a client saw "connection reset" and never the 413 JSON error that smaller
oversized bodies get. Here real clients send 9 MiB to an API route and to a page route and must
read ``413`` with ``{"error": {"code": "payload_too_large", ...}}``; so must a client that asks
``Expect: 100-continue`` first (it never has to send the body) and one whose chunked body crosses
the cap. Nothing reaches the session.

Why this fails on the old code: Tornado refused a ``Content-Length`` over its ``max_body_size``
with a bare ``400`` written while the client was still sending, then closed the socket with the
unread upload in it, which the kernel turns into a reset (a chunked body: the same, once over).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.server.connections import MAX_BODY_SIZE
from tests.support.daemon import Api, serve
from tests.support.rawhttp import raw_exchange

pytestmark = pytest.mark.timeout(120)

NINE_MIB = 9 * 1024 * 1024


def assert_too_large(status: int, body: Any) -> None:
    assert status == 413, body
    assert body["error"]["code"] == "payload_too_large", body
    assert str(MAX_BODY_SIZE) in body["error"]["message"]


def urllib_post(url: str, data: bytes, token: str) -> tuple[int, Any]:
    """http.client's way: send the whole body, only then read the answer."""
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


async def test_a_body_over_the_cap_gets_413_json_on_api_and_page_routes(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        before = (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"]
        huge = b"{" + b" " * (NINE_MIB - 2) + b"}"
        for path in (f"/api/sessions/{sid}/prompt", "/api/sessions", "/", f"/s/{sid}", "/health"):
            reply = await api.call("POST", path, raw=huge)  # Tornado's client: body first, then read
            assert_too_large(reply.status, reply.body)
            status, answer = await asyncio.to_thread(urllib_post, api.base + path, huge, api.daemon.token)
            assert_too_large(status, answer)
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"] == before
        assert (await api.call("GET", "/health")).status == 200  # and the daemon is fine

    await serve(tmp_path, body)


async def test_expect_100_continue_is_answered_413_before_the_body(tmp_path: Path) -> None:
    """curl's way for big uploads: the 413 comes instead of "100 Continue", no byte sent."""

    async def body(api: Api, ws: Path) -> None:
        head = (
            f"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1:{api.daemon.port}\r\n"
            f"Authorization: Bearer {api.daemon.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {NINE_MIB}\r\nExpect: 100-continue\r\n\r\n"
        )
        status, answer = await raw_exchange(api.daemon.port, head)
        assert_too_large(status, answer)

    await serve(tmp_path, body)


async def test_a_chunked_body_crossing_the_cap_gets_413(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        head = (
            f"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1:{api.daemon.port}\r\n"
            f"Authorization: Bearer {api.daemon.token}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        piece = b" " * 65536
        chunks = [b"10000\r\n" + piece + b"\r\n"] * (NINE_MIB // len(piece))
        status, answer = await raw_exchange(api.daemon.port, head, chunks)
        assert_too_large(status, answer)

    await serve(tmp_path, body)

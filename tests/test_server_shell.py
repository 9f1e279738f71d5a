"""The server shell on a real, in-process Daemon: auth, Host/Origin checks, JSON errors, stop."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from tornado.testing import bind_unused_port

from qwen_daemon import errors
from qwen_daemon.config import Paths, load_settings
from qwen_daemon.discovery import read_discovery
from qwen_daemon.runtime import Daemon, StartupError
from qwen_daemon.server.base import BaseHandler, BaseWebSocketHandler, host_allowed
from qwen_daemon.server.errors import ERROR_STATUS, error_reply

Fetch = Callable[..., Awaitable[tornado.httpclient.HTTPResponse]]


class _Boom(Exception):
    pass


class EchoHandler(BaseHandler):
    """Test-only: echoes json_body(), or raises the error named by ?raise=."""

    def get(self) -> None:
        name = self.get_query_argument("raise")
        if name == "unexpected":
            raise _Boom("secret /path/in/traceback")
        cls = next(c for c in vars(errors).values() if isinstance(c, type) and getattr(c, "code", "") == name)
        raise cls(f"message for {name}")

    def post(self) -> None:
        self.write_json({"got": self.json_body()}, status=201)


class EchoSocket(BaseWebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


@asynccontextmanager
async def serve(**flags: Any) -> AsyncIterator[tuple[Daemon, Fetch]]:
    settings = load_settings(flags={"agent_cmd": "python3 -c pass", **flags})
    sock, _port = bind_unused_port()
    daemon = Daemon(settings)
    daemon.app.add_handlers(r".*", [(r"/test/echo", EchoHandler), (r"/test/ws", EchoSocket)])
    await daemon.start([sock])
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)

    async def fetch(path: str, token: str | None = "", **kwargs: Any) -> tornado.httpclient.HTTPResponse:
        headers = dict(kwargs.pop("headers", {}))
        if token == "":
            token = daemon.token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await client.fetch(daemon.url + path.lstrip("/"), headers=headers, raise_error=False, **kwargs)

    try:
        yield daemon, fetch
    finally:
        client.close()
        await daemon.shutdown()


def body(resp: tornado.httpclient.HTTPResponse) -> Any:
    assert resp.headers["Content-Type"].startswith("application/json")
    return json.loads(resp.body)


async def test_health_needs_no_token_and_sets_security_headers(paths: Paths) -> None:
    async def go() -> None:
        async with serve() as (daemon, fetch):
            resp = await fetch("/health", token=None)
            assert resp.code == 200
            doc = body(resp)
            assert doc["status"] == "ok"
            assert doc["pid"] == daemon.pid
            assert doc["instance_id"] == daemon.instance_id == read_discovery(paths).instance_id  # type: ignore[union-attr]
            assert set(doc) == {"status", "version", "pid", "instance_id", "started_at"}
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Referrer-Policy"] == "no-referrer"
            assert resp.headers["Cache-Control"] == "no-store"
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
            assert "Server" not in resp.headers

    await go()


async def test_auth_is_deny_by_default() -> None:
    async def go() -> None:
        async with serve() as (daemon, fetch):
            for token in (None, "wrong", daemon.token + "x", daemon.token[:-1]):
                for path, method, kw in (("/api/stop", "POST", {"body": "{}"}), ("/nope", "GET", {})):
                    resp = await fetch(path, token=token, method=method, **kw)
                    assert resp.code == 401, (path, token)
                    assert body(resp)["error"]["code"] == "unauthorized"
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            resp = await fetch("/nope", headers={"Authorization": f"Basic {daemon.token}"}, token=None)
            assert resp.code == 401
            assert not daemon.stopping

    await go()


async def test_wrong_method_is_json_405() -> None:
    async def go() -> None:
        async with serve() as (_daemon, fetch):
            for method in ("GET", "PUT", "DELETE", "OPTIONS"):
                resp = await fetch("/api/stop", method=method, body="{}" if method == "PUT" else None)
                assert resp.code == 405, method
                assert body(resp)["error"]["code"] == "method_not_allowed"
                assert resp.headers["Allow"] == "POST"
            resp = await fetch("/health", method="POST", body="{}", token=None)
            assert resp.code == 405

    await go()


async def test_unknown_route_is_json_404() -> None:
    async def go() -> None:
        async with serve() as (_daemon, fetch):
            resp = await fetch("/no/such/thing")
            assert resp.code == 404
            assert body(resp) == {
                "error": {"code": "not_found", "message": "no such endpoint: /no/such/thing"}
            }

    await go()


async def test_an_answer_before_the_body_says_the_connection_closes() -> None:
    """Tornado closes a connection whose request was answered from ``prepare`` (a 401, a 404 of
    the catch-all, …); without ``Connection: close`` a keep-alive client sent its next request
    into the closed socket and got ``RemoteDisconnected``."""

    async def go() -> None:
        async with serve() as (daemon, _fetch):
            for path, token in (("/no/such/thing", daemon.token), ("/api/sessions", None)):
                reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
                auth = f"Authorization: Bearer {token}\r\n" if token else ""
                writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n{auth}\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert b"\r\nConnection: close\r\n" in head, head
                writer.close()

    await go()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io", "192.168.1.9"])
async def test_forged_host_is_403(host: str) -> None:
    async def go() -> None:
        async with serve() as (daemon, fetch):
            for path in ("/health", "/api/sessions"):
                resp = await fetch(path, headers={"Host": host.format(port=daemon.port)})
                assert resp.code == 403
                assert body(resp)["error"]["code"] == "forbidden_host"

    await go()


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST", "127.1.2.3"]
)
async def test_loopback_hosts_are_allowed(host: str) -> None:
    async def go() -> None:
        async with serve() as (daemon, fetch):
            resp = await fetch("/health", headers={"Host": host.format(port=daemon.port)})
            assert resp.code == 200

    await go()


def test_host_allowlist_rules() -> None:
    assert host_allowed("myhost.lan:80", "myhost.lan")
    assert not host_allowed("other.lan:80", "myhost.lan")
    assert host_allowed("192.168.1.9:7861", "0.0.0.0")  # wildcard bind: IP literals are fine
    assert not host_allowed("evil.example", "0.0.0.0")  # ...names are not (DNS rebinding)
    assert host_allowed("[fe80::1]:1", "::")
    assert not host_allowed("", "127.0.0.1")
    for forged in ("[::1]evil.example", "127.0.0.1:abc", "localhost:80:80", "[::1]:80x", "[]", ":80"):
        assert not host_allowed(forged, "127.0.0.1"), forged
    assert host_allowed("[::1]", "127.0.0.1") and host_allowed("localhost.", "127.0.0.1")


async def test_domain_errors_map_through_one_table() -> None:
    async def go() -> None:
        async with serve() as (_daemon, fetch):
            for code, status in ERROR_STATUS.items():
                resp = await fetch(f"/test/echo?raise={code}")
                assert resp.code == status, code
                assert body(resp) == {"error": {"code": code, "message": f"message for {code}"}}

    await go()


async def test_unexpected_errors_are_500_without_details(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        async with serve() as (_daemon, fetch):
            with caplog.at_level(logging.ERROR):
                resp = await fetch("/test/echo?raise=unexpected")
            assert resp.code == 500
            assert body(resp)["error"]["code"] == "internal_error"
            assert b"secret" not in resp.body
            assert b"Traceback" not in resp.body

    await go()
    assert any(r.exc_info and "secret" in str(r.exc_info[1]) for r in caplog.records)


def test_error_reply_defaults() -> None:
    """One function answers every error: domain errors by the table, bugs blandly, bare statuses
    by their phrase; the HTTP body and the WebSocket frame are the same reply."""
    busy = error_reply(errors.SessionBusy("busy", session_id="s1"))
    assert (busy.status, busy.code, busy.message) == (409, "session_busy", "busy")
    assert busy.body() == {"error": {"session_id": "s1", "code": "session_busy", "message": "busy"}}
    assert busy.frame(7) == {"type": "error", "id": 7, **busy.body()}
    assert busy.frame() == {"type": "error", **busy.body()}
    hidden = error_reply(ValueError("secret /path"))
    assert (hidden.status, hidden.code) == (500, "internal_error") and "secret" not in hidden.message
    assert (error_reply(None, 404).status, error_reply(None, 404).code) == (404, "not_found")


def test_no_error_answer_is_built_by_hand() -> None:
    """The ``{"error": {...}}`` shape (and the ``{"type": "error"}`` frame) is written only in
    ``qwen_daemon/errors.py``; everything else goes through ``error_reply``/``error_body``."""
    package = Path(errors.__file__).parent
    builders = set()
    for path in package.rglob("*.py"):
        if path.name.startswith("openapi"):
            continue  # the documents describe the shape; they answer nothing
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Dict):
                continue
            pairs = [
                (k.value, v)
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant)
            ]
            by_hand = any(key == "error" and isinstance(value, ast.Dict) for key, value in pairs)
            frame = any(
                key == "type" and isinstance(value, ast.Constant) and value.value == "error"
                for key, value in pairs
            )
            if by_hand or frame:
                builders.add(path.relative_to(package).as_posix())
    assert builders == {"errors.py"}


@pytest.mark.parametrize(
    ("headers", "data", "message"),
    [
        ({"Content-Type": "text/plain"}, b'{"a": 1}', "Content-Type must be application/json"),
        ({}, b'{"a": 1}', "Content-Type must be application/json"),
        ({"Content-Type": "application/json; charset=latin-1"}, b"{}", "UTF-8"),
        ({"Content-Type": "application/json"}, b"", "empty"),
        ({"Content-Type": "application/json"}, b'{"a": "\xff"}', "not valid UTF-8"),
        ({"Content-Type": "application/json"}, b'{"a": ', "not valid JSON"),
        ({"Content-Type": "application/json"}, b'{"a": NaN}', "not valid JSON"),
        ({"Content-Type": "application/json"}, b"[1, 2]", "must be a JSON object"),
        ({"Content-Type": "application/json"}, b'{"a": "\\ud800"}', "lone surrogate"),
        ({"Content-Type": "application/json"}, b'{"\\udfff": 1}', "lone surrogate"),
        ({"Content-Type": "application/json"}, b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
async def test_json_body_validation(headers: dict[str, str], data: bytes, message: str) -> None:
    async def go() -> None:
        async with serve() as (_daemon, fetch):
            resp = await fetch("/test/echo", method="POST", body=data, headers=headers)
            assert resp.code == 400
            err = body(resp)["error"]
            assert err["code"] == "bad_request"
            assert message in err["message"]

    await go()


async def test_json_body_too_large_is_413() -> None:
    async def go() -> None:
        async with serve() as (_daemon, fetch):
            data = b'{"a": "' + b"x" * 300_000 + b'"}'
            resp = await fetch(
                "/test/echo", method="POST", body=data, headers={"Content-Type": "application/json"}
            )
            assert resp.code == 413
            assert body(resp)["error"]["code"] == "payload_too_large"

    await go()


async def test_json_body_accepts_json_objects() -> None:
    async def go() -> None:
        async with serve() as (_daemon, fetch):
            for ctype in (
                "application/json",
                "application/json; charset=utf-8",
                "application/merge-patch+json",
            ):
                resp = await fetch(
                    "/test/echo", method="POST", body='{"a": [1, "é"]}', headers={"Content-Type": ctype}
                )
                assert resp.code == 201, ctype
                assert body(resp) == {"got": {"a": [1, "é"]}}

    await go()


@pytest.mark.parametrize("origin", ["https://evil.example", "http://[::1", "x://["])
async def test_cross_site_post_is_refused(origin: str) -> None:
    """An Origin Tornado cannot even parse is refused like any foreign one (it was a 500)."""

    async def go() -> None:
        async with serve() as (_daemon, fetch):
            resp = await fetch(
                "/test/echo",
                method="POST",
                body="{}",
                headers={"Content-Type": "application/json", "Origin": origin},
            )
            assert resp.code == 403
            assert body(resp)["error"]["code"] == "forbidden"

    await go()


def _ws_request(daemon: Daemon, token: str | None, origin: str | None) -> tornado.httpclient.HTTPRequest:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if origin is not None:
        headers["Origin"] = origin.format(port=daemon.port)
    return tornado.httpclient.HTTPRequest(daemon.url.replace("http", "ws") + "test/ws", headers=headers)


@pytest.mark.parametrize(
    ("token", "origin", "status"),
    [
        (None, None, 401),
        ("wrong", "http://127.0.0.1:{port}", 401),
        ("", "https://evil.example", 403),
        ("", "http://127.0.0.1:1", 403),
        ("", "null", 403),
    ],
)
async def test_websocket_refusals(token: str | None, origin: str | None, status: int) -> None:
    async def go() -> None:
        async with serve() as (daemon, _fetch):
            req = _ws_request(daemon, daemon.token if token == "" else token, origin)
            with pytest.raises(tornado.httpclient.HTTPClientError) as info:
                await tornado.websocket.websocket_connect(req)
            assert info.value.code == status
            assert not daemon.websockets

    await go()


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:{port}"])
async def test_websocket_accepted_and_closed_on_shutdown(origin: str | None) -> None:
    async def go() -> None:
        async with serve() as (daemon, _fetch):
            conn = await tornado.websocket.websocket_connect(_ws_request(daemon, daemon.token, origin))
            await conn.write_message("hi")
            assert await conn.read_message() == "hi"
            assert len(daemon.websockets) == 1
            await daemon.shutdown()
            assert await conn.read_message() is None  # closed by the server
            assert conn.close_code == 1001
            assert not daemon.websockets
            conn.close()

    await go()


async def test_post_stop_stops_the_daemon(paths: Paths) -> None:
    async def go() -> None:
        async with serve() as (daemon, fetch):
            assert paths.discovery_file.exists()
            resp = await fetch("/api/stop", method="POST", body="")
            assert resp.code == 202
            assert body(resp) == {"status": "stopping"}
            await asyncio.wait_for(daemon.wait_stopped(), 10)
            assert daemon.stopping
            assert not paths.discovery_file.exists()
            with pytest.raises(ConnectionRefusedError):  # nobody listens any more
                await fetch("/health", token=None, request_timeout=5)

    await go()


async def test_busy_port_is_a_clear_startup_error() -> None:
    async def go() -> None:
        sock, port = bind_unused_port()
        try:
            daemon = Daemon(load_settings(flags={"port": str(port), "agent_cmd": "python3 -c pass"}))
            with pytest.raises(StartupError, match=f"127.0.0.1:{port} is already in use"):
                await daemon.start()
        finally:
            sock.close()

    await go()

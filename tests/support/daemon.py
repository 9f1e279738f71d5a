"""An in-process daemon on a bound port, with a small async JSON client, for API tests; and the
same daemon on a background thread (:class:`DaemonThread`) for tests that drive it from blocking code."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import tornado.httpclient
import tornado.netutil
import tornado.testing
import tornado.websocket

from qwen_daemon.config import Paths, Settings
from qwen_daemon.runtime import Daemon
from tests.support.loop_thread import LoopThread

T = TypeVar("T")

FAKE_AGENT = str(Path(__file__).resolve().parent.parent / "fake_agent.py")


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


class Api:
    """Bearer-authenticated JSON calls against one running daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.base = f"http://127.0.0.1:{daemon.port}"
        self.http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        self.clients: list[WsClient] = []

    def headers(self, token: str | None = "default", **extra: str) -> dict[str, str]:
        token = self.daemon.token if token == "default" else token
        headers = {"Content-Type": "application/json", **extra}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        request = tornado.httpclient.HTTPRequest(
            self.base + path,
            method=method,
            body=data,
            headers={**self.headers(token), **(headers or {})},
            allow_nonstandard_methods=True,
            request_timeout=30,
        )
        response = await self.http.fetch(request, raise_error=False)
        text = response.body.decode() if response.body else ""
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Reply(response.code, parsed, response.headers)

    async def ws(self, session_id: str, after: int = 0, token: str | None = "default") -> WsClient:
        request = tornado.httpclient.HTTPRequest(
            f"ws://127.0.0.1:{self.daemon.port}/api/sessions/{session_id}/ws?after={after}",
            headers={k: v for k, v in self.headers(token).items() if k != "Content-Type"},
        )
        client = WsClient(await tornado.websocket.websocket_connect(request))
        self.clients.append(client)
        return client

    async def create(self, cwd: Path, **extra: Any) -> dict[str, Any]:
        reply = await self.call("POST", "/api/sessions", {"cwd": str(cwd), **extra})
        assert reply.status == 201, reply.body
        return dict(reply.body)

    async def wait_state(self, session_id: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            reply = await self.call("GET", f"/api/sessions/{session_id}")
            if reply.body["state"] == state:
                return dict(reply.body)
            if loop.time() > deadline:
                raise AssertionError(f"session stayed {reply.body['state']}, wanted {state}")
            await asyncio.sleep(0.02)

    async def events(self, session_id: str, after: int = 0) -> list[dict[str, Any]]:
        reply = await self.call("GET", f"/api/sessions/{session_id}/events?after={after}")
        assert reply.status == 200, reply.body
        return list(reply.body["events"])

    async def wait_event(
        self, session_id: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in await self.events(session_id):
                if pred(event):
                    return event
            if loop.time() > deadline:
                raise AssertionError("event never arrived")
            await asyncio.sleep(0.02)


def frames_in(message: str | bytes) -> list[Any]:
    """The daemon's frames in one WebSocket message: one JSON text per line
    (``qwen_daemon.server.stream``), parsed."""
    text = message.decode("utf-8") if isinstance(message, bytes) else message
    return [json.loads(line) for line in text.split("\n")]


class WsClient:
    """Reads frames with a deadline, one at a time (a message may hold several); keeps every
    frame seen."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []
        #: frames of a message already read that :meth:`recv` has not returned yet
        self.unread: deque[dict[str, Any]] = deque()

    async def recv(self, timeout: float = 15.0) -> dict[str, Any] | None:
        if not self.unread:
            message = await asyncio.wait_for(self.conn.read_message(), timeout)
            if message is None:
                return None
            self.unread.extend(frames_in(message))
        frame = self.unread.popleft()
        self.frames.append(frame)
        return dict(frame)

    async def until(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - loop.time()))
            if frame is None:
                raise AssertionError("connection closed before the frame arrived")
            if pred(frame):
                return frame

    async def seen(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        """Like :meth:`until`, but a matching frame already received counts too."""
        for frame in self.frames:
            if pred(frame):
                return frame
        return await self.until(pred, timeout)

    async def send(self, frame: Any) -> None:
        await self.conn.write_message(frame if isinstance(frame, str) else json.dumps(frame))

    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if "seq" in f]

    def close(self) -> None:
        self.conn.close()

    async def aclose(self, timeout: float = 10.0) -> None:
        """Close and wait until the connection is really closed (its socket released)."""
        already_closed = self.conn.close_code is not None
        self.conn.close()
        if already_closed:
            return  # the server closed it; nothing left to wait for
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await asyncio.wait_for(self.conn.read_message(), max(0.01, deadline - loop.time())) is not None:
            pass


def fake_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "agent_cmd": (sys.executable, FAKE_AGENT),
        "paths": Paths.from_platform(),
        "port": 0,
        # tests of agent lifecycles expect an agent to stop with its last session; spares are
        # tested on their own (tests/test_agents.py)
        "spare_agents": 0,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_daemon(
    settings: Settings, sockets: list[socket.socket] | None = None
) -> AsyncIterator[Api]:
    """A started daemon on ``sockets`` (default: a port bound with ``bind_unused_port``); shut
    down afterwards."""
    if sockets is None:
        sockets = [tornado.testing.bind_unused_port()[0]]
    daemon = Daemon(settings)
    await daemon.start(sockets=sockets)
    api = Api(daemon)
    try:
        yield api
    finally:
        for client in api.clients:
            await client.aclose()
        api.http.close()
        await daemon.shutdown()


async def serve(tmp_path: Path, body: Callable[[Api, Path], Awaitable[None]], **overrides: Any) -> None:
    """Run ``body(api, workspace)`` against a fresh daemon with the fake agent, on the test's loop."""
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    async with running_daemon(fake_settings(tmp_path, **overrides)) as api:
        await body(api, workspace)


class DaemonThread:
    """A started :class:`Daemon` (via ``running_daemon``) served from a background thread, for
    tests that drive it from blocking code (Playwright's sync API, CLIs, urllib); see
    :mod:`tests.support.loop_thread`."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        """``port``: listen there (e.g. to restart on the port a page knows), else any free port."""
        self.settings = settings
        self.port = port
        self._thread: LoopThread[Api] = LoopThread(self._serve, "daemon-thread")
        self._api: Api | None = None

    def _serve(self) -> AbstractAsyncContextManager[Api]:
        sockets = None if self.port is None else tornado.netutil.bind_sockets(self.port, "127.0.0.1")
        return running_daemon(self.settings, sockets=sockets)

    def start(self) -> DaemonThread:
        self._api = self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop()

    def __enter__(self) -> DaemonThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api(self) -> Api:
        assert self._api is not None
        return self._api

    @property
    def daemon(self) -> Daemon:
        return self.api.daemon

    @property
    def base(self) -> str:
        return self.api.base

    @property
    def login_url(self) -> str:
        return f"{self.base}/?token={self.api.daemon.token}"

    def run(self, awaitable: Awaitable[T], timeout: float = 30.0) -> T:
        """Run a coroutine on the daemon's loop and return its result."""
        return self._thread.run(awaitable, timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run a plain function on the daemon's loop thread (daemon state is not thread-safe)."""

        async def wrap() -> T:
            return fn()

        return self.run(wrap(), timeout)

    def drop_websockets(self) -> int:
        """Cut every open WebSocket from the server side, without a close frame (like a network
        drop); returns how many there were."""

        def cut() -> int:
            sockets = list(self.api.daemon.websockets)
            for ws in sockets:
                connection: Any = ws.ws_connection
                if connection is not None:
                    connection.stream.close()
            return len(sockets)

        return self.call(cut)

    def websocket_count(self) -> int:
        return self.call(lambda: len(self.api.daemon.websockets))

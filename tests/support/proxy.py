"""A reverse proxy on loopback standing in for ``tailscale serve``, ``cloudflared`` or nginx: what
the "From your phone" recipe puts in front of the daemon.

It forwards every request and WebSocket to the daemon *with the Host the browser used* (the
public name, as those tunnels do), and passes answers back unchanged — status, every header
(each ``Set-Cookie``), the body, and a WebSocket's close code. The browser reaches it under a
public-looking name mapped to 127.0.0.1 (Chromium's ``--host-resolver-rules``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import tornado.httpclient
import tornado.httpserver
import tornado.web
import tornado.websocket

#: request headers a proxy does not pass on (RFC 9110 hop-by-hop, plus what the client recomputes)
_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "content-length"}
_HOP_WS = _HOP | {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"}


class _Forward(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, upstream: str, client: tornado.httpclient.AsyncHTTPClient) -> None:
        self.upstream = upstream
        self.client = client

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.clear_header("Content-Type")

    async def _forward(self) -> None:
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in _HOP}
        body = self.request.body if self.request.method in ("POST", "PUT", "PATCH") else None
        response = await self.client.fetch(
            tornado.httpclient.HTTPRequest(
                self.upstream + self.request.uri,
                method=self.request.method,
                headers=headers,  # Host included: the public name the browser used
                body=body,
                follow_redirects=False,
                allow_nonstandard_methods=True,
                decompress_response=False,
                request_timeout=30,
            ),
            raise_error=False,
        )
        self.set_status(response.code, response.reason)
        for name, value in response.headers.get_all():
            if name.lower() not in _HOP:
                self.add_header(name, value)
        if response.body and self.request.method != "HEAD":
            self.write(response.body)
        await self.finish()

    get = head = post = put = patch = delete = options = _forward


class _ForwardSocket(tornado.websocket.WebSocketHandler):
    """A WebSocket passed through: opened upstream first (a refusal there is answered as is)."""

    def initialize(self, upstream: str) -> None:
        self.upstream = upstream.replace("http://", "ws://", 1)
        self.conn: tornado.websocket.WebSocketClientConnection | None = None

    def check_origin(self, origin: str) -> bool:
        return True  # a dumb pipe: the daemon judges the Origin it is passed

    async def get(self, *args: Any, **kwargs: Any) -> None:
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in _HOP_WS}
        request = tornado.httpclient.HTTPRequest(self.upstream + self.request.uri, headers=headers)
        try:
            self.conn = await tornado.websocket.websocket_connect(request)
        except tornado.httpclient.HTTPClientError as exc:
            self.set_status(exc.code)
            self.finish(exc.response.body if exc.response else b"")
            return
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        conn = self.conn
        assert conn is not None
        while (message := await conn.read_message()) is not None:
            if self.ws_connection is None:
                break
            await self.write_message(message, binary=isinstance(message, bytes))
        if self.ws_connection is not None:
            self.close(conn.close_code, conn.close_reason)
        conn.close()  # releases it (a no-op on the wire once the daemon has closed it)

    async def on_message(self, message: str | bytes) -> None:
        if self.conn is not None:
            await self.conn.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        if self.conn is not None:
            self.conn.close(self.close_code, self.close_reason)


class ReverseProxy:
    """Forward ``sock`` (a bound, listening socket) to ``http://127.0.0.1:upstream_port``."""

    def __init__(self, sock: socket.socket, upstream_port: int) -> None:
        self.sock = sock
        self.upstream = f"http://127.0.0.1:{upstream_port}"
        self.server: tornado.httpserver.HTTPServer | None = None
        self.client: tornado.httpclient.AsyncHTTPClient | None = None

    async def start(self) -> None:
        """On the loop that will serve it."""
        self.client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        app = tornado.web.Application(
            [
                (r"/api/sessions/[^/]+/ws", _ForwardSocket, {"upstream": self.upstream}),
                (r".*", _Forward, {"upstream": self.upstream, "client": self.client}),
            ]
        )
        self.server = tornado.httpserver.HTTPServer(app, xheaders=False)
        self.server.add_sockets([self.sock])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            await self.server.close_all_connections()
        if self.client is not None:
            self.client.close()

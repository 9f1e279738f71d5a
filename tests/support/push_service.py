"""A Web Push service on 127.0.0.1 that checks what the daemon sends as a real one would.

It plays both ends a browser would: :meth:`PushService.subscribe` makes a subscription's private
key and auth secret (``cryptography``) and returns what ``PushSubscription.toJSON()`` gives; each
POST to that endpoint must carry ``Authorization: vapid t=<jwt>, k=<key>`` whose key is the
daemon's (``GET /api/push/key``) and whose JWT verifies (``py_vapid.jwt.decode``), with ``aud``
this service's origin and an ``exp`` in the future; ``Content-Encoding: aes128gcm``, a ``TTL`` and
an ``Urgency``. The body is decrypted with ``http_ece`` and the JSON payload recorded.
Nothing of the crypto is written here: the libraries do it all.

:meth:`PushService.answer` makes the next pushes to an endpoint fail (410, 500, ...).
Also :class:`HookServer`: a plain loopback HTTP server that records webhook and ntfy requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import http_ece
import tornado.httpserver
import tornado.testing
import tornado.web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import jwt as vapid_jwt


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Received:
    """One push that arrived and was checked."""

    name: str
    payload: dict[str, Any]
    headers: dict[str, str]
    claims: dict[str, Any]
    at: float  # time.perf_counter() when it was decrypted
    wall: float  # time.time() then, to compare with the daemon's event timestamps


@dataclass
class Subscriber:
    name: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    #: statuses to answer the next pushes with, in order (then 201 again)
    failures: list[int] = field(default_factory=list)
    attempts: int = 0


class _PushHandler(tornado.web.RequestHandler):
    def initialize(self, service: PushService) -> None:
        self.service = service

    def check_xsrf_cookie(self) -> None:
        pass

    def post(self, name: str) -> None:
        service = self.service
        sub = service.subscribers.get(name)
        if sub is None:
            self.set_status(404)
            return
        sub.attempts += 1
        try:
            received = service.check(sub, self.request)
        except AssertionError as exc:
            service.errors.append(f"{name}: {exc}")
            self.set_status(400)
            self.finish(str(exc))
            return
        if sub.failures:
            self.set_status(sub.failures.pop(0))
            return
        service.received.append(received)
        service.changed.set()
        self.set_status(201)


class PushService:
    """Run with :func:`push_service`; ``received`` and ``errors`` are what happened."""

    def __init__(self, daemon_key: Callable[[], str]) -> None:
        self.daemon_key = daemon_key
        self.subscribers: dict[str, Subscriber] = {}
        self.received: list[Received] = []
        self.errors: list[str] = []
        self.changed = asyncio.Event()
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def subscribe(self, name: str | None = None) -> dict[str, Any]:
        """A new subscriber; returns its ``PushSubscription.toJSON()``."""
        name = name or secrets.token_hex(6)
        key = ec.generate_private_key(ec.SECP256R1())
        sub = Subscriber(name, key, os.urandom(16))
        self.subscribers[name] = sub
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": f"{self.origin}/push/{name}",
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(sub.auth)},
        }

    def answer(self, endpoint: str, *statuses: int) -> None:
        self.subscribers[endpoint.rsplit("/", 1)[1]].failures.extend(statuses)

    def check(self, sub: Subscriber, request: Any) -> Received:
        headers = request.headers
        scheme, _, params = headers.get("Authorization", "").partition(" ")
        assert scheme.lower() == "vapid", f"Authorization is not vapid: {scheme!r}"
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        assert parts["k"] == self.daemon_key(), "k is not the daemon's public key"
        claims = vapid_jwt.decode(parts["t"], parts["k"])  # raises InvalidSignature
        assert claims["aud"] == self.origin, f"aud {claims['aud']!r} is not {self.origin!r}"
        assert claims["exp"] > time.time(), "the JWT has expired"
        assert claims["sub"].startswith(("mailto:", "https://")), claims["sub"]
        assert headers.get("Content-Encoding") == "aes128gcm", headers.get("Content-Encoding")
        assert int(headers.get("TTL", "-1")) >= 0, "no TTL"
        assert headers.get("Urgency") in ("very-low", "low", "normal", "high"), headers.get("Urgency")
        plain = http_ece.decrypt(
            request.body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
        )
        return Received(sub.name, json.loads(plain), dict(headers), claims, time.perf_counter(), time.time())

    async def wait(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Until at least ``count`` pushes have arrived (fails naming any check that failed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.received) < count:
            assert not self.errors, self.errors
            if loop.time() > deadline:
                raise AssertionError(f"{len(self.received)} push(es) arrived, wanted {count}")
            self.changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - loop.time()))
        assert not self.errors, self.errors
        return self.received


@asynccontextmanager
async def push_service(daemon_key: Callable[[], str]) -> AsyncIterator[PushService]:
    """A :class:`PushService` listening on a free loopback port while the block runs."""
    service = PushService(daemon_key)
    app = tornado.web.Application([(r"/push/([0-9a-zA-Z_-]+)", _PushHandler, {"service": service})])
    sock, service.port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield service
    finally:
        server.stop()
        await server.close_all_connections()


# --- webhooks and ntfy ---------------------------------------------------------------------------


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes


class _HookHandler(tornado.web.RequestHandler):
    def initialize(self, server: HookServer) -> None:
        self.hooks = server

    def post(self, path: str) -> None:
        self.hooks.received.append(Hook(path, dict(self.request.headers), self.request.body))
        if self.hooks.failures:
            self.set_status(self.hooks.failures.pop(0))
        self.finish("ok")


class HookServer:
    def __init__(self) -> None:
        self.received: list[Hook] = []
        self.failures: list[int] = []
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def wait(self, count: int, timeout: float = 15.0) -> list[Hook]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.received) < count:
            if loop.time() > deadline:
                raise AssertionError(f"{len(self.received)} request(s) arrived, wanted {count}")
            await asyncio.sleep(0.01)
        return self.received


@asynccontextmanager
async def hook_server() -> AsyncIterator[HookServer]:
    hooks = HookServer()
    app = tornado.web.Application([(r"/(.*)", _HookHandler, {"server": hooks})])
    sock, hooks.port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield hooks
    finally:
        server.stop()
        await server.close_all_connections()

"""The :class:`Daemon`: one running qwen-daemon, the object with lifetimes.

Why a module of its own (and not ``server/app.py``, where it used to live): the Daemon is the
process's composition root, not part of the HTTP layer. It owns the listening sockets, the
session manager (and through it the agent pool), Web Push, devices and pairing, the open
WebSockets and the discovery file, and tears them down in one ordered, idempotent, time-bounded
:meth:`Daemon.shutdown`. The HTTP layer (``server/``) sees none of that: ``server/app.py`` only
joins the handler modules' routes, and handlers get the narrow
:class:`~qwen_daemon.server.context.HandlerContext` the Daemon builds. So imports run one way,
``runtime`` → ``server``, and nothing in ``server/`` imports the process back.

Process concerns (signals, sd_notify, daemonizing, logging setup) live in ``daemonize.py``; this
module is equally usable in-process from tests.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import socket
import ssl
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import tornado.httputil
import tornado.websocket

from qwen_daemon import __version__
from qwen_daemon.agents.registry import AgentNotFound
from qwen_daemon.config import ConfigError, Settings
from qwen_daemon.daemon_files import load_or_create_token, rotate_token, secure_paths
from qwen_daemon.devices import DeviceRegistry, PairingCodes
from qwen_daemon.discovery import DiscoveryInfo, browser_url, make_url, remove_discovery, write_discovery
from qwen_daemon.push.service import PushService
from qwen_daemon.server import stream
from qwen_daemon.server.app import make_app
from qwen_daemon.server.base import COOKIE_PREFIX, secrets_equal
from qwen_daemon.server.connections import (
    BODY_TIMEOUT,
    HEADER_TIMEOUT,
    LISTEN_BACKLOG,
    MAX_BODY_SIZE,
    MAX_CONNECTIONS,
    CappedHTTPServer,
    raise_file_limit,
)
from qwen_daemon.server.context import HandlerContext
from qwen_daemon.server.throttle import AuthThrottle
from qwen_daemon.sessions.manager import SessionManager
from qwen_daemon.sessions.store import StoreError

log = logging.getLogger(__name__)

#: Upper bound on the whole of :meth:`Daemon.shutdown` (agents get SIGTERM → SIGKILL inside it).
SHUTDOWN_TIMEOUT = 30.0
#: WebSocket close code when the token a connection was opened with has been rotated, or the
#: device it was opened by was revoked (logged out).
CLOSE_TOKEN_ROTATED = 4001
#: WebSocket close code for "going away" (RFC 6455).
CLOSE_GOING_AWAY = 1001


class StartupError(Exception):
    """The daemon cannot start (e.g. the port is taken); the message says what to do."""


def bind_listening_sockets(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> list[socket.socket]:
    """Listening sockets for every address ``host`` resolves to (port 0: one shared free port).

    Unlike ``tornado.netutil.bind_sockets`` this closes every socket it made when a bind fails,
    so a busy port leaks nothing (and trips no ResourceWarning in tests).
    """
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        for family, kind, proto, _canon, addr in infos:
            if (family, addr) in seen or family not in (socket.AF_INET, socket.AF_INET6):
                continue
            seen.add((family, addr))
            if port == 0 and sockets:  # bind every family to the port the first one got
                addr = (addr[0], sockets[0].getsockname()[1], *addr[2:])
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setblocking(False)
                sock.bind(addr)
                sock.listen(backlog)
            except OSError as exc:
                sock.close()
                # "localhost" may resolve to ::1 on a host without IPv6: skip, if others work.
                if exc.errno == errno.EADDRNOTAVAIL and len(infos) > 1:
                    continue
                raise
            sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(errno.EADDRNOTAVAIL, f"no usable address for {host}")
    return sockets


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Daemon:
    """One daemon instance: settings, token, identity, sessions and the HTTP server.

    Lifecycle: ``await start()`` → serving → ``request_stop()`` (from ``POST /api/stop`` or a
    signal) schedules ``shutdown()`` → ``await wait_stopped()`` returns once everything is torn
    down. ``shutdown()`` may also be awaited directly; it runs once however often it is called.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:  # before anything reads or writes a secret file
            for repair in secure_paths(settings.paths):
                log.warning("%s", repair)
        except ConfigError as exc:
            raise StartupError(str(exc)) from None
        self.token = load_or_create_token(settings.paths)
        self.instance_id = secrets.token_hex(16)
        self.auth_throttle = AuthThrottle()
        #: logged-in browsers (loaded from the store at start) and the pairing codes that add one
        self.devices = DeviceRegistry()
        self.devices.on_revoked.append(self._close_device_websockets)
        self.pairing = PairingCodes()
        #: a revoked device's pairing codes die with it (it must not come back as a new device)
        self.devices.on_revoked.append(self.pairing.retire)
        self.started_at = _utc_now()
        self.pid = os.getpid()
        self.manager = SessionManager(settings)
        #: Open WebSocket handlers; BaseWebSocketHandler keeps this up to date.
        self.websockets: set[tornado.websocket.WebSocketHandler] = set()
        #: Web Push and ``[[notify]]`` channels: told of every committed event (push/service.py)
        self.push = PushService(settings, self.manager)
        self.push.watching = lambda session_id: stream.watching_devices(self.websockets, session_id)
        self.push.own_url = lambda: self.public_base
        #: a revoked device (or every device, on `token rotate`) gets no more pushes
        self.devices.on_revoked.append(self.push.device_revoked)
        self.manager.on_event = self.push.observe
        #: Called (synchronously) when shutdown begins, e.g. to send sd_notify STOPPING=1.
        self.on_stopping: list[Callable[[], None]] = []
        #: True from the moment shutdown begins; new API requests then get 503.
        self.stopping = False
        #: all a request handler may reach (server/context.py), instead of this whole object
        self.context = HandlerContext(
            daemon=self,
            sessions=self.manager,
            agents=self.manager.pool,
            devices=self.devices,
            pairing=self.pairing,
            push=self.push,
            auth_throttle=self.auth_throttle,
            websockets=self.websockets,
            pid=self.pid,
            instance_id=self.instance_id,
            started_at=self.started_at,
            bind_host=settings.host,
            allowed_hosts=self.allowed_hosts,
            push_insecure_endpoints=settings.push_insecure_endpoints,
        )
        self.app = make_app(self.context)
        self._server: CappedHTTPServer | None = None
        self._port: int | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    # --- identity -------------------------------------------------------------------------------

    @property
    def http_server(self) -> CappedHTTPServer | None:
        """The HTTP server once started (its connection counters are what the lockout tests read)."""
        return self._server

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the daemon is not listening yet")
        return self._port

    @property
    def url(self) -> str:
        return make_url(self.settings.host, self.port, tls=self.settings.tls)

    @property
    def public_base(self) -> str:
        """The base of every absolute link the daemon hands out (pairing QR codes, notifications):
        ``public_url`` when set (a tunnel or proxy in front), else our own URL; ends with ``/``."""
        public = self.settings.public_url
        return f"{public}/" if public else self.url

    @property
    def public_origin(self) -> str | None:
        """``public_url``'s origin (``https://host[:port]``, lower case): our own origin too."""
        if not self.settings.public_url:
            return None
        parts = urllib.parse.urlsplit(self.settings.public_url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """Extra Host names we answer to: ``allowed_hosts``, and ``public_url``'s host."""
        public = urllib.parse.urlsplit(self.settings.public_url or "").hostname
        return (*self.settings.allowed_hosts, *([public] if public else []))

    def trust_connection(self, request: tornado.httputil.HTTPServerRequest) -> None:
        """``request`` proved the token: its connection is never closed to make room for another."""
        if self._server is not None:
            self._server.trust(request)

    def worth_room(self, head: bytes) -> bool:
        """Whether the first bytes of a connection to a full server earn it room (connections.py):
        a ``/health`` probe, or a request carrying the token (header or ``?token=``, compared in
        constant time) or a device's cookie (looked up by its hash). A head cut short by the
        read-ahead is judged on what it has."""
        line, _, rest = head.partition(b"\r\n")
        method, _, target = line.decode("latin-1").partition(" ")
        path, _, query = target.partition(" ")[0].partition("?")
        if method in ("GET", "HEAD") and path == "/health":
            return True
        if any(secrets_equal(v, self.token) for v in urllib.parse.parse_qs(query).get("token", [])):
            return True
        for raw in rest.decode("latin-1").split("\r\n"):
            name, _, value = raw.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "authorization":
                scheme, _, given = value.partition(" ")
                if scheme.lower() == "bearer" and secrets_equal(given.strip(), self.token):
                    return True
            elif name == "cookie":
                for part in value.split(";"):
                    key, _, given = part.strip().partition("=")
                    if key == f"{COOKIE_PREFIX}{self.port}" and self.devices.lookup(given) is not None:
                        return True
        return False

    def rotate_token(self) -> int:
        """Issue a new token and log every device out (pairing codes not yet used included); every
        WebSocket opened with the old token or a device is closed. Returns how many."""
        self.token = rotate_token(self.settings.paths)
        self.devices.revoke_all()  # their sockets are closed just below, with the others
        self.pairing.retire(every=True)  # the old token's codes too: none may log in after this
        closed = list(self.websockets)
        for ws in closed:
            ws.close(CLOSE_TOKEN_ROTATED, "the token was rotated; get the new URL with `qwen-daemon url`")
        log.info("token rotated; closed %d WebSocket(s)", len(closed))
        return len(closed)

    def _close_device_websockets(self, device_id: str) -> None:
        """A revoked device's open WebSockets end at once (close code 4001)."""
        for ws in [ws for ws in self.websockets if getattr(ws, "device_id", None) == device_id]:
            ws.close(CLOSE_TOKEN_ROTATED, "this device was logged out")

    @property
    def browser_url(self) -> str:
        """The URL to open in a browser. Contains the token: print it, never log it."""
        return browser_url(self.url, self.token)

    def discovery_info(self) -> DiscoveryInfo:
        return DiscoveryInfo(
            pid=self.pid,
            host=self.settings.host,
            port=self.port,
            url=self.url,
            instance_id=self.instance_id,
            version=__version__,
            started_at=self.started_at,
        )

    # --- start ----------------------------------------------------------------------------------

    def _bind(self) -> list[socket.socket]:
        host, port = self.settings.host, self.settings.port
        try:
            return bind_listening_sockets(host, port)
        except OSError as exc:
            where = f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"port {where} is already in use; stop the other program or choose another "
                    "port with --port (0 picks a free one)"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise StartupError(f"cannot listen on {where}: no such local address") from None
            if exc.errno == errno.EACCES:
                raise StartupError(f"cannot listen on {where}: permission denied") from None
            if isinstance(exc, socket.gaierror):
                raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
            raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.settings.certfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.settings.certfile, self.settings.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(f"cannot load the TLS certificate {self.settings.certfile}: {exc}") from None
        return context

    async def start(self, sockets: list[socket.socket] | None = None) -> None:
        """Listen (on ``sockets`` if given, else host:port from settings) and publish discovery.

        Raises :class:`StartupError` when the agent cannot be found or binding fails (the message
        names host and port).
        """
        if self._server is not None:
            raise RuntimeError("Daemon.start() called twice")
        try:
            agent = self.manager.pool.agent_command()
        except AgentNotFound as exc:  # refuse now, not at the first session
            raise StartupError(str(exc)) from None
        log.info("agent: %s", " ".join(agent.argv))
        for notice in self.settings.notices:  # e.g. a retired setting still in config.toml
            log.warning("%s", notice)
        try:
            self.manager.load()
            self.devices.load(self.manager.persist.store.connection)
        except (StoreError, ConfigError) as exc:  # ConfigError: UnsafePath (the agent-groups file)
            raise StartupError(str(exc)) from None
        if sockets is None:
            sockets = self._bind()
        if not sockets:
            raise StartupError("no sockets to listen on")
        self._port = sockets[0].getsockname()[1]
        if not self.settings.loopback_only:
            log.warning(
                "listening on %s: reachable from other machines%s",
                self.settings.host,
                "" if self.settings.tls else " WITHOUT TLS (--insecure-remote)",
            )
        files = raise_file_limit()
        server = CappedHTTPServer(
            self.app,
            ssl_options=self._tls_context(),
            xheaders=False,
            max_body_size=MAX_BODY_SIZE,  # bodies.py answers a bigger one with a JSON 413
            idle_connection_timeout=HEADER_TIMEOUT,  # Tornado's header timeout
            body_timeout=BODY_TIMEOUT,
        )
        # a quarter of the descriptors at most: the rest for WebSockets, agents' pipes, the store
        server.max_connections = min(MAX_CONNECTIONS, max(16, files // 4))
        server.worth_room = self.worth_room
        server.add_sockets(sockets)
        self._server = server
        self.manager.start()
        self.push.start()
        write_discovery(self.settings.paths, self.discovery_info())
        log.info("qwen-daemon %s listening on %s (pid %d)", __version__, self.url, self.pid)

    # --- stop -----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful shutdown without waiting for it (safe from signal handlers)."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown(), name="shutdown")

    async def wait_stopped(self) -> None:
        """Return once shutdown has completed."""
        await self._stopped.wait()

    async def shutdown(self) -> None:
        """Stop accepting, close WebSockets, shut sessions/agents down, remove discovery.

        Idempotent and bounded by :data:`SHUTDOWN_TIMEOUT`; never raises for a step that fails.
        """
        self.request_stop()
        assert self._shutdown_task is not None
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self) -> None:
        self.stopping = True
        log.info("shutting down")
        for callback in self.on_stopping:
            try:
                callback()
            except Exception:
                log.exception("error in stopping callback")
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                await self._teardown()
        except TimeoutError:
            log.error("shutdown did not finish within %.0f s; exiting anyway", SHUTDOWN_TIMEOUT)
        except Exception:
            log.exception("error during shutdown")
        finally:
            if self._port is not None:
                try:
                    remove_discovery(self.settings.paths, self.instance_id)
                except OSError as exc:
                    log.warning("cannot remove discovery file: %s", exc)
            self._stopped.set()
            log.info("stopped")

    async def _teardown(self) -> None:
        server = self._server
        if server is not None:
            server.stop()  # stop accepting new connections
        for ws in list(self.websockets):
            try:
                ws.close(CLOSE_GOING_AWAY, "daemon is shutting down")
            except Exception:
                log.debug("error closing a WebSocket", exc_info=True)
        self.websockets.clear()
        self.push.stopping = True  # what the stop interrupts is still announced, in one attempt
        try:
            await self.manager.shutdown()
        except Exception:
            log.exception("error shutting down sessions")
        await self.push.close()
        if server is not None:
            await server.close_all_connections()

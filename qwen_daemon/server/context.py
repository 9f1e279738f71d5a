"""What a request handler may reach: :class:`HandlerContext`, built once by the Daemon.

Why not the Daemon itself: a handler that holds the whole process object can reach its sockets,
its shutdown machinery and its private state, and every handler module then imports the module
that defines the process, which imports the handlers back (the old ``base`` ↔ ``app`` cycle).
Here the handlers get exactly what they use: the sessions, the agent pool, devices and pairing
codes, Web Push, the login throttle, the WebSocket registry, a few identity values, and — through
the small :class:`DaemonControl` protocol — the live values that change while the daemon runs
(token, port, the ``stopping`` flag) and the three actions a request may ask for (stop, rotate the
token, trust a connection). This module imports nothing from ``qwen_daemon.server`` but the
throttle (a leaf), so every handler can import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import tornado.httputil
import tornado.websocket

from qwen_daemon.agents.pool import AgentPool
from qwen_daemon.devices import DeviceRegistry, PairingCodes
from qwen_daemon.push.service import PushService
from qwen_daemon.server.throttle import AuthThrottle
from qwen_daemon.sessions.manager import SessionManager


class DaemonControl(Protocol):
    """The live state and actions of the running daemon a request may use (the Daemon has them)."""

    @property
    def token(self) -> str:
        """The bearer token now (``rotate_token`` replaces it)."""
        ...

    @property
    def port(self) -> int:
        """The port we listen on (cookie names carry it: cookies do not separate ports)."""
        ...

    @property
    def stopping(self) -> bool:
        """True once shutdown began: new API requests get 503."""
        ...

    @property
    def public_base(self) -> str:
        """Base of every absolute link handed out (``public_url`` or our own URL); ends with ``/``."""
        ...

    @property
    def public_origin(self) -> str | None:
        """``public_url``'s origin, trusted as our own (a proxy in front may rewrite Host)."""
        ...

    def trust_connection(self, request: tornado.httputil.HTTPServerRequest) -> None:
        """``request`` proved the token: its connection is never closed to make room."""
        ...

    def request_stop(self) -> None:
        """Begin a graceful shutdown without waiting for it."""
        ...

    def rotate_token(self) -> int:
        """Issue a new token, log every device out; returns how many WebSockets were closed."""
        ...


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """Everything a handler may use, and nothing else (see the module docstring)."""

    #: the live token, port, stopping flag, public links, and stop / rotate / trust
    daemon: DaemonControl
    #: every session: create, find, prompt, delete; the agents and their spares
    sessions: SessionManager
    #: the agent processes and warm spares (``GET /api/agents``, warming a workspace)
    agents: AgentPool
    #: logged-in browsers
    devices: DeviceRegistry
    #: the one-time codes that add a device
    pairing: PairingCodes
    #: Web Push subscriptions and the test notification
    push: PushService
    #: failed logins per peer (401 → 429)
    auth_throttle: AuthThrottle
    #: open WebSocket handlers; ``BaseWebSocketHandler`` keeps it up to date, shutdown closes them
    websockets: set[tornado.websocket.WebSocketHandler]
    #: identity, for ``/health`` and a WebSocket's hello: the process, this run, and since when
    pid: int
    instance_id: str
    started_at: str
    #: the Host checks: the configured bind host and extra names we answer to
    bind_host: str
    allowed_hosts: tuple[str, ...]
    #: whether push subscriptions may name http:// or private endpoints (tests, local gateways)
    push_insecure_endpoints: bool

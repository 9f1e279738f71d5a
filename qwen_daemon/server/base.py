"""The one base every HTTP and WebSocket handler builds on.

Why a single base: security that each handler must remember to add is security some handler
forgets. So authentication is deny-by-default in :meth:`prepare` (a route opts *out* with
``auth_required = False``), the Host allowlist runs before anything else, and every error —
domain, HTTP or a bug — leaves through one :meth:`write_error` as ``{"error": {"code",
"message"}}``, made by ``errors.error_reply`` with the status taken from one table. Tracebacks go
to the log, never to a client.

Threat model in one paragraph: the daemon listens on loopback and drives an agent that can run
commands, so any web page the user visits is an attacker. Bearer tokens are never sent
automatically by browsers (no CSRF); the Host check defeats DNS rebinding (an attacker's name
resolving to 127.0.0.1); Origin checks stop cross-site WebSockets; ``hmac.compare_digest`` keeps
the token comparison constant-time.

Browsers log in once from the URL ``qwen-daemon url`` prints (``/?token=…``) or from a pairing code
(``/pair?code=…``, whose page's button POSTs it: a link preview's GET spends nothing): either makes
a *device* (``qwen_daemon/devices.py``) whose own secret goes in an HttpOnly, SameSite=Strict
cookie, and redirects to a URL without the token or code, so neither sits in a Referer. A cookie
*is* sent automatically, and SameSite does not separate ports (another local web server is
"same-site"), so cookie auth is accepted only from our own origin (or the configured
``public_url``'s): an ``Origin`` header, when present, must be ours; WebSockets and
state-changing requests must carry it, and state-changing requests must also send
``X-Qwen-Daemon: 1``, a custom header no other site can add without a CORS preflight, which we
never grant.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar

import tornado.web
import tornado.websocket

from qwen_daemon import jsontext
from qwen_daemon.errors import AgentFailed, BadRequest, DaemonError, PayloadTooLarge, ShuttingDown
from qwen_daemon.logbounds import MAX_MESSAGE, REFUSED, clip, request_line
from qwen_daemon.server.bodies import BodyIntake, validated
from qwen_daemon.server.context import HandlerContext
from qwen_daemon.server.errors import ERROR_STATUS, ApiError, ErrorReply, error_reply
from qwen_daemon.sessions.manager import SessionManager

log = logging.getLogger(__name__)
B = TypeVar("B")

#: Largest JSON body a handler accepts (the HTTP server's own cap is higher, for uploads later).
MAX_JSON_BODY = 256 * 1024

#: Browser login cookie name prefix; the port is appended because cookies do not separate ports.
COOKIE_PREFIX = "qwen_daemon_"
#: How long a browser's device cookie lasts (a device is revoked from the Devices page or the CLI;
#: a new token logs every device out).
COOKIE_DAYS = 365
#: Same-origin proof a cookie-authenticated state-changing request must carry (value ``1``).
PROOF_HEADER = "X-Qwen-Daemon"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_JSON_TYPES = ("application/json",)


def secrets_equal(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (an empty expected secret matches nothing)."""
    return bool(expected) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


#: ``name[:port]``, ``v4[:port]`` or ``[v6][:port]``, and nothing around them
_HOST_HEADER = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]]+))(?::[0-9]{1,5})?")


def host_allowed(host_header: str, bind_host: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a request's ``Host`` is one we answer to (DNS-rebinding defence).

    Allowed: loopback names and addresses, and the configured bind host. When bound to a
    wildcard address the user asked for remote access, so any IP literal is allowed too — an IP
    literal cannot be rebound, only names can.
    """
    match = _HOST_HEADER.fullmatch(host_header.strip().lower())
    if match is None:  # e.g. "[::1]evil.example" or "127.0.0.1:abc": not a host[:port] at all
        return False
    host = (match["v6"] or match["name"]).rstrip(".")
    if not host:
        return False
    bind = bind_host.strip().lower().strip("[]")
    if host in _LOOPBACK_NAMES or host == bind or host in extra:
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if addr.is_loopback:
        return True
    return bind in ("0.0.0.0", "::", "")


class _Guard(tornado.web.RequestHandler):
    """Auth, Host/Origin checks and JSON errors, shared by HTTP and WebSocket handlers."""

    #: Set False on the few routes that must answer without a token (``/health``).
    auth_required = True
    #: Set True on routes that still make sense while the daemon shuts down.
    available_during_shutdown = False
    #: Browser pages: ``?token=`` logs in (cookie + redirect) and cookie auth needs no Origin.
    login_from_query = False
    #: The device a cookie-authenticated request comes from, once authenticated; None for the
    #: bearer token (API, CLI, scripts), which belongs to no device.
    device_id: str | None = None

    # --- accessors --------------------------------------------------------------------------

    @property
    def context(self) -> HandlerContext:
        """All this handler may reach of the daemon (``server/context.py``)."""
        context: HandlerContext = self.application.settings["context"]
        return context

    @property
    def manager(self) -> SessionManager:
        return self.context.sessions

    # --- checks -----------------------------------------------------------------------------

    def _origin_matches_host(self, origin: str) -> bool:
        """Tornado's cross-origin check, except that an Origin it cannot parse (``http://[::1``)
        matches nothing: Tornado's own raises ValueError there, a 500 before any other check."""
        try:
            return bool(super()._origin_matches_host(origin))
        except ValueError:
            return False

    def check_trusted_origin(self, origin: str) -> bool:
        """Tornado's cross-origin protection also trusts ``public_url``'s origin: a proxy in front
        may pass another Host than the one the browser used."""
        return origin.lower() == self.context.daemon.public_origin or bool(
            super().check_trusted_origin(origin)
        )

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")

    def bearer_token(self) -> str | None:
        """The token from ``Authorization: Bearer`` (the cookie is a separate, narrower path)."""
        scheme, _, value = self.request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return value.strip()

    @property
    def cookie_name(self) -> str:
        return f"{COOKIE_PREFIX}{self.context.daemon.port}"

    def authenticate(self) -> str | None:
        """How the request proves itself: ``"bearer"``, ``"cookie"`` or None.

        A request that sends a bearer token is judged by it alone: a wrong token is not rescued
        by a cookie riding along.
        """
        expected = self.context.daemon.token
        given = self.bearer_token()
        if given is not None:
            return "bearer" if secrets_equal(given, expected) else None
        device = self.context.devices.lookup(self.get_cookie(self.cookie_name) or "")
        if device is None:
            return None
        self.device_id = device.id
        self.context.devices.seen(device)
        return "cookie"

    def is_authenticated(self) -> bool:
        return self.authenticate() is not None

    def origin_is_own(self, origin: str) -> bool:
        """Same scheme and host:port as the (allowlisted) Host we were reached by, or ``public_url``'s
        origin (a proxy in front may speak http to us, or rewrite Host)."""
        if origin.lower() == self.context.daemon.public_origin:  # reached through the tunnel or proxy
            return True
        try:
            parts = urllib.parse.urlsplit(origin)
        except ValueError:
            return False
        if parts.scheme != self.request.protocol:
            return False
        return parts.netloc.lower() == self.request.headers.get("Host", "").strip().lower()

    def check_host(self) -> None:
        host = self.request.headers.get("Host", "")
        if not host_allowed(host, self.context.bind_host, self.context.allowed_hosts):
            log.warning("refused request with Host %r (possible DNS rebinding)", host[:100], extra=REFUSED)
            raise ApiError(403, "forbidden_host", "requests for this Host are not accepted")

    def check_cookie_use(self) -> None:
        """Cookie auth is accepted only for requests our own pages make (see the module doc)."""
        if self.login_from_query:
            return  # a page is a navigation: read-only, rendered for the user, never framed
        origin = self.request.headers.get("Origin")
        changing = self.request.method not in SAFE_METHODS
        if origin is not None or changing or isinstance(self, tornado.websocket.WebSocketHandler):
            if origin is None or not self.origin_is_own(origin):
                log.warning("refused cookie request from Origin %r", (origin or "")[:100], extra=REFUSED)
                raise ApiError(
                    403,
                    "forbidden_origin",
                    "cookie-authenticated requests must come from the daemon's own pages",
                )
        elif self.request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise ApiError(403, "forbidden_origin", "cookie-authenticated requests must be same-origin")
        if changing and self.request.headers.get(PROOF_HEADER, "").strip() != "1":
            raise ApiError(
                403, "missing_proof", f"cookie-authenticated changes need the header '{PROOF_HEADER}: 1'"
            )

    def check_auth(self) -> None:
        if not self.auth_required:
            return
        method = self.authenticate()
        if method is None:
            self.refuse_unauthenticated()
        if method == "cookie":
            self.check_cookie_use()
        self.context.daemon.trust_connection(self.request)  # never closed to make room (connections.py)

    def login_from_token(self) -> bool:
        """Pages log in from ``?token=`` (``pages.PageHandler``); nothing else does."""
        return False

    def refuse_unauthenticated(self) -> None:
        """401, or 429 once this peer has failed too often (a correct token never gets here)."""
        wait = self.context.auth_throttle.fail(self.request.remote_ip or "?")
        if wait:
            retry = str(int(wait + 0.999))
            message = f"too many failed logins; try again in {retry} s"
            raise ApiError(429, "too_many_attempts", message, headers={"Retry-After": retry})
        raise ApiError(401, "unauthorized", "missing or invalid bearer token")

    def prepare(self) -> Awaitable[None] | None:
        self.check_host()
        if self.login_from_query and self.login_from_token():
            return None
        self.check_auth()
        if self.context.daemon.stopping and not self.available_during_shutdown:
            raise ShuttingDown("the daemon is shutting down")
        return self.admit_body()

    def admit_body(self) -> Awaitable[None] | None:
        """Authorized: a handler that streams its body (``bodies.py``) now takes it in."""

    # --- errors -----------------------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        reply = self.reply_for(exc, status_code)
        if reply.status != status_code:
            self.set_status(reply.status)
        if reply.status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="qwen-daemon"')
        for name, value in reply.headers.items():
            self.set_header(name, value)
        if reply.status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(reply.body(), separators=(",", ":")))

    def reply_for(self, exc: BaseException | None, status_code: int) -> ErrorReply:
        """:func:`errors.error_reply`, in this request's words: a stop that took the agent away is
        said as such, and a 404/405 of the router names the path (and method) it refused."""
        if isinstance(exc, AgentFailed) and self.context.daemon.stopping:
            exc = ShuttingDown("the daemon is stopping; try again once it is back")
        reply = error_reply(exc, status_code)
        if reply.status == 405:
            message = f"method {self.request.method} is not allowed on {self.request.path}"
            return dataclasses.replace(reply, message=message)
        if reply.status == 404 and reply.code == "not_found":
            return dataclasses.replace(reply, message=f"no such endpoint: {self.request.path}")
        return reply

    def compute_etag(self) -> str | None:
        return None  # API answers are live state; an ETag only invites stale caching

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The summary never includes the query string: it may carry a token (?token=...).
        summary = f"{request_line(self.request)} ({self.request.remote_ip})"
        if isinstance(value, DaemonError):
            if value.code not in ERROR_STATUS:
                log.error("unmapped error code %r in %s", value.code, summary)
            else:
                log.info("%s: %s %s", summary, value.code, clip(value.message, MAX_MESSAGE))
        elif isinstance(value, tornado.web.HTTPError):
            log.debug("%s: HTTP %d", summary, value.status_code)  # the access log has it too
        else:
            log.error("uncaught exception in %s", summary, exc_info=(typ, value, tb))  # type: ignore[arg-type]

    def allowed_methods(self) -> list[str]:
        """Methods this handler implements (for ``Allow`` on 405)."""
        base = tornado.web.RequestHandler
        return [
            m
            for m in self.SUPPORTED_METHODS
            if getattr(type(self), m.lower(), None) is not getattr(base, m.lower(), None)
        ]


class BaseHandler(BodyIntake, _Guard):
    """Base for JSON HTTP handlers."""

    def write_json(self, obj: Any, status: int = 200) -> Awaitable[None]:
        """Send ``obj`` as the whole response body and finish the request."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        return self.finish(jsontext.dumps(obj))

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or :class:`BadRequest` saying what is wrong.

        Requiring a JSON Content-Type is a CSRF defence too: a cross-site form or ``text/plain``
        fetch cannot send it without a CORS preflight, which we never grant.
        """
        ctype = self.request.headers.get("Content-Type", "")
        mime, _, params = ctype.partition(";")
        mime = mime.strip().lower()
        if not (mime in _JSON_TYPES or (mime.startswith("application/") and mime.endswith("+json"))):
            raise BadRequest(f"Content-Type must be application/json, not {ctype or 'missing'!r}")
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                raise BadRequest("the request body must be UTF-8 encoded")
        body = self.request_body
        if len(body) > MAX_JSON_BODY:
            raise PayloadTooLarge(f"request body too large ({len(body)} bytes; at most {MAX_JSON_BODY})")
        if not body.strip():
            raise BadRequest("request body is empty; expected a JSON object")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the request body is not valid UTF-8") from None
        data = parse_json(text, "the request body")
        if not isinstance(data, dict):
            raise BadRequest(f"the request body must be a JSON object, not {type(data).__name__}")
        return data

    def body(self, contract: type[B], *, optional: bool = False) -> B:
        """The JSON body as its contract type (``contract/bodies.py``), or a 400 naming the field;
        ``optional``: an empty body stands for ``{}``."""
        data = {} if optional and not self.request_body.strip() else self.json_body()
        return validated(contract, data)


def parse_json(text: str | bytes, what: str) -> Any:
    """Decode JSON a client sent, or raise :class:`BadRequest` naming ``what`` and the fault.

    Besides syntax: NaN/Infinity (not JSON), nesting deep enough to exhaust the parser's recursion,
    and lone surrogates (valid JSON, but not text we could store or send on; see ``jsontext``).
    """
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError included (bytes that are not UTF-8)
        raise BadRequest(f"{what} is not valid JSON: {exc}") from None
    # one can only arrive as a \u escape (UTF-8 cannot encode it), so most text needs no check
    escaped = "\\u" in text if isinstance(text, str) else b"\\u" in text
    if escaped and isinstance(data, dict | list | str) and jsontext.lone_surrogate_in(data):
        raise BadRequest(f"{what} holds a lone surrogate (\\ud800-\\udfff), which is not text")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class NotFoundHandler(BaseHandler):
    """The catch-all route: unknown paths get a JSON 404 (after the usual Host/auth checks)."""

    available_during_shutdown = True

    def admit_body(self) -> Awaitable[None] | None:
        raise tornado.web.HTTPError(404)  # at the body's door: answered as any early refusal


class BaseWebSocketHandler(_Guard, tornado.websocket.WebSocketHandler):
    """Base for WebSocket handlers: same Host + auth checks, plus a strict Origin check.

    A bearer client may omit ``Origin`` (it is no browser); a cookie client must send ours.

    The connection registers itself in ``context.websockets`` once upgraded and leaves it when
    closed, so shutdown can close every socket; subclasses need not do it themselves.
    Subclasses that override :meth:`on_connection_close` must call ``super()``.
    """

    def prepare(self) -> Awaitable[None] | None:
        super().prepare()
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.origin_is_own(origin):
            log.warning("refused WebSocket from foreign Origin %r", origin[:100], extra=REFUSED)
            raise ApiError(403, "forbidden_origin", "cross-origin WebSockets are not allowed")
        return None

    def check_origin(self, origin: str) -> bool:
        return self.origin_is_own(origin)

    def _check_handshake(self) -> None:
        """Tornado's own handshake checks, answered as JSON errors (its refusals are plain text or
        empty); Tornado still checks everything again."""
        headers = self.request.headers
        connection = {part.strip().lower() for part in headers.get("Connection", "").split(",")}
        if headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection:
            raise ApiError(
                400, "bad_request", "this is a WebSocket endpoint; connect with Upgrade: websocket"
            )
        if headers.get("Sec-WebSocket-Version") not in ("7", "8", "13"):
            raise ApiError(
                426, "upgrade_required", "WebSocket version 13 is required", {"Sec-WebSocket-Version": "13"}
            )
        if not headers.get("Sec-WebSocket-Key"):
            raise ApiError(400, "bad_request", "the Sec-WebSocket-Key header is missing")

    async def get(self, *args: Any, **kwargs: Any) -> None:
        self._check_handshake()
        registry = self.context.websockets
        registry.add(self)
        try:
            await super().get(*args, **kwargs)
        finally:
            if self.ws_connection is None:  # handshake refused or already closed
                registry.discard(self)

    def on_connection_close(self) -> None:
        self.context.websockets.discard(self)
        super().on_connection_close()

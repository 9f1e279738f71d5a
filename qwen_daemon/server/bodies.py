"""Request bodies: decided on when the head arrives, and refused over the cap with a JSON 413.

Why handlers stream their bodies (``@stream_request_body``): by default Tornado reads the whole
body before any handler code runs, so every check waited for the body, and a body over the
server's cap was refused by Tornado itself with a bare ``400`` written while the client was still
uploading, then a reset (issue 14, finding 7). Streaming makes ``prepare`` — Host, token and
shutdown checks — run as soon as the head has arrived; only an authorized request has its body
kept (for ``request_body``).

An answer that comes before the client has sent its whole body is usually lost: most clients
(browsers, ``urllib``, Tornado's) send the whole body before they read anything, and a socket
closed with unread data in it is reset, which destroys the answer. So the answer is given:

- at once, when the client waits for our word (``Expect: 100-continue``, curl's way for big
  uploads: it then sends nothing), when there is no body, or when the body is too big to read
  (a refusal: over :data:`MAX_BODY_SIZE`; a 413: over :data:`DRAIN_LIMIT`, or a chunked body
  crossing the cap). The connection closes after it, so a client still sending may see a reset;
- otherwise once the body has been read and thrown away, which the body timeout bounds. This is
  also why a token-less body is not refused the moment its head arrives: answering and closing
  at once only makes an attacker reconnect at full speed (``bench/lockout.py`` measured /health at
  seconds rather than milliseconds), while a slow body waiting here is one of the connections
  ``connections.py`` closes first to make room.

A body over the cap gets the usual JSON error, ``413 payload_too_large``, on every route.
"""

from __future__ import annotations

from asyncio import Future
from collections.abc import Awaitable
from typing import Any, TypeVar

import tornado.http1connection
import tornado.web

from qwen_daemon.contract.validate import ContractError, check
from qwen_daemon.errors import BadRequest, DaemonError, PayloadTooLarge
from qwen_daemon.server.connections import MAX_BODY_SIZE

B = TypeVar("B")

#: An authorized oversized body up to this size is read (and dropped) before its 413; see above.
DRAIN_LIMIT = 4 * MAX_BODY_SIZE
#: Tornado's own limit while a chunked body streams in: ours is enforced here, as a JSON 413.
_UNBOUNDED = 1 << 62


def validated(contract: type[B], data: dict[str, Any]) -> B:
    """``data`` (a parsed JSON object) as the contract body type it must be
    (``contract/bodies.py``), or :class:`BadRequest` naming the field and the rule it breaks.
    The one place a body's form is checked: the handlers and the domain trust the type after it."""
    try:
        return check(contract, data)
    except ContractError as exc:
        raise BadRequest(str(exc)) from None


@tornado.web.stream_request_body
class BodyIntake(tornado.web.RequestHandler):
    """A handler that reads its body after authorization; see the module doc."""

    _parts: list[bytes] | None = None
    _received = 0
    #: bytes of a body still to read and drop before ``_refusal`` is answered (None: not draining)
    _drain_left: int | None = None
    _refusal: Exception | None = None
    #: answered from ``prepare`` before the body was read: Tornado closes the connection after it
    _answered_early = False

    def _declared_length(self) -> int | None:
        try:
            return int(self.request.headers.get("Content-Length", ""))
        except ValueError:  # absent, or malformed (Tornado answers that one with a 400)
            return None

    def prepare(self) -> Awaitable[None] | None:
        """Lift Tornado's own cap for this request, so a body over it is answered by us (JSON 413
        or the refusal that comes first) rather than by Tornado's bare 400; then the checks, whose
        refusal waits for a body of known length within the cap (see the module doc)."""
        declared = self._declared_length()
        chunked = "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()
        connection = self.request.connection
        if isinstance(connection, tornado.http1connection.HTTP1Connection):
            if declared is not None and declared > MAX_BODY_SIZE:
                connection.set_max_body_size(declared)
            elif chunked:
                connection.set_max_body_size(_UNBOUNDED)
        try:
            return super().prepare()
        except (tornado.web.HTTPError, DaemonError) as exc:
            if not declared or declared > MAX_BODY_SIZE or self._client_waits():
                self._answered_early = True
                raise  # no body, one too big to read, or a client waiting for our word: answer now
            self._refusal, self._drain_left = exc, declared
            return None

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        """Say ``Connection: close`` on an answer given before the body was read: Tornado closes
        such a connection after the answer, and a keep-alive client told nothing would send its
        next request into the closed socket (``RemoteDisconnected``) instead of opening a new one."""
        if self._answered_early:
            self.set_header("Connection", "close")
        return super().finish(chunk)

    def _client_waits(self) -> bool:
        """``Expect: 100-continue``: the client sends its body only after a ``100 Continue``."""
        return self.request.headers.get("Expect", "").lower() == "100-continue"

    def admit_body(self) -> Awaitable[None] | None:
        """The request is authorized: take its body, or refuse one declared over the cap."""
        declared = self._declared_length()
        if declared is not None and declared > MAX_BODY_SIZE:
            if declared > DRAIN_LIMIT or self._client_waits():
                raise self._too_large(declared)
            self._refusal, self._drain_left = self._too_large(declared), declared
        return None

    def data_received(self, chunk: bytes) -> None:
        if self._drain_left is not None:
            self._drain_left -= len(chunk)
            if self._drain_left <= 0 and self._refusal is not None:  # all read: no reset can lose it
                self._refuse(self._refusal)
            return
        self._received += len(chunk)
        if self._received > MAX_BODY_SIZE:  # a chunked body crossing the cap
            self._parts = None
            self._refuse(self._too_large(self._received))
            return
        if self._parts is None:
            self._parts = []
        self._parts.append(chunk)

    @property
    def request_body(self) -> bytes:
        """The whole body (it has arrived by the time a handler method runs)."""
        if self._parts:
            self.request.body = b"".join(self._parts)
            self._parts = None
        return self.request.body

    def _too_large(self, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body too large ({size} bytes; at most {MAX_BODY_SIZE})")

    def _refuse(self, exc: Exception) -> None:
        # the status is a placeholder: write_error takes the real one from the exception
        status = exc.status_code if isinstance(exc, tornado.web.HTTPError) else 500
        self.send_error(status, exc_info=(type(exc), exc, None))

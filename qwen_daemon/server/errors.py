"""Every error a client is told, through one function: :func:`error_reply`.

Why one function: error answers used to be assembled in several places (the JSON handlers, the
HTML pages, the WebSocket's error frames), each with its own idea of which status, which code
and how much to say. Now an exception (or a bare status, for Tornado's own refusals) becomes one
:class:`ErrorReply` here, and each surface only renders it: ``base.py`` writes
:meth:`ErrorReply.body` as JSON, ``pages.py`` the same code and message as an HTML page, and
``stream.py`` :meth:`ErrorReply.frame`. The body's shape itself, ``{"error": {"code",
"message"}}``, is :func:`qwen_daemon.errors.error_body`, which the session layer (no HTTP there)
uses for its own storage notice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import tornado.web

from qwen_daemon.errors import DaemonError, error_body, error_frame

#: Domain error code → HTTP status. The only place this mapping exists.
ERROR_STATUS: dict[str, int] = {
    "bad_request": 400,
    "payload_too_large": 413,
    "session_not_found": 404,
    "permission_not_found": 404,
    "subscription_not_found": 404,
    "session_busy": 409,
    "session_closed": 409,
    "session_failed": 409,
    "permission_already_answered": 409,
    "limit_reached": 429,
    "agent_error": 502,
    "shutting_down": 503,
    "push_unavailable": 503,
    "agent_unavailable": 409,
    "storage_unavailable": 507,
    "device_not_found": 404,
}

#: What an unexpected exception is answered with: its text may hold paths or secrets.
INTERNAL_MESSAGE = "internal error; see the daemon log"


class ApiError(tornado.web.HTTPError):
    """An HTTP-level refusal (auth, Host, Origin) with a stable ``code`` and a client message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class ErrorReply:
    """One error as every surface answers it: status, stable code, message a user can act on."""

    status: int
    code: str
    message: str
    #: extra, JSON-safe fields for the body (a :class:`DaemonError`'s ``details``)
    details: dict[str, object] = field(default_factory=dict)
    #: headers the answer must carry (e.g. ``Sec-WebSocket-Version`` on a 426)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON body of an HTTP error answer."""
        return error_body(self.code, self.message, self.details)

    def frame(self, frame_id: str | int | None = None) -> dict[str, Any]:
        """The WebSocket ``error`` frame answering a client frame (with its ``id``, if it had one)."""
        return error_frame(self.code, self.message, frame_id, self.details)


def error_reply(exc: BaseException | None, status: int = 500) -> ErrorReply:
    """The answer to ``exc``, or to a bare ``status`` when there is no exception (Tornado's own
    refusals: 404, 405, ...).

    Unexpected exceptions become a bland 500: their text may hold paths or secrets.
    """
    if isinstance(exc, DaemonError):
        return ErrorReply(ERROR_STATUS.get(exc.code, 500), exc.code, exc.message, dict(exc.details))
    if isinstance(exc, ApiError):
        return ErrorReply(exc.status_code, exc.code, exc.message, headers=dict(exc.headers))
    if isinstance(exc, tornado.web.MissingArgumentError):
        return ErrorReply(400, "bad_request", f"missing argument {exc.arg_name!r}")
    if isinstance(exc, tornado.web.HTTPError):
        status = exc.status_code
    elif exc is not None or status >= 500:
        return ErrorReply(500, "internal_error", INTERNAL_MESSAGE)
    if status == 500:
        return ErrorReply(500, "internal_error", INTERNAL_MESSAGE)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "HTTP error"
    return ErrorReply(status, phrase.lower().replace(" ", "_").replace("-", "_"), phrase)

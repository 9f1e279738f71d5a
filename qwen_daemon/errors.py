"""Domain errors: what went wrong, in words a user can act on.

Managers raise these and know nothing of HTTP; ``server/errors.py`` maps each ``code`` to a status
in one table and turns any error into its answer. ``code`` is the stable, machine-readable part of
every API error body, whose one shape is :func:`error_body` (the WebSocket's: :func:`error_frame`).

:class:`ConfigError` lives here too (``config`` re-exports it): the modules ``config`` calls while
it loads the settings (``private_files``, ``push.channels``) raise it, and importing it from
``config`` made them an import cycle with it. This module imports nothing of the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def error_body(code: str, message: str, details: Mapping[str, object] | None = None) -> dict[str, Any]:
    """``{"error": {"code", "message", ...details}}``: the one shape every error reaches a client in
    (an HTTP body; inside a WebSocket ``error`` frame). ``code`` and ``message`` win over details."""
    return {"error": {**(details or {}), "code": code, "message": message}}


def error_frame(
    code: str, message: str, frame_id: str | int | None = None, details: Mapping[str, object] | None = None
) -> dict[str, Any]:
    """A WebSocket ``error`` control frame (no ``seq``): the body's shape plus ``type``, and the
    ``id`` of the client frame it answers, if that had one."""
    frame: dict[str, Any] = {"type": "error", **error_body(code, message, details)}
    if frame_id is not None:
        frame["id"] = frame_id
    return frame


class ConfigError(Exception):
    """A setting has a value the daemon cannot run with; the message names the setting."""


class DaemonError(Exception):
    """Base class; ``code`` names the error in API bodies and WebSocket error frames."""

    code = "error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        #: extra, JSON-safe fields for the API error body (e.g. the id of a session that failed)
        self.details = details


class BadRequest(DaemonError):
    code = "bad_request"


class PayloadTooLarge(DaemonError):
    code = "payload_too_large"


class SessionNotFound(DaemonError):
    code = "session_not_found"


class SessionBusy(DaemonError):
    """A turn is already running: the prompt is refused and never forwarded to the agent."""

    code = "session_busy"


class SessionClosed(DaemonError):
    code = "session_closed"


class SessionFailed(DaemonError):
    code = "session_failed"


class LimitReached(DaemonError):
    code = "limit_reached"


class PermissionNotFound(DaemonError):
    code = "permission_not_found"


class PermissionAlreadyAnswered(DaemonError):
    code = "permission_already_answered"


class AgentFailed(DaemonError):
    """The agent refused or could not start; the message is the agent's own words."""

    code = "agent_error"


class ShuttingDown(DaemonError):
    code = "shutting_down"


class StorageUnavailable(DaemonError):
    """The session database cannot be written (a full disk, a read-only file): a command whose
    result could not be saved is refused (507) rather than accepted and left to stall."""

    code = "storage_unavailable"


class AgentUnavailable(DaemonError):
    """The session's named agent is not in the config (or cannot be found): it cannot run now."""

    code = "agent_unavailable"


class DeviceNotFound(DaemonError):
    code = "device_not_found"


class SubscriptionNotFound(DaemonError):
    """No push subscription by that id (deleted, or removed when its push service said it is gone)."""

    code = "subscription_not_found"


class PushUnavailable(DaemonError):
    """Web Push cannot work now (its key file is unusable); the message names the file."""

    code = "push_unavailable"

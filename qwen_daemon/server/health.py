"""Liveness and lifecycle endpoints: ``GET /health`` (public) and ``POST /api/stop``.

``/health`` answers without a token because the CLI and supervisors probe it before they have
(or need) one; it therefore says nothing secret — just enough (``pid`` + ``instance_id``) for a
client to verify that the process behind a discovery file really is that daemon.

``status`` is ``degraded``, with a ``reason``, while the session database cannot be written (a
full disk): the daemon still answers, but holds new events in memory and refuses prompts (507)
until a write succeeds again. The reason names no path, for the same reason as above.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import tornado.web

from qwen_daemon import __version__
from qwen_daemon.server.base import BaseHandler

if TYPE_CHECKING:
    from qwen_daemon.contract.responses import Health


class HealthHandler(BaseHandler):
    auth_required = False
    available_during_shutdown = True

    def get(self) -> None:
        context = self.context
        failure = context.sessions.storage_failure
        # "stopping" lets `qwen-daemon stop` tell a shutdown in progress from a hang.
        status: Literal["ok", "degraded", "stopping"] = (
            "stopping" if context.daemon.stopping else "degraded" if failure else "ok"
        )
        body: Health = {
            "status": status,
            "version": __version__,
            "pid": context.pid,
            "instance_id": context.instance_id,
            "started_at": context.started_at,
        }
        if failure is not None and status == "degraded":
            body["reason"] = failure
        self.write_json(body)


class StopHandler(BaseHandler):
    """Asks the daemon to stop gracefully; answers first, so the caller is not cut off."""

    available_during_shutdown = True  # a second stop is harmless: still 202

    async def post(self) -> None:
        await self.write_json({"status": "stopping"}, status=202)
        self.context.daemon.request_stop()


class TokenRotateHandler(BaseHandler):
    """Issue a new API token. The answer never contains it: clients read the 0600 token file."""

    def post(self) -> None:
        closed = self.context.daemon.rotate_token()
        self.write_json({"status": "rotated", "closed_websockets": closed})


routes: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    (r"/health", HealthHandler),
    (r"/api/stop", StopHandler),
    (r"/api/token/rotate", TokenRotateHandler),
]

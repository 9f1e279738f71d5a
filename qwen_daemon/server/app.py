"""The Tornado application: every handler module's routes joined, and the access log.

The process object that runs it (sockets, sessions, WebSockets, discovery file, ordered
shutdown) is :class:`qwen_daemon.runtime.Daemon`; handlers see only the narrow
:class:`qwen_daemon.server.context.HandlerContext` it builds, passed in the Application settings.
So this module, like every handler module, knows nothing of the process that serves it.
"""

from __future__ import annotations

import logging
from typing import Any

import tornado.web

from qwen_daemon.logbounds import REFUSED, request_line
from qwen_daemon.server import devices_api, health, openapi_route, pages, push_api, sessions_api, stream
from qwen_daemon.server.base import BaseHandler, BaseWebSocketHandler, NotFoundHandler
from qwen_daemon.server.context import HandlerContext

#: Largest WebSocket frame a client may send (a prompt is at most 100,000 characters).
MAX_FRAME_SIZE = 1024 * 1024


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log without the query string (a browser URL carries ``?token=``).

    Method and path are the client's own text, so they are clipped and escaped; and a request
    refused to a client without the token is marked as a refusal, which the log handler lets
    through only at a bounded rate (see ``logbounds``): else a flood of them fills the disk.
    """
    request = handler.request
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    refused = status >= 400 and not (
        isinstance(handler, BaseHandler | BaseWebSocketHandler) and handler.is_authenticated()
    )
    ms = 1000.0 * request.request_time()
    logging.getLogger("tornado.access").log(
        level,
        "%d %s %.1fms",
        status,
        request_line(request),
        ms,
        extra=REFUSED if refused else None,
    )


def make_app(context: HandlerContext) -> tornado.web.Application:
    """The application: every module's routes, then a catch-all JSON 404.

    ``context`` is all a handler may reach (``BaseHandler.context``), not the Daemon itself.
    """
    routes: list[Any] = [
        *health.routes,
        *openapi_route.routes,
        *sessions_api.routes,
        *push_api.routes,
        *stream.routes,
        *devices_api.routes,
        *pages.routes,
        (r".*", NotFoundHandler),
    ]
    return tornado.web.Application(
        routes,
        context=context,
        default_handler_class=NotFoundHandler,
        log_function=_log_request,
        # Tornado 6.6: refuse state-changing requests whose Origin is not our own (defence in
        # depth; bearer auth already stops CSRF).
        cross_origin_protection=True,
        websocket_ping_interval=30,
        # a bigger frame is refused with close code 1009 (message too big)
        websocket_max_message_size=MAX_FRAME_SIZE,
        websocket_ping_timeout=20,  # must be below the interval, or Tornado warns on every socket
        compress_response=False,
        serve_traceback=False,
        debug=False,
    )

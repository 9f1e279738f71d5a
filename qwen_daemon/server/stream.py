"""WebSocket ``/api/sessions/{id}/ws?after=N``: replay, then live events, then commands.

The first frame is a greeting ``{"type": "hello", "instance_id", "session", "last_seq"}``; then
every stored event with ``seq > after`` and, seamlessly, every new one (no gap, no duplicate: see
:meth:`EventLog.subscribe`). Event frames are the events themselves and always carry ``seq``;
control frames never do.

Clients may send ``{"type": "prompt", "text"}``, ``{"type": "cancel"}``,
``{"type": "permission", "request_id", "option_id"}`` and ``{"type": "ping"}``, each optionally
with an ``id`` echoed in the reply: ``{"type": "ack", "id", ...}`` or
``{"type": "error", "id", "error": {"code", "message"}}``. A bad frame gets an error frame and
the connection stays open.

A client that cannot keep up (too many unflushed frames) is disconnected rather than allowed to
grow the daemon's memory; it reconnects with its last ``seq`` and loses nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import tornado.web
from tornado.websocket import WebSocketClosedError

from qwen_daemon.errors import BadRequest, DaemonError, LimitReached
from qwen_daemon.server.base import BaseWebSocketHandler
from qwen_daemon.server.sessions_api import _ID, parse_after, permission_answer, prompt_text
from qwen_daemon.sessions.events import Event, Subscription
from qwen_daemon.sessions.session import Session

log = logging.getLogger(__name__)

#: Limits on open WebSockets (beyond them the handshake gets 429).
MAX_CLIENTS_PER_SESSION = 32
MAX_WEBSOCKETS = 256
#: Frames written but not yet flushed to the socket before a client counts as too slow.
MAX_UNFLUSHED = 20_000
CLOSE_TOO_SLOW = 4008
CLOSE_SESSION_CLOSED = 4000


class SessionStreamHandler(BaseWebSocketHandler):
    session: Session
    _after: int
    _sub: Subscription | None = None
    _unflushed = 0

    async def get(self, *args: Any, **kwargs: Any) -> None:
        # validate before the upgrade, so a bad id or cursor is a plain HTTP 404/400
        self.session = self.manager.get(args[0])
        self._after = parse_after(self.get_query_argument("after", None))
        if len(self.daemon.websockets) >= MAX_WEBSOCKETS:
            raise LimitReached(f"at most {MAX_WEBSOCKETS} WebSocket connections may be open")
        if self.session.events.subscriber_count >= MAX_CLIENTS_PER_SESSION:
            raise LimitReached(f"at most {MAX_CLIENTS_PER_SESSION} clients may follow one session")
        await super().get(*args, **kwargs)

    def open(self, *args: str, **kwargs: str) -> None:
        self._send_control(
            {
                "type": "hello",
                "instance_id": self.daemon.instance_id,
                "session": self.session.summary(),
                "last_seq": self.session.events.last_seq,
            }
        )
        replay, self._sub = self.session.events.subscribe(self._after, self._send_event, self._session_ended)
        for event in replay:
            self._send_event(event)

    def on_close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    # --- outgoing -----------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        if self._unflushed >= MAX_UNFLUSHED:
            return
        try:
            future = self.write_message(text)
        except WebSocketClosedError:
            return
        self._unflushed += 1
        future.add_done_callback(self._flushed)
        if self._unflushed >= MAX_UNFLUSHED:
            log.warning("closing a WebSocket on session %s: client too slow", self.session.id)
            self.close(CLOSE_TOO_SLOW, "client too slow; reconnect with ?after=<last seq>")

    def _flushed(self, future: Any) -> None:
        self._unflushed -= 1

    def _send_event(self, event: Event) -> None:
        self._write(event.json)

    def _send_control(self, frame: dict[str, Any]) -> None:
        self._write(json.dumps(frame, ensure_ascii=False, separators=(",", ":")))

    def _session_ended(self) -> None:
        self._sub = None
        self.close(CLOSE_SESSION_CLOSED, "session closed")

    # --- incoming -----------------------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        frame_id: Any = None
        try:
            try:
                frame = json.loads(message)
            except (ValueError, UnicodeDecodeError):
                raise BadRequest("frame is not valid JSON") from None
            if not isinstance(frame, dict):
                raise BadRequest("frame must be a JSON object")
            frame_id = frame.get("id")
            if frame_id is not None and not isinstance(frame_id, str | int):
                frame_id = None
                raise BadRequest("id must be a string or a number")
            reply = await self._dispatch(frame)
        except DaemonError as exc:
            error = {"type": "error", "error": {"code": exc.code, "message": exc.message}}
            if frame_id is not None:
                error["id"] = frame_id
            self._send_control(error)
            return
        reply["type"] = "ack"
        if frame_id is not None:
            reply["id"] = frame_id
        self._send_control(reply)

    async def _dispatch(self, frame: dict[str, Any]) -> dict[str, Any]:
        kind = frame.get("type")
        if kind == "prompt":
            return {"op": "prompt", "prompt_id": self.session.prompt(prompt_text(frame))}
        if kind == "cancel":
            await self.session.cancel()
            return {"op": "cancel"}
        if kind == "permission":
            request_id = frame.get("request_id")
            if not isinstance(request_id, str) or not request_id:
                raise BadRequest("field 'request_id' must be a non-empty string")
            option_id, answers = permission_answer(frame)
            self.session.answer_permission(request_id, option_id, answers)
            return {"op": "permission", "request_id": request_id, "option_id": option_id}
        if kind == "ping":
            return {"op": "pong", "last_seq": self.session.events.last_seq}
        if not isinstance(kind, str):
            raise BadRequest("frame needs a string field 'type'")
        raise BadRequest(f"unknown frame type {kind!r}; expected prompt, cancel, permission or ping")


routes: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    (rf"/api/sessions/{_ID}/ws", SessionStreamHandler),
]

"""WebSocket ``/api/sessions/{id}/ws?after=N``: replay, then live events. Read-only.

Messages and frames: a WebSocket message carries one or more *frames*, each one JSON object
on its own line (newline-delimited JSON: the frames joined with ``"\\n"``, no newline after the
last). A client splits every message on ``"\\n"`` and parses each piece; a frame never holds a raw
newline (JSON escapes one inside a string, and :mod:`qwen_daemon.jsontext` writes no whitespace
between tokens; :meth:`SessionStreamHandler._write` makes sure of it for text read back from the
store). A client sends one frame per message.

The first frame is a greeting ``{"type": "hello", "instance_id", "session", "last_seq"}``; then
every stored event with ``seq > after`` and, seamlessly, every new one (no gap, no duplicate: see
:meth:`EventLog.subscribe`). Event frames are the events themselves and always carry ``seq``;
control frames never do.

One command surface: everything that acts on a session (prompt, cancel, permission answers, mode)
is a REST request (``/api/openapi.json``), never a frame. A client sends only frames about the
connection itself: ``{"type": "visibility", "visible": bool}`` and ``{"type": "ping"}``, each
optionally with an ``id`` (string or number) echoed in the reply, ``{"type": "ack", "op":
"visibility", "visible"}`` or ``{"type": "ack", "op": "pong", "last_seq"}``. Any other frame (not
JSON, not an object, an unknown ``type``, a bad field) gets one answer,
``{"type": "error", "id"?, "error": {"code": "bad_request", "message"}}``, and the connection stays
open.

Visibility: a page says ``{"type": "visibility", "visible": true}`` when it is shown and
``false`` when it is hidden (``document.visibilityState``); while some WebSocket of a device (the
bearer token counts as one device) is open and visible on a session, no push notification about
that session goes to that device (``qwen_daemon.push.service``). A WebSocket starts *not*
visible: a page that has not said so yet gets the push, because a missed "needs your approval"
costs more than one notification too many; a page sends its state right after connecting.

While the session database cannot be written, the daemon sends an ``error`` frame with no
``seq`` and ``error.code`` ``storage_unavailable`` (at once to every client of a session whose
events are held, and after the replay to any client that connects meanwhile); the held events,
followed by the same message as an ``error`` event, arrive once a write succeeds.

A client that cannot keep up (too many unflushed bytes) is disconnected with close code 4008
rather than allowed to grow the daemon's memory; it reconnects with its last ``seq`` and loses
nothing.

Why several frames per message: Tornado's ``write_message`` costs a task (a coroutine wrapping
the write Future) and a ``send()`` per call; one call per event was measured to be the largest
cost of the relay. A store commit publishes a whole batch of events in one loop turn, and a
replay is thousands, so the frames queued during one turn go out in one ``write_message`` call:
one task and one ``send()`` per turn, whatever the number of events (that task costs ~4 µs
more than a bare stream write: +0.05 ms at the relay bench's 50-session median). A batch past
:data:`MAX_MESSAGE_CHARS` is cut into several messages, because common client libraries refuse
large messages (1 MiB for Python's ``websockets``). Only Tornado's public API is used
(``write_message``, its Future, ``close``): no hand-made RFC 6455 frames and no private
attribute, so a Tornado release cannot silently change the wire format or turn a check off.

The unflushed bytes are counted here from the Future ``write_message`` returns (added on write,
taken off when it resolves, which is once Tornado's stream has handed that message to the
kernel), not read from the stream's private buffer size.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import tornado.iostream
import tornado.web
import tornado.websocket

from qwen_daemon import jsontext
from qwen_daemon.errors import BadRequest, DaemonError, LimitReached
from qwen_daemon.server.base import BaseWebSocketHandler, parse_json
from qwen_daemon.server.errors import error_reply
from qwen_daemon.server.sessions_api import _ID, parse_after
from qwen_daemon.sessions.events import Event, Subscription
from qwen_daemon.sessions.session import Session

log = logging.getLogger(__name__)

#: Limits on open WebSockets (beyond them the handshake gets 429).
MAX_CLIENTS_PER_SESSION = 32
MAX_WEBSOCKETS = 256
#: Bytes written but not yet taken by the socket before a client counts as too slow.
MAX_UNFLUSHED_BYTES = 64 * 1024 * 1024
#: Frames queued in one loop turn go out in messages of at most this many characters, so at most
#: 1 MiB of UTF-8 (a single longer frame goes alone): what Python's ``websockets`` accepts by
#: default, and a tenth of Tornado's client limit.
MAX_MESSAGE_CHARS = 256 * 1024
CLOSE_TOO_SLOW = 4008
CLOSE_SESSION_CLOSED = 4000


class SessionStreamHandler(BaseWebSocketHandler):
    session: Session
    _after: int
    _sub: Subscription | None = None
    _outbox: list[str] | None = None
    #: bytes passed to ``write_message`` whose Future has not resolved yet (see the module doc)
    unflushed_bytes = 0
    #: the page is shown (its last ``visibility`` frame); see the module doc
    visible = False

    async def get(self, *args: Any, **kwargs: Any) -> None:
        # validate before the upgrade, so a bad id or cursor is a plain HTTP 404/400
        self.session = self.manager.get(args[0])
        self._after = parse_after(self.get_query_argument("after", None))
        if len(self.context.websockets) >= MAX_WEBSOCKETS:
            raise LimitReached(f"at most {MAX_WEBSOCKETS} WebSocket connections may be open")
        if self.session.events.subscriber_count >= MAX_CLIENTS_PER_SESSION:
            raise LimitReached(f"at most {MAX_CLIENTS_PER_SESSION} clients may follow one session")
        await super().get(*args, **kwargs)

    def open(self, *args: str, **kwargs: str) -> None:
        # Frames are already batched per loop turn (see _write); with Nagle on as well, a message
        # written while the previous one waits for its (delayed) ACK sat ~40 ms in the kernel.
        self.set_nodelay(True)
        self._send_control(
            {
                "type": "hello",
                "instance_id": self.context.instance_id,
                "session": self.session.summary(),
                "last_seq": self.session.events.last_seq,
            }
        )
        replay, self._sub = self.session.events.subscribe(self._after, self._send_event, self._session_ended)
        for event in replay:
            self._send_event(event)
        notice = self.manager.persist.notice()
        if notice is not None:  # commits fail now: what the clients already here were told
            self._write(notice)

    def on_close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    # --- outgoing -----------------------------------------------------------------------------

    def get_compression_options(self) -> None:
        return None  # no permessage-deflate: zlib work per message on the relay's hot path

    def _write(self, text: str) -> None:
        """Queue one frame; everything queued in this loop turn goes out in one message. The text
        is on one line: the daemon's JSON has no raw newline, and events read back from the store
        are put on one line as they are read (``persistence._stored_event``)."""
        if self._outbox is None:
            self._outbox = []
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(text)

    def _flush(self) -> None:
        texts, self._outbox = self._outbox or [], None
        conn = self.ws_connection
        if conn is None or conn.is_closing() or not texts:
            return
        if self.unflushed_bytes >= MAX_UNFLUSHED_BYTES:
            log.warning("closing a WebSocket on session %s: client too slow", self.session.id)
            self.close(CLOSE_TOO_SLOW, "client too slow; reconnect with ?after=<last seq>")
            return
        for batch in _messages(texts):
            # bytes of UTF-8 sent as a text message (``binary=False``): encoded once, here, so the
            # unflushed count below is exact
            data = "\n".join(batch).encode("utf-8")
            try:
                written = self.write_message(data)
            except (tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError):
                return  # on_close follows
            self.unflushed_bytes += len(data)
            written.add_done_callback(functools.partial(self._flushed, len(data)))

    def _flushed(self, size: int, future: asyncio.Future[None]) -> None:
        """A write's Future resolved: its bytes reached the kernel (or the connection closed)."""
        self.unflushed_bytes -= size
        _ignore_result(future)

    def _send_event(self, event: Event) -> None:
        self._write(event.json)

    def _send_control(self, frame: dict[str, Any]) -> None:
        self._write(jsontext.dumps(frame))

    def _session_ended(self) -> None:
        self._sub = None
        self.close(CLOSE_SESSION_CLOSED, "session closed")

    # --- incoming -----------------------------------------------------------------------------

    def on_message(self, message: str | bytes) -> None:
        frame_id: Any = None
        try:
            frame = parse_json(message, "the frame")
            if not isinstance(frame, dict):
                raise BadRequest("frame must be a JSON object")
            frame_id = frame.get("id")
            if frame_id is not None and not isinstance(frame_id, str | int):
                frame_id = None
                raise BadRequest("id must be a string or a number")
            reply = self._answer(frame)
        except DaemonError as exc:
            self._send_control(error_reply(exc).frame(frame_id))
            return
        reply["type"] = "ack"
        if frame_id is not None:
            reply["id"] = frame_id
        self._send_control(reply)

    def _answer(self, frame: dict[str, Any]) -> dict[str, Any]:
        kind = frame.get("type")
        if kind == "visibility":
            visible = frame.get("visible")
            if not isinstance(visible, bool):
                raise BadRequest("field 'visible' must be true or false")
            self.visible = visible
            return {"op": "visibility", "visible": visible}
        if kind == "ping":
            return {"op": "pong", "last_seq": self.session.events.last_seq}
        if not isinstance(kind, str):
            raise BadRequest("frame needs a string field 'type'")
        raise BadRequest(
            f"unknown frame type {kind!r}; expected visibility or ping "
            "(commands are REST requests: see /api/openapi.json)"
        )


def watching_devices(websockets: Iterable[object], session_id: str) -> set[str | None]:
    """The devices (None: the bearer token) with a visible WebSocket open on ``session_id``."""
    return {
        ws.device_id
        for ws in websockets
        if isinstance(ws, SessionStreamHandler) and ws.visible and ws.session.id == session_id
    }


def _messages(texts: list[str]) -> Iterator[list[str]]:
    """``texts`` in order, cut into runs of at most :data:`MAX_MESSAGE_CHARS` once joined."""
    if sum(map(len, texts)) + len(texts) <= MAX_MESSAGE_CHARS:  # live traffic, and short replays
        yield texts
        return
    run: list[str] = []
    size = 0
    for text in texts:
        if run and size + len(text) > MAX_MESSAGE_CHARS:
            yield run
            run, size = [], 0
        run.append(text)
        size += len(text) + 1
    if run:
        yield run


def _ignore_result(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # a closed stream is handled by on_close; do not log it as unretrieved


routes: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    (rf"/api/sessions/{_ID}/ws", SessionStreamHandler),
]

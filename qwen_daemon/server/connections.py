"""Open connections: a cap, deadlines for the head and the body, and room kept for the user.

Every TCP connection holds a file descriptor until it closes, and Tornado keeps one that sends
nothing for as long as its header timeout. Without a cap, any local process could open connections
and send nothing until the descriptors ran out (the soft limit is often 1,024, under systemd too):
``accept()`` then fails with EMFILE on every loop turn, which spins the loop at 100% CPU, logs a
traceback each time, and fails ``/health``, new sessions and the agents' pipes with it.

A cap alone is a lock-out, though (issue 14, finding 1): 512 sockets that send a head and then a
byte a minute held every slot, and the daemon refused the user. So a full server judges a newcomer
by its first bytes, read ahead without consuming them: one that carries the token or the login
cookie, or asks for ``/health``, gets in, and the *oldest connection that has not proved the
token* is closed to make room; any other newcomer is closed at once (one that has sent nothing
yet gets :data:`FIRST_BYTES_TIMEOUT` to start). A connection is trusted from its first
authenticated request (``Daemon.trust_connection``) and is then never closed to make room;
upgraded WebSockets are not HTTP connections any more and never count here (``stream.py`` caps
them). Only when every open connection is trusted is even the user refused. Over TLS the first
bytes cannot be read ahead, so there every newcomer makes room.

Why refuse rather than let every newcomer push out the oldest: an attacker reconnects at once, and
a connection let in costs the daemon its HTTP machinery, so 2,000 reconnecting sockets kept the
daemon busy and the user's connection waited behind ~1,500 of them in the kernel's accept queue
(``/health`` took up to seconds under load, ``bench/lockout.py``); a refusal costs an accept and a
close, so that queue is worked off in milliseconds.

The deadlines bound what each connection costs: no complete request head within
:data:`HEADER_TIMEOUT` (also the keep-alive idle time), or no complete body within
:data:`BODY_TIMEOUT`, and it is closed. Every request is judged as soon as its head arrives
(``bodies.py``): a token-less body is never kept, only read and dropped before its 401 so that the
answer is not lost to a reset. At start the soft descriptor limit is raised toward the hard one so
the caps, the agents' pipes and the database all fit.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import tornado.http1connection
import tornado.httpserver
import tornado.httputil
import tornado.ioloop
import tornado.iostream

log = logging.getLogger(__name__)

#: HTTP connections open at once (a browser uses about 6 per origin; the CLI one at a time)
MAX_CONNECTIONS = 512
#: seconds a connection may stay open without a full request head (also the keep-alive idle time)
HEADER_TIMEOUT = 60.0
#: seconds a request may take to send its whole body once its head has arrived
BODY_TIMEOUT = 60.0
#: largest request body read at all (handlers refuse more than theirs: JSON bodies 256 KiB)
MAX_BODY_SIZE = 8 * 1024 * 1024
#: connections the kernel may hold for us before we accept them (it caps this at somaxconn, often
#: 4,096): larger than one attacking process's sockets, so its reconnects do not fill the queue and
#: make the user's connection wait for a SYN retry (1 s, then 3 s)
LISTEN_BACKLOG = 4096
#: the soft RLIMIT_NOFILE asked for at start (never above the hard limit)
WANTED_FILES = 8192
#: seconds between two log lines about connections closed or refused for room
PRESSURE_LOG_INTERVAL = 60.0
#: bytes of a newcomer's request read ahead (not consumed) when the server is full
PEEK_BYTES = 16384
#: seconds a newcomer to a full server may take to send its first bytes
FIRST_BYTES_TIMEOUT = 2.0
#: newcomers to a full server waiting for their first bytes at once (beyond: the oldest is closed)
MAX_WAITING = 1024


def raise_file_limit(wanted: int = WANTED_FILES) -> int:
    """Raise the soft open-files limit toward ``wanted`` (never above the hard one); returns it.

    Raising the soft limit up to the hard one needs no privilege. Agents inherit it, which Node
    is fine with. Where the ``resource`` module is missing the limit is left alone.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
    return int(soft)


class CappedHTTPServer(tornado.httpserver.HTTPServer):
    """An HTTPServer with at most ``max_connections`` open, making room by closing the oldest
    connection that has not authenticated (see the module doc)."""

    max_connections = MAX_CONNECTIONS
    #: judges what a newcomer to a full server sent first (set by the Daemon): True when it earns
    #: room, i.e. carries the token or the login cookie, or asks for /health
    worth_room: Callable[[bytes], bool] | None = None
    #: newcomers closed because they were not worth room, or every open connection was trusted
    refused = 0
    #: token-less connections closed to make room for a newcomer
    evicted = 0
    _pressure_logged_at = -PRESSURE_LOG_INTERVAL

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        #: not yet authenticated, oldest first: the ones closed to make room
        self._untrusted: OrderedDict[tornado.iostream.IOStream, None] = OrderedDict()
        self._trusted: set[tornado.iostream.IOStream] = set()
        #: newcomers to a full server that have sent nothing yet, oldest first
        self._waiting: OrderedDict[tornado.iostream.IOStream, tuple[Any, asyncio.TimerHandle]] = OrderedDict()

    @property
    def open_connections(self) -> int:
        return len(self._untrusted) + len(self._trusted)

    def handle_stream(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        if self.open_connections < self.max_connections:
            self._untrusted[stream] = None
            super().handle_stream(stream, address)
        elif self.worth_room is None or isinstance(stream, tornado.iostream.SSLIOStream):
            self._make_room(stream, address)  # TLS: its first bytes cannot be read ahead
        else:
            self._judge(stream, address)

    def _judge(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        """Room for a newcomer to a full server only if its first bytes earn it (read ahead, left
        for Tornado to read again). Refusing costs little: no HTTP machinery is set up for it, so
        an attacker reconnecting at full speed keeps the daemon far less busy than one that is let
        in and then closed; and what it pushes ahead of the user's connection in the kernel's
        accept queue is worked off fast."""
        assert self.worth_room is not None
        try:
            head = stream.socket.recv(PEEK_BYTES, socket.MSG_PEEK)
        except BlockingIOError:  # nothing yet: wait a little for it, out of the HTTP machinery
            self._wait_for_first_bytes(stream, address)
            return
        except OSError:
            head = b""
        if head and self.worth_room(head):
            self._make_room(stream, address)
        else:
            self._refuse(stream, "not authenticated: refusing new ones")

    def _wait_for_first_bytes(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        if len(self._waiting) >= MAX_WAITING:
            oldest, (_address, timer) = self._waiting.popitem(last=False)
            self._stop_waiting(oldest, timer)
            self._refuse(oldest, "not authenticated: refusing new ones")
        io_loop = tornado.ioloop.IOLoop.current()
        io_loop.add_handler(stream.socket, lambda _fd, _events: self._first_bytes(stream), io_loop.READ)
        timer = asyncio.get_running_loop().call_later(FIRST_BYTES_TIMEOUT, self._first_bytes, stream)
        self._waiting[stream] = (address, timer)

    def _first_bytes(self, stream: tornado.iostream.IOStream) -> None:
        """They came, or the time is up (then the peek finds nothing, and it is refused)."""
        waiting = self._waiting.pop(stream, None)
        if waiting is None:  # already judged (the other of the two callbacks) or closed
            return
        address, timer = waiting
        self._stop_waiting(stream, timer)
        try:
            head = stream.socket.recv(PEEK_BYTES, socket.MSG_PEEK)
        except OSError:
            head = b""
        assert self.worth_room is not None
        if head and self.worth_room(head):
            self._make_room(stream, address)
        else:
            self._refuse(stream, "not authenticated: refusing new ones")

    def _stop_waiting(self, stream: tornado.iostream.IOStream, timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        tornado.ioloop.IOLoop.current().remove_handler(stream.socket)

    def _make_room(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        if self.open_connections >= self.max_connections:
            if not self._untrusted:
                self._refuse(stream, "every one has authenticated: refusing new ones")
                return
            oldest, _ = self._untrusted.popitem(last=False)
            oldest.close()
            self.evicted += 1
            self._log_pressure("closing the oldest not yet authenticated to make room")
        self._untrusted[stream] = None
        super().handle_stream(stream, address)

    def _refuse(self, stream: tornado.iostream.IOStream, why: str) -> None:
        stream.close()
        self.refused += 1
        self._log_pressure(why)

    async def close_all_connections(self) -> None:
        for stream, (_address, timer) in list(self._waiting.items()):
            self._stop_waiting(stream, timer)
            stream.close()
        self._waiting.clear()
        await super().close_all_connections()

    def trust(self, request: tornado.httputil.HTTPServerRequest) -> None:
        """``request`` proved the token: its connection is never closed to make room."""
        server_conn = request.server_connection
        if isinstance(server_conn, tornado.http1connection.HTTP1ServerConnection):
            stream = server_conn.stream
            if stream in self._untrusted:  # still open, and not trusted yet
                del self._untrusted[stream]
                self._trusted.add(stream)

    def on_close(self, server_conn: object) -> None:
        if isinstance(server_conn, tornado.http1connection.HTTP1ServerConnection):
            self._untrusted.pop(server_conn.stream, None)
            self._trusted.discard(server_conn.stream)
        super().on_close(server_conn)

    def _log_pressure(self, action: str) -> None:
        """One line a minute at most: under attack this happens thousands of times a second."""
        now = time.monotonic()
        if now - self._pressure_logged_at >= PRESSURE_LOG_INTERVAL:
            self._pressure_logged_at = now
            log.warning(
                "%d connections are open, the most allowed: %s (so far %d closed for room, %d refused)",
                self.open_connections,
                action,
                self.evicted,
                self.refused,
            )

"""Open connections: a cap, a deadline for the first request, and descriptors enough for both.

Every TCP connection holds a file descriptor until it closes, and Tornado keeps one that sends
nothing for as long as its header timeout. Without a cap, any local process could open connections
and send nothing until the descriptors ran out (the soft limit is often 1,024, under systemd too):
``accept()`` then fails with EMFILE on every loop turn, which spins the loop at 100% CPU, logs a
traceback each time, and fails ``/health``, new sessions and the agents' pipes with it.

So: connections beyond :data:`MAX_CONNECTIONS` are closed as soon as they are accepted (upgraded
WebSockets no longer count here; they have their own cap in ``stream.py``), a connection that sends
no complete request head within :data:`HEADER_TIMEOUT` is closed, and at start the soft descriptor
limit is raised toward the hard one so the caps, the agents' pipes and the database all fit.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import tornado.httpserver
import tornado.iostream

log = logging.getLogger(__name__)

#: HTTP connections open at once (a browser uses about 6 per origin; the CLI one at a time)
MAX_CONNECTIONS = 512
#: seconds a connection may stay open without a full request head (also the keep-alive idle time)
HEADER_TIMEOUT = 60.0
#: the soft RLIMIT_NOFILE asked for at start (never above the hard limit)
WANTED_FILES = 8192
#: seconds between two log lines about refused connections
REFUSAL_LOG_INTERVAL = 60.0


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
    """An HTTPServer that closes connections beyond ``max_connections`` as soon as they arrive."""

    max_connections = MAX_CONNECTIONS
    open_connections = 0
    refused = 0
    _refusals_logged_at = -REFUSAL_LOG_INTERVAL

    def handle_stream(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        if self.open_connections >= self.max_connections:
            stream.close()
            self.refused += 1
            now = time.monotonic()
            if now - self._refusals_logged_at >= REFUSAL_LOG_INTERVAL:
                self._refusals_logged_at = now
                log.warning(
                    "%d connections are open, the most allowed: refusing new ones (%d so far); "
                    "idle ones close after %.0f s",
                    self.open_connections,
                    self.refused,
                    HEADER_TIMEOUT,
                )
            return
        self.open_connections += 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        self.open_connections -= 1
        super().on_close(server_conn)

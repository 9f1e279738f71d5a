"""Bounded logging: nothing a client without the token sends can fill the disk through the log.

Issue 14, finding 2: every refused request was logged with its whole path (up to ~64 KB) and the
standalone log file never rotated, so 500 token-less requests with 60 KB paths added 30 MB in under
two seconds, and a page on another origin could do the same from the user's own browser. Three
limits, one per cause:

* :func:`clip` cuts client-controlled text (paths, methods, Host and Origin headers) to
  :data:`MAX_FIELD` characters with a marker saying how much was cut, and escapes control
  characters, so one line can neither be 64 KB long nor forge a second line or drive a terminal.
* :class:`RefusalLimiter` lets refusals through at a bounded rate (a token bucket: a burst of
  :data:`REFUSAL_BURST`, then :data:`REFUSAL_RATE` a second) and says what it dropped in one
  "N more refused requests suppressed" line when logging resumes. It filters the *handler*, so the
  journal gets the same bound as the file. Refusals are records logged with ``extra=REFUSED``, plus
  Tornado's own notes on malformed or stalled connections (``tornado.general`` below WARNING),
  which quote what the client sent and are caused by nobody but the client.
* :class:`PrivateRotatingFileHandler` rotates the standalone log file by size (``log_max_bytes``,
  ``log_backups``), so whatever does get through, the files never hold more than about
  ``log_max_bytes * (log_backups + 1)`` bytes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from qwen_daemon.private_files import open_private

if TYPE_CHECKING:  # the CLI imports this module (via daemonize) and need not load Tornado
    from tornado.httputil import HTTPServerRequest

#: Characters of one client-controlled field kept in a log line (before escaping).
MAX_FIELD = 200
#: Characters kept of a message quoting client text whole (Tornado's notes, error messages).
MAX_MESSAGE = 1000
#: Refusals logged back to back before the rate limit applies.
REFUSAL_BURST = 20
#: Refusals logged per second once the burst is spent.
REFUSAL_RATE = 1.0
#: ``extra=`` for a record that reports a request refused to someone without the token.
REFUSED: Mapping[str, object] = {"refused": True}

#: C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clip(text: str, limit: int = MAX_FIELD) -> str:
    """``text`` fit for one log line: at most ``limit`` characters, then how many were cut;
    control characters written as ``\\xNN`` so no client can break or forge a line."""
    cut = len(text) - limit
    head = _CONTROL.sub(_escape, text[:limit])
    return f"{head}...[{cut} more chars]" if cut > 0 else head


def request_line(request: HTTPServerRequest) -> str:
    """``METHOD /path`` for a log line: clipped, escaped, and without the query string (a
    browser URL carries ``?token=``)."""
    return f"{clip(request.method or '', 16)} {clip(request.path)}"


def is_refusal(record: logging.LogRecord) -> bool:
    """Whether ``record`` reports something any client without the token can cause at will."""
    if getattr(record, "refused", False):
        return True
    return record.name == "tornado.general" and record.levelno < logging.WARNING


class RefusalLimiter(logging.Filter):
    """A handler filter passing refusals at a bounded rate; other records always pass.

    Dropped refusals are counted; the count is written as one line of its own, just before the next
    refusal let through, or before any other record once the bucket has a token again (so a flood
    that has ended is still reported by the next ordinary line).
    """

    def __init__(
        self,
        handler: logging.Handler,
        burst: int = REFUSAL_BURST,
        per_second: float = REFUSAL_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.handler = handler
        self.burst = burst
        self.per_second = per_second
        self._now = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()  # records may come from threads (the store, agents' readers)
        #: refusals dropped since the last "suppressed" line
        self.suppressed = 0
        handler.addFilter(self)

    def _refill(self) -> None:
        now = self._now()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.per_second)
        self._stamp = now

    def filter(self, record: logging.LogRecord) -> bool:
        refused = is_refusal(record)
        with self._lock:
            self._refill()
            if refused:
                if self._tokens < 1:
                    self.suppressed += 1
                    return False
                self._tokens -= 1
            elif self.suppressed and self._tokens >= 1:
                self._tokens -= 1
            else:  # nothing to report, or no token to report it with yet
                return True
            pending, self.suppressed = self.suppressed, 0
        if pending:  # outside the lock: handle() runs this filter again (and passes the line)
            self.handler.handle(_suppressed_record(record, pending))
        if refused:  # Tornado's notes quote raw input; our own refusals are clipped already
            # a message that cannot be formatted is left for the handler to report, as it would be
            with contextlib.suppress(Exception):
                record.msg, record.args = clip(record.getMessage(), MAX_MESSAGE), None
        return True


def _suppressed_record(like: logging.LogRecord, count: int) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": __name__,
            "levelno": logging.WARNING,
            "levelname": logging.getLevelName(logging.WARNING),
            "msg": "%d more refused requests suppressed (logged at most %d at once, then %g a second)",
            "args": (count, REFUSAL_BURST, REFUSAL_RATE),
            "created": like.created,
            "msecs": like.msecs,
        }
    )


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A log file rotating by size, created 0600 whatever the umask (renaming keeps the mode, so
    every backup stays 0600), never through a symlink.

    With ``stdio=True`` (the detached daemon, whose stdout and stderr are the log file) descriptors
    1 and 2 are moved to the new file at each rotation: otherwise a stray write (a warning printed
    by a library, ``Exception ignored in``) would keep growing a rotated, or deleted, file unseen.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int, *, stdio: bool = False) -> None:
        self.stdio = stdio
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")

    def _open(self) -> io.TextIOWrapper:
        # the same checked open as every other file the daemon owns (no link, ours, a regular file)
        fd = open_private(Path(self.baseFilename), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def doRollover(self) -> None:
        super().doRollover()
        if self.stdio and self.stream is not None:
            for fd in (1, 2):
                os.dup2(self.stream.fileno(), fd)


def bounded_handler(log_file: Path | None = None, max_bytes: int = 0, backups: int = 0) -> logging.Handler:
    """The daemon's one log handler: stderr (the journal, or launchd's file) or, standalone, the
    rotating ``log_file``; either way with the refusal rate limit."""
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler()
    else:
        handler = PrivateRotatingFileHandler(log_file, max_bytes, backups, stdio=True)
    RefusalLimiter(handler)
    return handler

"""The orphan guard: agent process groups never outlive the daemon, however it dies.

Agents run in their own process groups so a stop can signal everything they started. That same
isolation means a daemon killed with ``kill -9`` would leave them running. Two defences:

* a watchman: a tiny ``sh`` process in its own group that holds the read end of a pipe whose
  only write end the daemon owns. When the daemon dies for any reason the pipe reaches EOF and
  the watchman SIGKILLs every group listed in the groups file, then exits. A clean stop empties
  the file first, so the watchman then kills nothing.
* a sweep at start: groups left in the file by a daemon whose watchman also died are killed.

The groups file (in the 0700 runtime dir) lists live agent process-group ids, one per line,
rewritten atomically on every change.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from pathlib import Path

from qwen_daemon.private_files import write_private_file

log = logging.getLogger(__name__)

# dash's kill rejects "--"; a negative pid after the signal name is read as a group everywhere
_WATCHMAN = (
    "while IFS= read -r _; do :; done; "
    'while IFS= read -r g; do [ -n "$g" ] && kill -KILL "-$g" 2>/dev/null; done < "$1"; exit 0'
)


def _kill_groups(groups: set[int]) -> int:
    killed = 0
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
            killed += 1
    return killed


class OrphanGuard:
    """Tracks live agent groups in a file and keeps a watchman ready to kill them."""

    def __init__(self, groups_file: Path) -> None:
        self.groups_file = groups_file
        self.groups: set[int] = set()
        self._watchman: subprocess.Popen[bytes] | None = None

    def sweep(self) -> int:
        """Kill groups a previous daemon left behind; returns how many were still there."""
        try:
            text = self.groups_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        stale = {int(line) for line in text.split() if line.isdigit() and int(line) > 1}
        killed = _kill_groups(stale)
        if killed:
            log.warning("killed %d agent process group(s) left by a previous daemon", killed)
        self._write()
        return killed

    def _write(self) -> None:
        write_private_file(self.groups_file, "".join(f"{g}\n" for g in sorted(self.groups)), durable=False)

    def _ensure_watchman(self) -> None:
        if self._watchman is not None and self._watchman.poll() is None:
            return
        self._watchman = subprocess.Popen(
            ["/bin/sh", "-c", _WATCHMAN, "qwen-daemon-watchman", str(self.groups_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a kill of an agent group, or of ours, must not reach it
            close_fds=True,
        )

    def add(self, pgid: int) -> None:
        self.groups.add(pgid)
        self._write()
        self._ensure_watchman()

    def discard(self, pgid: int) -> None:
        if pgid in self.groups:
            self.groups.discard(pgid)
            self._write()

    def close(self) -> None:
        """Clean stop: kill any group still listed, then let the watchman go with nothing to do."""
        _kill_groups(self.groups)
        self.groups.clear()
        self._write()
        watchman, self._watchman = self._watchman, None
        if watchman is not None:
            assert watchman.stdin is not None
            watchman.stdin.close()
            try:
                watchman.wait(timeout=5)
            except subprocess.TimeoutExpired:
                watchman.kill()
                watchman.wait()

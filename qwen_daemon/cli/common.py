"""What every CLI command shares: the exit codes, the two ways to print, asking the running daemon.

Exit codes follow LSB where they apply: 0 success/running, 1 failure, 2 bad usage or
configuration, 3 not running, 4 state unknown (a process is there but does not answer).

Standard library only (and the CLI's own stdlib modules): the fast paths (``status``, ``url``,
``sessions``, ``stop``) import neither Tornado nor the ACP library.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from qwen_daemon.client import ClientError, probe_health, request_json
from qwen_daemon.config import Paths
from qwen_daemon.daemon_files import read_token
from qwen_daemon.discovery import DiscoveryInfo, pid_alive, read_discovery

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_UNKNOWN = 4


def print_err(message: str) -> None:
    """A message on stderr, prefixed with the command's name (errors, warnings, notes)."""
    print(f"qwen-daemon: {message}", file=sys.stderr)


def say(line: str) -> None:
    """A progress line on stdout, flushed at once: a supervisor's step may take seconds."""
    print(line, flush=True)


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` exited within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)  # polling another process's exit: there is nothing to await
    return True


def running(paths: Paths) -> tuple[DiscoveryInfo | None, dict[str, Any] | None]:
    """(the discovery file's daemon or None, its /health answer or None when it does not answer)."""
    info = read_discovery(paths)
    return info, (probe_health(info) if info is not None else None)


class Refused(Exception):
    """The command cannot go on; ``code`` is its exit status (the reason is printed already)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def call_daemon(
    paths: Paths, method: str, path: str, body: object | None, *, timeout: float
) -> tuple[int, Any]:
    """One call to the running daemon's API: ``(status, answer)``, the status for the caller to
    judge. When there is no answer at all it prints why and raises :class:`Refused`: 3 when no
    daemon is running, 1 when it cannot be reached."""
    info, health = running(paths)
    if info is None or health is None:
        print_err("qwen-daemon is not running")
        raise Refused(EXIT_NOT_RUNNING)
    try:
        return request_json(info.url + path, method, read_token(paths), body, timeout=timeout)
    except ClientError as exc:
        print_err(str(exc))
        raise Refused(EXIT_FAIL) from None


def session_list(info: DiscoveryInfo, paths: Paths, *, archived: bool = False) -> list[dict[str, Any]]:
    """The running daemon's sessions (or archived ones); :class:`ClientError` if it cannot say."""
    url = info.url + ("api/sessions?archived=true" if archived else "api/sessions")
    _status, payload = request_json(url, token=read_token(paths), timeout=5.0)
    sessions = payload.get("sessions") if isinstance(payload, dict) else payload
    if not isinstance(sessions, list):
        raise ClientError("unexpected answer from GET /api/sessions")
    return [s for s in sessions if isinstance(s, dict)]

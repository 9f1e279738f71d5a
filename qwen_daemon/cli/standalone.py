"""Stopping the daemon the CLI started itself (no supervisor owns it), and the flags it was
started with.

Apart from :mod:`~qwen_daemon.cli.lifecycle` because the supervisor commands
(:mod:`~qwen_daemon.cli.service`) need them too: a daemon found running outside systemd/launchd is
stopped this way before the supervisor starts its own, and started again with these flags if that
hand-over fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from typing import Any

from qwen_daemon.cli.common import EXIT_FAIL, EXIT_OK, print_err, wait_gone
from qwen_daemon.client import ClientError, probe_health, request_json
from qwen_daemon.config import ConfigError, Paths
from qwen_daemon.daemon_files import read_token
from qwen_daemon.discovery import (
    DiscoveryInfo,
    looks_like_daemon,
    read_discovery,
    read_pidfile,
    remove_discovery,
    starting_pid,
)
from qwen_daemon.private_files import read_private

#: ``stop``: how long to wait after SIGTERM, and after SIGKILL (after POST /api/stop: STOP_GRACE)
TERM_GRACE = 10.0
KILL_GRACE = 5.0


def start_flags(paths: Paths) -> dict[str, Any]:
    """The flags the last standalone ``start`` was given ({} if none are recorded)."""
    try:  # an unsafe file raises UnsafePath: its flags may name a command to run
        flags = json.loads(read_private(paths.start_flags_file))
    except (OSError, ValueError):
        return {}
    return flags if isinstance(flags, dict) else {}


def stop_standalone(paths: Paths, timeout: float) -> int:
    """Stop the daemon the discovery file names: POST /api/stop, then SIGTERM, then SIGKILL."""
    info = read_discovery(paths)
    if info is None:
        pid = starting_pid(paths)
        if pid is None:
            print("qwen-daemon is not running")
            return EXIT_OK
        # between taking the PID lock and publishing daemon.json: nothing to ask over HTTP yet
        print_err(f"qwen-daemon (pid {pid}) is still starting; sending SIGTERM (it stops in order)")
        if not _terminate(pid):
            return EXIT_FAIL
        print("qwen-daemon stopped")
        return EXIT_OK
    try:
        token = read_token(paths)
    except ConfigError as exc:  # a link or a foreign file at the token: stop it by signal instead
        print_err(str(exc))
        token = None
    try:
        request_json(info.url + "api/stop", "POST", token=token, timeout=5.0)
        asked = True
    except ClientError as exc:  # e.g. the token file is gone: nothing to wait for, signal at once
        print_err(f"graceful stop request failed: {exc}")
        asked = False
    if not wait_gone(info.pid, timeout if asked else 0.0):
        # Before signalling, make sure the PID is still that daemon and not a reused PID.
        if not _is_ours(info, paths):
            print_err(
                f"pid {info.pid} did not stop and does not answer as qwen-daemon instance "
                f"{info.instance_id}; not sending signals to it"
            )
            return EXIT_FAIL
        why = f"did not stop in {timeout:.0f} s" if asked else "was not asked"
        print_err(f"daemon (pid {info.pid}) {why}; sending SIGTERM (it stops in order)")
        if not _terminate(info.pid):
            return EXIT_FAIL
        remove_discovery(paths, info.instance_id)
    print("qwen-daemon stopped")
    return EXIT_OK


def _terminate(pid: int) -> bool:
    """SIGTERM, then SIGKILL if it is ignored; False if the process is still there after both."""
    _signal(pid, signal.SIGTERM)
    if not wait_gone(pid, TERM_GRACE):
        print_err(f"daemon (pid {pid}) ignored SIGTERM; sending SIGKILL")
        _signal(pid, signal.SIGKILL)
        if not wait_gone(pid, KILL_GRACE):
            print_err(f"pid {pid} is still there after SIGKILL")
            return False
    return True


def _is_ours(info: DiscoveryInfo, paths: Paths) -> bool:
    """Is ``info.pid`` still that daemon? /health must confirm the instance id; failing that (a
    hung daemon), the PID lock file must name the same PID and the process must look like us."""
    if probe_health(info) is not None:
        return True
    return read_pidfile(paths) == info.pid and looks_like_daemon(info.pid)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)

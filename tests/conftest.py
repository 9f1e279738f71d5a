"""Shared fixtures. The one rule: no test ever touches the real home or the real runtime dir.

Every test runs with HOME and every XDG_* directory under its own ``tmp_path`` (the runtime dir
0700, as systemd would make it), with no QWEN_DAEMON_* setting and no supervisor variables
inherited from the shell that ran pytest. Subprocesses inherit the same environment.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import looks_like_daemon
from tests.support.smallfs import small_fs  # noqa: F401 (a fixture for the whole suite)

REPO_ROOT = Path(__file__).resolve().parent.parent

_SCRUB_PREFIXES = ("QWEN_DAEMON_", "LISTEN_")
_SCRUB_NAMES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "INVOCATION_ID", "JOURNAL_STREAM")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point HOME and XDG_* at fresh directories under ``tmp_path``; yields the fake home."""
    home = tmp_path / "home"
    home.mkdir()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    runtime.chmod(0o700)
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_DATA_HOME", "data"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    for name in list(os.environ):
        if name.startswith(_SCRUB_PREFIXES) or name in _SCRUB_NAMES:
            monkeypatch.delenv(name, raising=False)
    # Subprocesses (`python -m qwen_daemon`) must import this checkout.
    pythonpath = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO_ROOT), pythonpath) if p))
    yield home


@pytest.fixture
def paths(isolated_home: Path) -> Paths:
    """The daemon's locations inside the isolated home."""
    return Paths.from_platform()


def _kill_leftover(pid: int) -> None:
    if not looks_like_daemon(pid):
        return
    for signum, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while looks_like_daemon(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not looks_like_daemon(pid):
            return


@pytest.fixture
def daemon_reaper(paths: Paths) -> Iterator[list[int]]:
    """Kill any daemon a test left running in its isolated home (plus PIDs the test appends)."""
    extra: list[int] = []
    yield extra
    pids = set(extra)
    for path in (paths.pid_file, paths.discovery_file):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if path.suffix == ".json":
            try:
                pid = json.loads(text).get("pid")
            except (ValueError, AttributeError):
                continue
        else:
            pid = int(text.strip()) if text.strip().isdigit() else None
        if isinstance(pid, int) and pid > 0:
            pids.add(pid)
    for pid in pids:
        _kill_leftover(pid)

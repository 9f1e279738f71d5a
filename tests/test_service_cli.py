"""The service-related commands where no supervisor owns the daemon: ``restart`` and ``logs`` of a
standalone daemon, ``service status`` without a manager, and which log viewer each owner picks."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from qwen_daemon.service import systemd
from tests.support.probe import cli

pytestmark = pytest.mark.usefixtures("daemon_reaper")


@pytest.fixture
def configured(paths: Paths) -> Paths:
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text('port = 0\nagent_cmd = "python3 -c pass"\n', encoding="utf-8")
    return paths


def test_restart_keeps_the_flags_start_was_given(paths: Paths) -> None:
    """It came back with the config file's settings instead: another port, the real agent."""
    from tests.support.daemon import FAKE_AGENT

    agent = f"{sys.executable} {FAKE_AGENT}"
    assert cli("start", "--port", "0", "--agent-cmd", agent, "--max-sessions", "7").returncode == 0
    res = cli("restart")
    assert res.returncode == 0, res.stderr
    assert "--agent-cmd" in res.stdout and "--max-sessions" in res.stdout
    info = read_discovery(paths)
    assert info is not None and info.port != 7861
    assert paths.log_file.read_text().count(f"agent: {agent}") == 2, "both starts ran the fake agent"
    assert cli("stop").returncode == 0


def test_restart_replaces_a_standalone_daemon_and_logs_show_it(configured: Paths) -> None:
    assert cli("start").returncode == 0
    first = read_discovery(configured)
    assert first is not None
    res = cli("restart")
    assert res.returncode == 0, res.stderr
    assert "qwen-daemon stopped" in res.stdout and "Open in a browser" in res.stdout
    second = read_discovery(configured)
    assert second is not None and second.pid != first.pid

    res = cli("logs", "-n", "500")
    assert res.returncode == 0, res.stderr
    assert f"(pid {first.pid})" in res.stdout and f"(pid {second.pid})" in res.stdout
    token = configured.token_file.read_text(encoding="utf-8").strip()
    assert token not in res.stdout

    follow = subprocess.Popen(
        [sys.executable, "-m", "qwen_daemon", "logs", "-f", "-n", "1"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert follow.stdout is not None
        _read_until(follow.stdout.fileno(), b"\n", 20)  # the last line: tail is following now
        assert cli("stop").returncode == 0  # the daemon logs its shutdown: -f must print it
        assert b"shutting down" in _read_until(follow.stdout.fileno(), b"shutting down", 20)
    finally:
        follow.terminate()
        follow.wait(timeout=10)
        if follow.stdout is not None:
            follow.stdout.close()


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    seen = b""
    while needle not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} did not appear within {timeout:.0f} s; got {seen!r}")
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
    return seen


def test_logs_before_any_run_say_where_they_would_be(paths: Paths) -> None:
    res = cli("logs")
    assert res.returncode == 1
    assert str(paths.log_file) in res.stderr


def test_service_status_without_a_user_manager(isolated_home: Path) -> None:
    # conftest's XDG_RUNTIME_DIR has no systemd/private socket: no manager can be asked
    res = cli("service", "status", "--manager", "systemd")
    assert res.returncode == 3
    assert "no user manager reachable" in res.stdout
    res = cli("service", "install", "--manager", "systemd")
    assert res.returncode == 1 and "no systemd user manager is reachable" in res.stderr
    assert not (isolated_home / "config" / "systemd").exists()


def test_journal_is_preferred_where_one_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    journalctl = tmp_path / "journalctl"
    journalctl.write_text("#!/bin/sh\n")
    journalctl.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = systemd.Systemd()
    monkeypatch.setattr(systemd, "journal_available", lambda: True)
    assert backend.log_command(follow=True, lines=20) == [
        "journalctl",
        "--user",
        "-u",
        "qwen-daemon.service",
        "-n",
        "20",
        "-f",
    ]
    monkeypatch.setattr(systemd, "journal_available", lambda: False)
    assert backend.log_command(follow=False, lines=20) is None  # then: the log file

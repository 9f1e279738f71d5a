"""The LaunchAgent path, on any OS: a fake ``launchctl`` first on PATH (tests/support/fake_launchctl.py)
records the calls and runs the agent's ProgramArguments the way launchd would.

The proof for macOS that can be had here: install/start/stop/restart/uninstall issue exactly the
expected ``launchctl`` verbs on ``gui/<uid>``, and the plist they load really runs the daemon.
"""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import pid_alive, read_discovery
from qwen_daemon.service import templates
from qwen_daemon.service.base import service_path
from tests.support.daemon import FAKE_AGENT
from tests.support.probe import cli, poll

pytestmark = [pytest.mark.usefixtures("daemon_reaper"), pytest.mark.timeout(120)]

LABEL = "io.github.qwen-daemon"
BREW_LABEL = "homebrew.mxcl.qwen-daemon"
FAKE = Path(__file__).resolve().parent / "support" / "fake_launchctl.py"


@dataclass
class Launchctl:
    state_dir: Path
    home: Path

    @property
    def domain(self) -> str:
        return f"gui/{os.getuid()}"

    def calls(self) -> list[list[str]]:
        path = self.state_dir / "calls.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def changes(self) -> list[list[str]]:
        """Every call but the read-only ``print``."""
        return [c for c in self.calls() if c[0] != "print"]

    def plist(self, label: str = LABEL) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{label}.plist"


@pytest.fixture
def launchctl(
    tmp_path: Path, isolated_home: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> Launchctl:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    shim = bin_dir / "launchctl"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} "$@"\n')
    shim.chmod(0o755)
    state = tmp_path / "launchd-state"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LAUNCHCTL_DIR", str(state))
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(
        f"port = 0\nagent_cmd = {json.dumps(shlex.join([sys.executable, FAKE_AGENT]))}\n", encoding="utf-8"
    )
    return Launchctl(state, isolated_home)


def _pid(paths: Paths) -> int:
    info = read_discovery(paths)
    assert info is not None
    return info.pid


def test_launchctl_calls_for_install_start_stop_restart_uninstall(launchctl: Launchctl, paths: Paths) -> None:
    d, plist = launchctl.domain, str(launchctl.plist())
    res = cli("service", "install", "--manager", "launchd", "--now")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"ran: launchctl bootstrap {d} {plist}" in res.stdout
    assert "managed by launchd" in res.stdout
    doc = plistlib.loads(launchctl.plist().read_bytes())
    assert doc["ProgramArguments"] == [
        str(Path(sys.executable).parent / "qwen-daemon"),
        "start",
        "--foreground",
    ]
    assert doc["EnvironmentVariables"]["PATH"] == service_path(os.environ)  # the user's, deduplicated
    first = _pid(paths)

    res = cli("status")
    assert res.returncode == 0
    assert f"managed by launchd: running, main pid {first}, restarts 0" in res.stdout
    assert json.loads(cli("status", "--json").stdout)["supervisor"]["label"] == LABEL
    res = cli("start")
    assert res.returncode == 1 and "already running" in res.stderr
    res = cli("service", "install", "--manager", "launchd", "--now")  # idempotent: nothing reloaded
    assert res.returncode == 0 and "is up to date" in res.stdout

    res = cli("restart")
    assert res.returncode == 0, res.stderr
    second = _pid(paths)
    assert second != first and not pid_alive(first)

    res = cli("stop")
    assert res.returncode == 0, res.stderr
    assert "qwen-daemon stopped (launchd: not loaded" in res.stdout
    assert not pid_alive(second) and read_discovery(paths) is None

    res = cli("start")
    assert res.returncode == 0, res.stderr
    third = _pid(paths)
    res = cli("logs", "-n", "200")
    assert res.returncode == 0, res.stderr
    assert f"listening on http://127.0.0.1:{read_discovery(paths).port}/ (pid {third})" in res.stdout  # type: ignore[union-attr]

    res = cli("service", "uninstall")  # the installed plist tells which manager
    assert res.returncode == 0, res.stderr
    assert not launchctl.plist().exists() and not pid_alive(third)
    assert "kept its log" in res.stdout
    assert cli("status").stdout.splitlines()[-1].startswith("managed by: standalone")

    assert launchctl.changes() == [
        ["bootstrap", d, plist],
        ["kickstart", "-k", f"{d}/{LABEL}"],
        ["bootout", f"{d}/{LABEL}"],
        ["bootstrap", d, plist],
        ["bootout", f"{d}/{LABEL}"],
    ]


def test_install_without_now_only_writes_the_agent(launchctl: Launchctl, paths: Paths) -> None:
    res = cli("service", "install", "--manager", "launchd")
    assert res.returncode == 0, res.stderr
    assert "starts when you log in" in res.stdout
    assert launchctl.plist().exists() and launchctl.changes() == []
    assert (launchctl.home / "Library" / "Logs" / "qwen-daemon").is_dir()
    res = cli("service", "install", "--manager", "launchd", "--socket")
    assert res.returncode == 1 and "socket activation is a systemd feature" in res.stderr
    res = cli("status")
    assert res.returncode == 3 and "managed by launchd: not loaded" in res.stdout
    res = cli("service", "uninstall", "--manager", "launchd")
    assert res.returncode == 0 and not launchctl.plist().exists()
    assert launchctl.changes() == []


def test_a_homebrew_agent_is_the_owner_too(launchctl: Launchctl, paths: Paths) -> None:
    brew = launchctl.plist(BREW_LABEL)
    brew.parent.mkdir(parents=True)
    log = launchctl.home / "brew.log"
    argv = (str(Path(sys.executable).parent / "qwen-daemon"), "start", "--foreground")
    brew.write_text(templates.render_plist(BREW_LABEL, argv, os.environ["PATH"], log), encoding="utf-8")

    res = cli("start")  # brew services' agent is loaded, not a second, self-daemonized copy started
    assert res.returncode == 0, res.stderr
    assert f"ran: launchctl bootstrap {launchctl.domain} {brew}" in res.stdout
    assert poll(lambda: read_discovery(paths), 10, "the daemon")
    res = cli("service", "install", "--manager", "launchd")
    assert res.returncode == 1 and "brew services" in res.stderr
    res = cli("stop")
    assert res.returncode == 0, res.stderr
    assert launchctl.changes()[-1] == ["bootout", f"{launchctl.domain}/{BREW_LABEL}"]
    assert brew.exists()  # Homebrew's file stays Homebrew's


def test_no_gui_domain_refuses_before_stopping_the_running_daemon(
    launchctl: Launchctl, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over ssh, with nobody logged in at the Mac, there is no gui/<uid> domain to load an agent
    into: `install --now` says so and the standalone daemon keeps running, untouched."""
    assert cli("start").returncode == 0
    before = _pid(paths)
    monkeypatch.setenv("FAKE_LAUNCHCTL_NO_GUI", "1")
    res = cli("service", "install", "--manager", "launchd", "--now")
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"launchd's {launchctl.domain} domain is not reachable" in res.stderr
    assert f"nothing was changed: qwen-daemon (pid {before}) keeps running" in res.stderr
    assert _pid(paths) == before and pid_alive(before)
    assert not launchctl.plist().exists() and launchctl.changes() == []
    assert cli("status").returncode == 0

"""``service install --now`` while a standalone daemon runs: never leave the user with nothing.

Every prerequisite is checked before the running daemon is touched (a reachable user manager, a
writable unit directory, an agent the service can find), so a refusal leaves the very same
process serving; and a hand-over that fails after the stop brings the standalone daemon back,
with the flags it was started with, and names what failed. The user manager is a real, private
one (tests/support/usermanager.py) wherever one is needed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import looks_like_daemon, pid_alive, read_discovery
from tests.support.daemon import FAKE_AGENT
from tests.support.probe import cli, poll
from tests.support.usermanager import SERVICE, UserManager, need_user_manager, user_manager

pytestmark = pytest.mark.timeout(150)

FAKE = shlex.join([sys.executable, FAKE_AGENT])


def _answering_pid(m: UserManager) -> int | None:
    health = m.health()
    return int(health["pid"]) if health else None


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[UserManager]:
    need_user_manager()
    with user_manager(tmp_path / "wum") as m:
        m.configure(port=0, agent_cmd=FAKE)
        try:
            yield m
        finally:  # the standalone daemon runs outside the manager: stopping it is ours to do
            pid = _answering_pid(m)
            m.cli("stop", timeout=60)
            if pid is not None and looks_like_daemon(pid):
                os.kill(pid, signal.SIGKILL)


def _standalone(m: UserManager, *flags: str, path: str | None = None) -> int:
    """``qwen-daemon start`` before any unit exists: a self-daemonized daemon; its pid."""
    res = m.cli("start", *flags, path=path)
    assert res.returncode == 0, res.stderr
    pid = _answering_pid(m)
    assert pid is not None
    assert "managed by: standalone" in m.cli("status").stdout
    return pid


def _refused(res: subprocess.CompletedProcess[str], pid: int) -> None:
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"nothing was changed: qwen-daemon (pid {pid}) keeps running" in res.stderr
    assert "stopping" not in res.stdout  # the running daemon was never asked to stop


@pytest.mark.usefixtures("daemon_reaper")
def test_no_user_manager_refuses_before_stopping_the_running_daemon(paths: Paths) -> None:
    """The issue's case: no systemd user manager (conftest's runtime dir has none)."""
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(f"port = 0\nagent_cmd = {json.dumps(FAKE)}\n", encoding="utf-8")
    assert cli("start").returncode == 0
    before = read_discovery(paths)
    assert before is not None

    res = cli("service", "install", "--now", "--manager", "systemd")
    _refused(res, before.pid)
    assert "no systemd user manager is reachable" in res.stderr
    after = read_discovery(paths)
    assert after is not None and after.pid == before.pid and after.instance_id == before.instance_id
    assert cli("status").returncode == 0  # and it still answers


def test_an_unwritable_unit_directory_refuses_first(manager: UserManager) -> None:
    pid = _standalone(manager)
    manager.unit_dir.parent.mkdir(parents=True, exist_ok=True)
    if manager.unit_dir.is_dir():
        manager.unit_dir.rmdir()
    manager.unit_dir.write_text("a file where the unit directory belongs\n", encoding="utf-8")

    res = manager.cli("service", "install", "--now")
    _refused(res, pid)
    assert f"the unit cannot be written: {manager.unit_dir} is not a directory" in res.stderr
    assert "no systemd user manager" not in res.stderr  # the manager itself was fine
    assert _answering_pid(manager) == pid
    assert manager.show()["LoadState"] == "not-found"


def test_an_agent_the_service_cannot_find_refuses_first(manager: UserManager, tmp_path: Path) -> None:
    """Started from a shell whose PATH finds the agent, installed from one whose PATH does not:
    the unit would carry the second PATH, and its daemon would refuse to start, again and again."""
    name = "qwen-daemon-test-agent"
    bin_dir = tmp_path / "agent-bin"
    bin_dir.mkdir()
    (bin_dir / name).write_text(f'#!/bin/sh\nexec {FAKE} "$@"\n', encoding="utf-8")
    (bin_dir / name).chmod(0o755)
    assert shutil.which(name) is None
    manager.configure(port=0, agent_cmd=f"{name} --acp")
    pid = _standalone(manager, path=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    res = manager.cli("service", "install", "--now")
    _refused(res, pid)
    assert "the service would not find its agent" in res.stderr
    assert f"{name!r} was not found on PATH" in res.stderr
    assert _answering_pid(manager) == pid
    assert not (manager.unit_dir / SERVICE).exists()


def test_a_failed_hand_over_starts_the_standalone_daemon_again(manager: UserManager) -> None:
    """Every check passes, but the service's start fails (here a pre-start step that exits 1):
    the standalone daemon comes back with the flags it had, the unit this command wrote is gone
    again (so the standalone daemon is the one owner), and the error names the failure."""
    manager.dropin("[Service]\nExecStartPre=/bin/false\n", name="60-broken.conf")
    manager.systemctl("daemon-reload")
    pid = _standalone(manager, "--max-sessions", "7")

    res = manager.cli("service", "install", "--now")
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"stopping the copy started outside systemd (pid {pid})" in res.stdout
    failed = "handing the daemon over to systemd failed: `systemctl --user start qwen-daemon.service` failed"
    assert failed in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("qwen-daemon: not handed over to systemd (`systemctl --user start")
    assert last.endswith("qwen-daemon runs standalone again, as before")
    assert "Open in a browser" in res.stdout

    again = poll(lambda: _answering_pid(manager), 30, "the standalone daemon to answer again")
    assert again != pid and not pid_alive(pid)
    status = manager.cli("status")
    assert status.returncode == 0 and "managed by: standalone" in status.stdout, status.stdout
    assert not (manager.unit_dir / SERVICE).exists()
    assert manager.show()["LoadState"] == "not-found"
    # the flags it was started with: recorded again, so a later `restart` keeps them too
    flags = json.loads((manager.runtime_dir / "start-flags.json").read_text(encoding="utf-8"))
    assert flags == {"max_sessions": "7"}
    res = manager.cli("restart")
    assert res.returncode == 0 and "--max-sessions" in res.stdout, res.stdout + res.stderr


def test_a_service_that_never_answers_gives_the_daemon_back(manager: UserManager) -> None:
    """The service starts (a plain process: nothing waits for READY=1) but no daemon answers within
    start_timeout: its process is stopped and the standalone daemon runs again."""
    manager.configure(port=0, agent_cmd=FAKE, start_timeout=8)
    manager.dropin("[Service]\nType=simple\nExecStart=\nExecStart=/bin/sleep 600\n", name="60-silent.conf")
    manager.systemctl("daemon-reload")
    pid = _standalone(manager)

    res = manager.cli("service", "install", "--now")
    assert res.returncode == 1, res.stdout + res.stderr
    failure = "systemd started the service but the daemon did not answer within 8 s"
    assert f"handing the daemon over to systemd failed: {failure}" in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"qwen-daemon: not handed over to systemd ({failure}); qwen-daemon runs standalone again, as before"
    )
    again = poll(lambda: _answering_pid(manager), 30, "the standalone daemon to answer again")
    assert again != pid
    props = manager.show()
    assert (props["LoadState"], props["MainPID"]) == ("not-found", "0")  # no sleep 600 left behind

"""The unit under a real ``systemd --user`` manager (one private manager per test).

What a user relies on: ``service install --now`` leaves the daemon active only once it is
serving; systemd restarts it after a crash (``kill -9``) and when it hangs (watchdog); a stop
stays stopped; the CLI goes through systemctl and never starts a second copy; the unit's PATH
finds the agent; socket activation starts it on the first connection; uninstall leaves nothing.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qwen_daemon.agents.registry import pinned_qwen_cli
from qwen_daemon.discovery import pid_alive
from tests.support.daemon import FAKE_AGENT
from tests.support.fake_openai import running_fake_openai
from tests.support.probe import get_json, poll
from tests.support.qwen import prepare_qwen_home
from tests.support.usermanager import (
    SERVICE,
    SOCKET,
    UserManager,
    need_user_manager,
    user_manager,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[UserManager]:
    need_user_manager()
    with user_manager(tmp_path / "wum") as m:
        # Any free port (several tests may run while a real daemon holds 7861) and the fake agent.
        m.configure(port=0, agent_cmd=shlex.join([sys.executable, FAKE_AGENT]))
        yield m


def _ok(res: subprocess.CompletedProcess[str], m: UserManager) -> None:
    assert res.returncode == 0, res.stdout + res.stderr + m.log_tail()


def _install_now(m: UserManager, *extra: str) -> float:
    began = time.monotonic()
    res = m.cli("service", "install", "--now", *extra)
    elapsed = time.monotonic() - began
    _ok(res, m)
    return elapsed


def _main_pid(m: UserManager) -> int:
    return int(m.show()["MainPID"])


def _restarted(m: UserManager, old_pid: int) -> dict[str, object] | None:
    """The new daemon's /health once systemd runs a new main process and it answers."""
    props = m.show()
    if props["ActiveState"] != "active" or int(props["MainPID"]) in (0, old_pid):
        return None
    health = m.health()
    return health if health and health["pid"] == int(props["MainPID"]) else None


def test_install_now_is_active_and_serving_and_reported_as_systemd(
    manager: UserManager, record_property: Callable[[str, object], None]
) -> None:
    elapsed = _install_now(manager)
    record_property("install_now_to_active_s", round(elapsed, 3))
    props = manager.show()
    # The moment `install --now` returns, systemd says active and the daemon already answers.
    assert (props["ActiveState"], props["SubState"]) == ("active", "running")
    health = manager.health()
    assert health is not None, manager.log_tail()
    assert health["pid"] == int(props["MainPID"])
    assert props["StatusText"].startswith("Listening on http://127.0.0.1:")
    assert props["FragmentPath"] == str(manager.unit_dir / SERVICE)
    unit = (manager.unit_dir / SERVICE).read_text(encoding="utf-8")
    assert f"ExecStart={Path(sys.executable).parent / 'qwen-daemon'} start --foreground" in unit
    link = manager.unit_dir / "default.target.wants" / SERVICE
    assert link.is_symlink() and link.resolve() == manager.unit_dir / SERVICE
    assert props["UnitFileState"] == "enabled"

    res = manager.cli("status")
    assert res.returncode == 0, res.stderr
    assert f"managed by systemd: active (running), main pid {health['pid']}, restarts 0" in res.stdout
    res = manager.cli("status", "--json")
    assert '"manager": "systemd"' in res.stdout

    # One owner: a second start is refused, nothing new runs; a second install changes nothing.
    res = manager.cli("start")
    assert res.returncode == 1 and "already running" in res.stderr and "managed by systemd" in res.stderr
    res = manager.cli("service", "install", "--now")
    assert res.returncode == 0 and "is up to date" in res.stdout, res.stderr
    assert _main_pid(manager) == health["pid"]
    assert manager.health() == health


def test_unit_is_active_only_after_ready(manager: UserManager) -> None:
    _ok(manager.cli("service", "install"), manager)
    assert manager.show()["ActiveState"] == "inactive"
    # Hold the daemon's process before it can be ready: a sitecustomize that waits for a gate file
    # runs first thing in the interpreter. (The daemon itself refuses anything but a regular file
    # as config.toml now, so a FIFO there can no longer hold it.)
    hold = manager.work / "hold"
    hold.mkdir()
    gate = manager.work / "gate"
    (hold / "sitecustomize.py").write_text(
        f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.02)\n",
        encoding="utf-8",
    )
    path = os.pathsep.join(p for p in (str(hold), os.environ.get("PYTHONPATH", "")) if p)
    manager.dropin(f"[Service]\nEnvironment=PYTHONPATH={path}\n")
    manager.systemctl("daemon-reload")
    manager.systemctl("start", "--no-block", SERVICE)
    pid = poll(lambda: _main_pid(manager), 30, "the main process to be spawned")
    props = manager.show()
    assert (props["ActiveState"], props["SubState"]) == ("activating", "start"), props
    assert manager.health() is None
    gate.touch()
    poll(lambda: manager.show()["ActiveState"] == "active", 30, "READY=1")
    health = manager.health()
    assert health is not None and health["pid"] == pid


def test_kill_9_is_restarted_with_a_new_pid(manager: UserManager) -> None:
    _install_now(manager)
    old = _main_pid(manager)
    os.kill(old, signal.SIGKILL)
    health = poll(lambda: _restarted(manager, old), 30, "systemd to restart the killed daemon")
    assert health["pid"] != old
    assert manager.show()["NRestarts"] == "1"
    res = manager.cli("status")
    assert res.returncode == 0 and "restarts 1" in res.stdout, res.stdout


def test_frozen_daemon_is_restarted_by_the_watchdog(manager: UserManager) -> None:
    manager.dropin("[Service]\nWatchdogSec=3\n", name="60-watchdog.conf")
    manager.systemctl("daemon-reload")
    _install_now(manager)
    old = _main_pid(manager)
    began = time.monotonic()
    os.kill(old, signal.SIGSTOP)
    try:
        health = poll(lambda: _restarted(manager, old), 30, "the watchdog to restart the frozen daemon")
    finally:
        if pid_alive(old):
            os.kill(old, signal.SIGCONT)
    assert health["pid"] != old
    assert time.monotonic() - began < 15
    props = manager.show()
    assert props["NRestarts"] == "1"
    # faulthandler: the aborted daemon left its Python stack in the log (the journal, normally).
    assert "Fatal Python error: Aborted" in manager.daemon_log.read_text(encoding="utf-8")


def test_stop_stays_stopped_and_start_restart_go_through_systemctl(manager: UserManager) -> None:
    _install_now(manager)
    first = _main_pid(manager)

    res = manager.cli("stop")
    assert res.returncode == 0, res.stderr
    assert "ran: systemctl --user stop qwen-daemon.service" in res.stdout
    assert "inactive (dead)" in res.stdout
    assert not pid_alive(first)
    # Not restarted: no restart is pending ("auto-restart" would show at once), and it stays down
    # for many times the test's RestartSec (100 ms).
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        props = manager.show()
        assert (props["ActiveState"], props["SubState"], props["MainPID"]) == ("inactive", "dead", "0"), props
        time.sleep(0.1)
    assert props["Result"] == "success" and props["NRestarts"] == "0"
    assert manager.cli("status").returncode == 3

    res = manager.cli("start")
    assert res.returncode == 0, res.stderr
    assert "ran: systemctl --user start qwen-daemon.service" in res.stdout
    assert "managed by systemd" in res.stdout
    second = _main_pid(manager)
    assert manager.health()["pid"] == second  # type: ignore[index]

    res = manager.cli("restart")
    assert res.returncode == 0, res.stderr
    assert "ran: systemctl --user restart qwen-daemon.service" in res.stdout
    third = _main_pid(manager)
    assert third not in (0, second) and not pid_alive(second)
    assert manager.health()["pid"] == third  # type: ignore[index]
    # Settings belong in config.toml under a supervisor: flags would be silently lost.
    res = manager.cli("start", "--port", "1234")
    assert res.returncode == 2 and "--port" in res.stderr


def test_install_hands_a_standalone_daemon_over_to_systemd(manager: UserManager) -> None:
    res = manager.cli("start")  # nothing installed yet: a self-daemonized, standalone daemon
    assert res.returncode == 0, res.stderr
    standalone = manager.health()
    assert standalone is not None
    res = manager.cli("status")
    assert "managed by: standalone" in res.stdout
    _install_now(manager)
    assert not pid_alive(int(standalone["pid"]))
    health = manager.health()
    assert health is not None and health["pid"] == _main_pid(manager) != standalone["pid"]


def test_uninstall_leaves_nothing_behind(manager: UserManager) -> None:
    port = _free_port()
    manager.configure(port=port, agent_cmd=shlex.join([sys.executable, FAKE_AGENT]))
    _install_now(manager, "--socket")
    before = {p for p in manager.home.rglob("*") if "systemd" in p.parts}
    assert before, "install wrote nothing"
    res = manager.cli("service", "uninstall")
    assert res.returncode == 0, res.stderr
    assert "ran: systemctl --user disable --now qwen-daemon.socket qwen-daemon.service" in res.stdout
    leftovers = sorted(str(p) for p in manager.unit_dir.rglob("*") if "qwen-daemon" in p.name)
    assert leftovers == []
    for unit in (SERVICE, SOCKET):
        assert manager.show(unit)["LoadState"] == "not-found"
    assert manager.health() is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    res = manager.cli("status")
    assert res.returncode == 3 and "managed by: standalone" in res.stdout
    res = manager.cli("service", "uninstall")  # idempotent
    assert res.returncode == 0 and "was not installed" in res.stdout


def test_agent_is_found_through_the_units_path(manager: UserManager, tmp_path: Path) -> None:
    name = "qwen-daemon-test-agent"
    only_for_the_unit = tmp_path / "unit-bin"
    only_for_the_unit.mkdir()
    agent = only_for_the_unit / name
    agent.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(FAKE_AGENT)} "$@"\n')
    agent.chmod(0o755)
    assert shutil.which(name) is None  # not on the PATH of the tests (nor the manager's)
    manager.configure(port=0, agent_cmd=f"{name} --acp")
    # `service install` copies the PATH of the shell that runs it into the unit.
    res = manager.cli(
        "service", "install", "--now", path=f"{only_for_the_unit}{os.pathsep}{os.environ['PATH']}"
    )
    _ok(res, manager)
    unit = (manager.unit_dir / SERVICE).read_text(encoding="utf-8")
    assert f"Environment=PATH={only_for_the_unit}:" in unit

    url, token = manager.discovery()["url"], manager.token()  # type: ignore[index]
    session = get_json(url + "api/sessions", token=token, body={"cwd": str(tmp_path)}, timeout=30)

    def settled() -> str | None:
        state = get_json(f"{url}api/sessions/{session['id']}", token=token)["state"]
        return state if state in ("idle", "failed", "closed") else None

    assert poll(settled, 30, "the session to settle") == "idle", manager.log_tail()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_socket_activation_starts_the_daemon_on_first_connect(manager: UserManager) -> None:
    port = _free_port()
    manager.configure(port=port, agent_cmd=shlex.join([sys.executable, FAKE_AGENT]))
    res = manager.cli("service", "install", "--socket", "--now")
    _ok(res, manager)
    assert f"starts on the first visit to http://127.0.0.1:{port}/" in res.stdout
    assert (manager.show(SOCKET)["ActiveState"], manager.show()["ActiveState"]) == ("active", "inactive")
    assert (manager.unit_dir / "sockets.target.wants" / SOCKET).is_symlink()

    health = get_json(f"http://127.0.0.1:{port}/health", timeout=30)  # the first visit
    props = manager.show()
    assert props["ActiveState"] == "active" and health["pid"] == int(props["MainPID"])
    assert manager.discovery()["port"] == port  # type: ignore[index]
    assert "socket(s) passed by the service manager" in manager.daemon_log.read_text(encoding="utf-8")

    # stop takes the socket down too: otherwise the next request would start it again
    res = manager.cli("stop")
    assert res.returncode == 0, res.stderr
    assert manager.show(SOCKET)["ActiveState"] == "inactive"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.qwen
@pytest.mark.timeout(180)
def test_real_qwen_code_runs_under_the_units_hardening(manager: UserManager, tmp_path: Path) -> None:
    """Node's JIT, its sockets and its child processes survive NoNewPrivileges, the syscall filter
    and the address-family list: the pinned Qwen Code, found through the unit's PATH (node),
    answers a prompt from the fake OpenAI server."""
    if not pinned_qwen_cli().is_file():
        pytest.fail(f"the pinned Qwen Code is not installed at {pinned_qwen_cli()}; run `make install`")
    workspace = tmp_path / "project"
    workspace.mkdir()
    with running_fake_openai() as llm:
        env = prepare_qwen_home(manager.home, llm.base_url)
        keep = (
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "OPENAI_MODEL",
            "QWEN_CODE_DISABLE_PRECONNECT",
            "NO_BROWSER",
        )
        manager.dropin(
            "[Service]\n" + "".join(f"Environment={k}={env[k]}\n" for k in keep), name="70-llm.conf"
        )
        manager.configure(port=0)  # no agent_cmd: the daemon finds the pinned Qwen Code itself
        _install_now(manager)
        url, token = manager.discovery()["url"], manager.token()  # type: ignore[index]
        session = get_json(url + "api/sessions", token=token, body={"cwd": str(workspace)}, timeout=90)
        llm.queue_text("Hello from inside the unit.")
        get_json(f"{url}api/sessions/{session['id']}/prompt", token=token, body={"text": "hi"}, timeout=30)

        def turn_text() -> str | None:
            events = get_json(f"{url}api/sessions/{session['id']}/events?after=0", token=token)["events"]
            if not any(e["type"] == "turn_ended" for e in events):
                return None
            return "".join(e["text"] for e in events if e["type"] == "agent_message_chunk")

        assert poll(turn_text, 90, "the agent's reply") == "Hello from inside the unit.", manager.log_tail()

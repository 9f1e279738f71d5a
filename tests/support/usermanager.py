"""A private, throw-away ``systemd --user`` manager per test, via shared/tools/with-user-manager.sh.

The script runs the manager in its own cgroup and mount namespace with HOME and XDG_* under a
work directory, then runs a command beside it; here that command just holds the manager open
until the test closes its stdin. ``systemctl --user`` reaches the manager from outside through
``$XDG_RUNTIME_DIR/systemd/private``, so the test and its CLI subprocesses only need the same
HOME/XDG_* values. There is no journal, so a runtime drop-in sends the daemon's output to a file.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.probe import get_json
from tests.support.system import SHARED, need, need_root, need_tool

WITH_USER_MANAGER = SHARED / "tools" / "with-user-manager.sh"
SERVICE = "qwen-daemon.service"
SOCKET = "qwen-daemon.socket"


def need_user_manager() -> None:
    need_root()
    need(WITH_USER_MANAGER.is_file(), f"{WITH_USER_MANAGER} not found (shared/ sits beside the repository)")
    need(
        Path("/lib/systemd/systemd").exists(),
        "no systemd binary (/lib/systemd/systemd) to run a user manager",
    )
    need_tool("systemctl", "unshare")


class UserManager:
    """One running user manager; ``env`` is the environment its services and our CLI share."""

    def __init__(self, work: Path, proc: subprocess.Popen[str]) -> None:
        self.work = work
        self.proc = proc
        home = work / "home"
        self.env = {
            **os.environ,
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(work / "run"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
        }
        self.home = home
        self.unit_dir = home / ".config" / "systemd" / "user"
        self.config_dir = home / ".config" / "qwen-daemon"
        self.runtime_dir = work / "run" / "qwen-daemon"
        self.daemon_log = work / "daemon.log"

    # --- systemd ------------------------------------------------------------------------------

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["systemctl", "--user", *args], env=self.env, capture_output=True, text=True, timeout=90
        )
        if check and res.returncode != 0:
            raise AssertionError(f"systemctl --user {' '.join(args)}: {res.stderr}{self.log_tail()}")
        return res

    def show(self, unit: str = SERVICE) -> dict[str, str]:
        out = self.systemctl("show", unit).stdout
        return dict(line.partition("=")[::2] for line in out.splitlines())

    def dropin(self, text: str, unit: str = SERVICE, name: str = "50-test.conf") -> None:
        """A runtime drop-in (``systemctl --runtime edit``): test-only tuning, outside ~/.config."""
        path = self.work / "run" / "systemd" / "user" / f"{unit}.d" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    # --- the daemon ---------------------------------------------------------------------------

    def configure(self, **settings: object) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        (self.config_dir / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def cli(
        self, *args: str, path: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if path is not None:
            env["PATH"] = path
        return subprocess.run(
            [sys.executable, "-m", "qwen_daemon", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def discovery(self) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads((self.runtime_dir / "daemon.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc

    def health(self) -> dict[str, Any] | None:
        """``/health`` of the daemon the discovery file names, or None when nothing answers."""
        doc = self.discovery()
        if doc is None:
            return None
        try:
            health: dict[str, Any] = get_json(doc["url"] + "health", timeout=2)
        except OSError:
            return None
        return health

    def token(self) -> str:
        return (self.config_dir / "token").read_text(encoding="utf-8").strip()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.daemon_log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "\n(no daemon log)"
        return "\n--- daemon log ---\n" + "\n".join(text.splitlines()[-lines:])


@contextmanager
def user_manager(work: Path) -> Iterator[UserManager]:
    """Start a manager under ``work`` (removed with it); stop it and everything it ran afterwards."""
    hold = f"{shlex.quote(sys.executable)} -c 'import sys; print(\"ready\", flush=True); sys.stdin.read()'"
    proc = subprocess.Popen(
        [str(WITH_USER_MANAGER), str(work), "sh", "-c", hold],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            _out, err = proc.communicate(timeout=30)
            raise AssertionError(f"the user manager did not come up: {line!r} {err}")
        manager = UserManager(work, proc)
        # Output to a file (no journal here); quick restarts keep the suite short.
        manager.dropin(
            f"[Service]\nStandardOutput=append:{manager.daemon_log}\nStandardError=inherit\nRestartSec=100ms\n",
            name="10-test-output.conf",
        )
        manager.systemctl("daemon-reload")
        yield manager
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()

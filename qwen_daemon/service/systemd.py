"""The systemd user manager as the daemon's owner: install, wrap ``systemctl --user``, read status.

"Installed" means the user manager can load ``qwen-daemon.service`` — whether ``service install``
wrote it to ``~/.config/systemd/user/`` or a package put it in ``/usr/lib/systemd/user/``. From
then on the CLI starts and stops through systemctl only, so there is never a self-daemonized
copy beside the supervised one.

The manager is asked only when it can answer: ``systemctl`` on PATH and the manager's private
socket in ``$XDG_RUNTIME_DIR``. Without that (no systemd, an ssh session without a user
manager, the tests' isolated runtime dir) the daemon is standalone and nothing is spawned.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Mapping
from pathlib import Path

from qwen_daemon.service.base import (
    InstallRequest,
    Say,
    ServiceError,
    Supervisor,
    SupervisorStatus,
    run_tool,
    unwritable,
    write_if_changed,
)

SERVICE = "qwen-daemon.service"
SOCKET = "qwen-daemon.socket"
_PROPS = (
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "MainPID",
    "NRestarts",
    "FragmentPath",
    "Result",
    "StatusText",
)
#: systemctl start waits for READY=1; the unit's TimeoutStartSec is 60 s.
START_TIMEOUT = 90.0
#: systemctl stop waits for the daemon to stop its agents; TimeoutStopSec is 45 s.
STOP_TIMEOUT = 90.0
QUICK_TIMEOUT = 30.0
NO_MANAGER = (
    "no systemd user manager is reachable (`systemctl --user` needs one, and "
    "XDG_RUNTIME_DIR must point at its runtime directory); use `qwen-daemon start` instead"
)


class Systemd(Supervisor):
    """``systemctl --user`` for one user; paths follow that user's XDG variables."""

    name = "systemd"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        config_home = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
        self.unit_dir = Path(config_home) / "systemd" / "user"
        self._runtime_dir = env.get("XDG_RUNTIME_DIR", "")
        self._user = _user_name()
        self._cache: dict[str, dict[str, str]] = {}

    # --- queries ------------------------------------------------------------------------------

    def available(self) -> bool:
        return (
            shutil.which("systemctl") is not None
            and bool(self._runtime_dir)
            and Path(self._runtime_dir, "systemd", "private").exists()
        )

    def _ctl(
        self, *args: str, say: Say | None = None, timeout: float = QUICK_TIMEOUT, check: bool = True
    ) -> str:
        self._cache.clear()
        return run_tool(["systemctl", "--user", *args], timeout, say, check).stdout

    def show(self, unit: str) -> dict[str, str]:
        """Selected properties of ``unit`` (``LoadState=not-found`` when systemd has no such unit)."""
        if unit not in self._cache:
            out = run_tool(
                ["systemctl", "--user", "show", unit, *(f"--property={p}" for p in _PROPS)], QUICK_TIMEOUT
            ).stdout
            self._cache[unit] = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
        return self._cache[unit]

    def _loaded(self, unit: str) -> bool:
        return self.show(unit).get("LoadState") == "loaded"

    def installed(self) -> bool:
        return self.available() and self._loaded(SERVICE)

    def status(self) -> SupervisorStatus:
        if not self.available():
            return SupervisorStatus(self.name, False, False, "no user manager reachable")
        props = self.show(SERVICE)
        load = props.get("LoadState", "unknown")
        if load != "loaded":
            return SupervisorStatus(self.name, False, False, f"not installed ({load})")
        active = props.get("ActiveState", "unknown")
        pid = int(props.get("MainPID", "0") or 0)
        restarts = props.get("NRestarts", "")
        extra = {"result": props.get("Result", "")}
        if props.get("StatusText"):
            extra["status_text"] = props["StatusText"]
        if self._loaded(SOCKET):
            sock = self.show(SOCKET)
            extra["socket"] = f"{sock.get('ActiveState')} ({sock.get('SubState')})"
        return SupervisorStatus(
            manager=self.name,
            installed=True,
            active=active in ("active", "activating", "reloading", "deactivating"),
            state=f"{active} ({props.get('SubState', '?')})",
            main_pid=pid or None,
            restarts=int(restarts) if restarts.isdigit() else None,
            unit_path=props.get("FragmentPath") or None,
            enabled=props.get("UnitFileState") or None,
            extra=extra,
        )

    # --- install / uninstall ------------------------------------------------------------------

    def preflight(self, request: InstallRequest) -> list[str]:
        problems = []
        if not self.available():
            problems.append(NO_MANAGER)
        else:
            try:  # its socket may outlive it: ask it something
                run_tool(["systemctl", "--user", "show", "--property=Version"], QUICK_TIMEOUT)
            except ServiceError as exc:
                problems.append(f"the systemd user manager does not answer: {exc}")
        problem = unwritable(self.unit_dir)
        if problem is not None:
            problems.append(f"the unit cannot be written: {problem}")
        return problems

    def install(self, request: InstallRequest, say: Say) -> None:
        from qwen_daemon.service import templates  # rendering is only for install

        try:
            files = {SERVICE: templates.render_unit(request.argv, request.path)}
            if request.socket:
                files[SOCKET] = templates.render_socket(request.host, request.port)
        except templates.TemplateError as exc:
            raise ServiceError(str(exc)) from None
        if request.dry_run:
            for name, text in files.items():
                say(f"# would write {self.unit_dir / name}\n{text}")
            return
        if not self.available():
            raise ServiceError(NO_MANAGER)
        changed = False
        for name, text in files.items():
            path = self.unit_dir / name
            if write_if_changed(path, text):
                say(f"wrote {path}")
                changed = True
            else:
                say(f"{path} is up to date")
        stale_socket = self.unit_dir / SOCKET
        if not request.socket and stale_socket.exists():
            self._ctl("disable", "--now", SOCKET, say=say, check=False)
            stale_socket.unlink()
            say(f"removed {stale_socket} (socket activation not requested)")
        self._ctl("daemon-reload", say=say)
        units = list(files)
        self._ctl("enable", *units, say=say)
        say(f"enabled {', '.join(units)}: it starts when you log in (default.target)")
        if request.now:
            self._start_now(request.socket, changed, say)
        self._linger_hint(say)

    def _start_now(self, socket: bool, changed: bool, say: Say) -> None:
        was_active = self.show(SERVICE).get("ActiveState") == "active"
        if not socket:
            self._ctl(
                "restart" if was_active and changed else "start", SERVICE, say=say, timeout=START_TIMEOUT
            )
            return
        if was_active and self.show(SOCKET).get("ActiveState") != "active":
            self._ctl("stop", SERVICE, say=say, timeout=STOP_TIMEOUT)  # free the port for the socket
        self._ctl("start", SOCKET, say=say, timeout=START_TIMEOUT)
        if was_active:
            self._ctl("restart" if changed else "start", SERVICE, say=say, timeout=START_TIMEOUT)
        else:
            say("the daemon starts on the first connection to its address")

    def _linger_hint(self, say: Say) -> None:
        if self._user and Path("/var/lib/systemd/linger", self._user).exists():
            say(f"lingering is enabled for {self._user}: the daemon keeps running after you log out")
        else:
            say(
                "to keep it running after you log out (and start it at boot): "
                f"loginctl enable-linger {self._user or '$USER'}"
            )

    def uninstall(self, say: Say) -> None:
        ours = [self.unit_dir / name for name in (SOCKET, SERVICE)]
        present = [p for p in ours if p.exists() or p.is_symlink()]
        if self.available():
            loaded = [u for u in (SOCKET, SERVICE) if self._loaded(u)]
            if loaded:
                self._ctl("disable", "--now", *loaded, say=say, timeout=STOP_TIMEOUT)
        for path in present:
            path.unlink()
            say(f"removed {path}")
        # Enable symlinks left by a manager that was not running (disable does this otherwise).
        for link in [
            *self.unit_dir.glob("*.wants/qwen-daemon.*"),
            *self.unit_dir.glob("*.requires/qwen-daemon.*"),
        ]:
            if link.is_symlink():
                link.unlink()
                say(f"removed {link}")
        if self.available():
            self._ctl("daemon-reload", say=say)
            self._ctl("reset-failed", SERVICE, check=False)
            remaining = self.show(SERVICE)
            if remaining.get("LoadState") == "loaded":
                say(
                    f"a packaged unit remains at {remaining.get('FragmentPath')} "
                    f"({remaining.get('UnitFileState')}); remove the package to drop it"
                )
        if not present:
            say("qwen-daemon was not installed in " + str(self.unit_dir))

    # --- control ------------------------------------------------------------------------------

    def _units(self) -> list[str]:
        return [SOCKET, SERVICE] if self._loaded(SOCKET) else [SERVICE]

    def start(self, say: Say) -> None:
        self._ctl("start", *self._units(), say=say, timeout=START_TIMEOUT)

    def stop(self, say: Say) -> None:
        # The socket too: otherwise the next browser request would start the daemon again.
        self._ctl("stop", *self._units(), say=say, timeout=STOP_TIMEOUT)

    def restart(self, say: Say) -> None:
        self._ctl("restart", SERVICE, say=say, timeout=START_TIMEOUT)

    def log_command(self, follow: bool, lines: int) -> list[str] | None:
        if shutil.which("journalctl") is None or not journal_available():
            return None
        return ["journalctl", "--user", "-u", SERVICE, "-n", str(lines), *(["-f"] if follow else [])]


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return ""


def journal_available() -> bool:
    """Is a journal collecting output (journald's socket exists)? Not in containers without it."""
    return Path("/run/systemd/journal/socket").exists()

"""What every OS supervisor backend shares: the status record, the backend interface, and the
two facts a rendered unit needs about this installation (how to run the daemon, which PATH).

Why a narrow interface: the CLI's "one owner" rule (start/stop/restart go through the
supervisor when one manages the daemon) must not care whether that is systemd or launchd, and
tests swap the real tools for fakes on PATH without touching this code.

Nothing here or in the backends prints: a failure is a :class:`ServiceError` whose message says
what to do, a state is a returned :class:`SupervisorStatus`, and each step an operation takes is
handed to the :data:`Say` its caller gives (the CLI prints it, flushed, as it happens: a
``systemctl start`` may take seconds, and a step that fails must follow the steps that did not).

Standard library only: ``status`` and ``stop`` import this on their fast path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where a backend reports each step it takes ("wrote …", "ran: systemctl --user …"): the
#: caller's, so the backends never write to the terminal themselves.
Say = Callable[[str], None]

#: Used when the user's PATH is empty or unusable; where distributions put node and npm.
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class ServiceError(Exception):
    """A supervisor operation failed; the message says what and what to do next."""


@dataclass(frozen=True)
class SupervisorStatus:
    """The supervisor's own view of the daemon, shown beside the daemon's ``/health``."""

    manager: str
    installed: bool
    active: bool
    state: str
    main_pid: int | None = None
    restarts: int | None = None
    unit_path: str | None = None
    enabled: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for ``status``: e.g. ``systemd: active (running), main pid 42, restarts 0``."""
        parts = [self.state]
        if self.main_pid:
            parts.append(f"main pid {self.main_pid}")
        if self.restarts is not None:
            parts.append(f"restarts {self.restarts}")
        if self.enabled:
            parts.append(self.enabled)
        return f"{self.manager}: " + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "manager": self.manager,
            "installed": self.installed,
            "active": self.active,
            "state": self.state,
            "main_pid": self.main_pid,
            "restarts": self.restarts,
            "unit_path": self.unit_path,
            "enabled": self.enabled,
            **self.extra,
        }


@dataclass(frozen=True)
class InstallRequest:
    """What ``service install`` was asked for, resolved to absolute values."""

    argv: tuple[str, ...]
    path: str
    host: str
    port: int
    now: bool = False
    socket: bool = False
    dry_run: bool = False


class Supervisor(ABC):
    """One OS supervisor (systemd user manager, launchd) as the CLI needs it."""

    name: str

    @abstractmethod
    def available(self) -> bool:
        """Can this supervisor be talked to from here (its tool exists, its manager runs)?"""

    @abstractmethod
    def installed(self) -> bool:
        """Does it know our service (then it owns the daemon: one owner)?"""

    @abstractmethod
    def status(self) -> SupervisorStatus: ...

    @abstractmethod
    def preflight(self, request: InstallRequest) -> list[str]:
        """What would make ``install`` fail, one phrase each ([] if nothing), found without
        changing anything: ``install --now`` checks before it stops a running daemon."""

    @abstractmethod
    def install(self, request: InstallRequest, say: Say) -> None: ...

    @abstractmethod
    def uninstall(self, say: Say) -> None: ...

    @abstractmethod
    def start(self, say: Say) -> None: ...

    @abstractmethod
    def stop(self, say: Say) -> None: ...

    @abstractmethod
    def restart(self, say: Say) -> None: ...

    @abstractmethod
    def log_command(self, follow: bool, lines: int) -> list[str] | None:
        """The command that shows the daemon's log under this supervisor, or None if it has none."""


# --- running the supervisor's tools --------------------------------------------------------------


def run_tool(
    argv: Sequence[str], timeout: float, say: Say | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``systemctl``/``launchctl``; with ``say``, report the command (the user sees what we did).

    Raises :class:`ServiceError` when the tool is missing, hangs, or (with ``check``) fails; the
    message carries the tool's own error text.
    """
    if say is not None:
        say("ran: " + " ".join(argv))
    try:
        res = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise ServiceError(f"{argv[0]} was not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s") from None
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout).strip() or f"exit status {res.returncode}"
        raise ServiceError(f"`{' '.join(argv)}` failed: {detail}")
    return res


# --- facts about this installation ---------------------------------------------------------------


def daemon_argv() -> tuple[str, ...]:
    """The absolute command that runs this installation's daemon in the foreground.

    The ``qwen-daemon`` script beside the running interpreter is preferred: that is the venv
    (pipx, Homebrew's libexec, ``make install``) or ``/usr/bin`` (Debian) this code was installed
    into, and it survives ``~/.local/bin`` symlinks being replaced. Failing that, the interpreter
    itself runs the package (``python -m qwen_daemon``), which is just as absolute.
    """
    script = Path(sys.executable).parent / "qwen-daemon"
    if script.is_file() and os.access(script, os.X_OK):
        exe = str(script)
        return (exe, "start", "--foreground")
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "qwen-daemon" and os.access(argv0, os.X_OK):
        return (str(argv0.absolute()), "start", "--foreground")
    return (str(Path(sys.executable).absolute()), "-m", "qwen_daemon", "start", "--foreground")


def service_path(environ: Mapping[str, str] | None = None) -> str:
    """The PATH a unit should carry: the user's, minus entries that mean nothing to a service.

    A supervisor does not see the login shell's PATH (nvm, Homebrew, ~/.local/bin), so without
    this the agent (a Node program) is not found. Relative and empty entries would be resolved
    against the service's working directory, so they are dropped, as are duplicates.
    """
    env = os.environ if environ is None else environ
    seen: list[str] = []
    for entry in env.get("PATH", "").split(os.pathsep):
        if entry and os.path.isabs(entry) and entry not in seen and entry.isprintable():
            seen.append(entry)
    return os.pathsep.join(seen) or DEFAULT_PATH


def missing_on_path(path: str, programs: Sequence[str] = ("node",)) -> list[str]:
    """The ``programs`` a service with ``path`` would not find (reported as a warning)."""
    return [p for p in programs if shutil.which(p, path=path) is None]


def unwritable(directory: Path) -> str | None:
    """Why files cannot be written in ``directory`` (created on demand), or None if they can.

    Tried for real, with a nameless file made and dropped at once in it (or in its nearest existing
    ancestor, which leaves nothing behind): permission bits say nothing for root, a read-only mount
    or a file standing where a directory should be.
    """
    target = directory
    while not target.exists() and target != target.parent:
        target = target.parent
    if target == directory and not target.is_dir():
        return f"{directory} is not a directory"
    if not target.is_dir():
        return f"{directory} cannot be created: {target} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        return f"{directory} is not writable: {exc.strerror or exc}"
    return None


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Atomically write ``text`` unless the file already holds exactly that; True if written.

    Through the package's one writer (:func:`~qwen_daemon.private_files.write_private_file`): a
    temporary name nobody can plant a link at, the mode set before the first byte, a rename.
    """
    from qwen_daemon.private_files import write_private_file  # only install writes

    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_private_file(path, text, mode=mode)
    return True

"""launchd as the daemon's owner on macOS: a LaunchAgent in ``~/Library/LaunchAgents``.

Only the modern ``launchctl`` verbs are used (``bootstrap``/``bootout``/``kickstart``/``print`` on
the ``gui/<uid>`` domain); ``load``/``unload`` are deprecated and report success on failure.

* start: ``bootstrap`` when the agent is not loaded (``RunAtLoad`` starts it), else ``kickstart``;
* stop: ``bootout`` — unloads it, so ``KeepAlive`` cannot bring it back until the next login or
  ``qwen-daemon start``;
* restart: ``kickstart -k`` (kill, then start again).

A Homebrew ``brew services`` agent (``homebrew.mxcl.qwen-daemon``) is recognised as the owner
too, so the CLI never starts a second copy beside it; ``service install`` leaves it to Homebrew.
"""

from __future__ import annotations

import os
import plistlib
import re
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

LABEL = "io.github.qwen-daemon"
HOMEBREW_LABEL = "homebrew.mxcl.qwen-daemon"
TIMEOUT = 60.0
NO_LAUNCHCTL = "launchctl was not found; LaunchAgents need macOS"
_PRINT_LINE = re.compile(r"^\t([a-z][a-z ]*?) = (.*)$")


class Launchd(Supervisor):
    """``launchctl`` on the ``gui/<uid>`` domain of the current user."""

    name = "launchd"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        home = Path(env.get("HOME") or Path.home())
        self.agents_dir = home / "Library" / "LaunchAgents"
        #: Where the rendered agent sends stdout and stderr (the standalone log is here too on macOS).
        self.log_file = home / "Library" / "Logs" / "qwen-daemon" / "daemon.log"
        self.domain = f"gui/{os.getuid()}"

    def plist_path(self, label: str = LABEL) -> Path:
        return self.agents_dir / f"{label}.plist"

    def _label(self) -> str | None:
        """The label of the installed agent: ours, else Homebrew's."""
        return next((lb for lb in (LABEL, HOMEBREW_LABEL) if self.plist_path(lb).exists()), None)

    def _ctl(self, *args: str, say: Say | None = None, check: bool = True) -> str:
        return run_tool(["launchctl", *args], TIMEOUT, say, check).stdout

    def _print(self, label: str) -> dict[str, str] | None:
        """``launchctl print``'s top-level fields, or None when the agent is not loaded."""
        res = run_tool(["launchctl", "print", f"{self.domain}/{label}"], TIMEOUT, check=False)
        if res.returncode != 0:
            return None
        return {m[1]: m[2].strip() for m in map(_PRINT_LINE.match, res.stdout.splitlines()) if m}

    # --- queries ------------------------------------------------------------------------------

    def available(self) -> bool:
        return shutil.which("launchctl") is not None

    def installed(self) -> bool:
        return self.available() and self._label() is not None

    def status(self) -> SupervisorStatus:
        label = self._label()
        if label is None:
            return SupervisorStatus(self.name, False, False, "not installed")
        fields = self._print(label) if self.available() else None
        if fields is None:
            return SupervisorStatus(
                self.name, True, False, "not loaded", unit_path=str(self.plist_path(label))
            )
        pid = fields.get("pid", "")
        runs = fields.get("runs", "")
        extra = {"label": label}
        if "last exit code" in fields:
            extra["last_exit"] = fields["last exit code"]
        state = fields.get("state", "unknown")
        return SupervisorStatus(
            manager=self.name,
            installed=True,
            active=state == "running",
            state=state,
            main_pid=int(pid) if pid.isdigit() else None,
            restarts=max(int(runs) - 1, 0) if runs.isdigit() else None,
            unit_path=str(self.plist_path(label)),
            extra=extra,
        )

    # --- install / uninstall ------------------------------------------------------------------

    def _conflicts(self, request: InstallRequest) -> list[str]:
        problems = []
        if request.socket:
            problems.append("socket activation is a systemd feature; launchd starts the daemon at login")
        if self.plist_path(HOMEBREW_LABEL).exists():
            problems.append(
                f"Homebrew already manages qwen-daemon ({self.plist_path(HOMEBREW_LABEL)}); "
                "use `brew services start|stop qwen-daemon`"
            )
        return problems

    def preflight(self, request: InstallRequest) -> list[str]:
        problems = self._conflicts(request)
        if not self.available():
            problems.append(NO_LAUNCHCTL)
        elif run_tool(["launchctl", "print", self.domain], TIMEOUT, check=False).returncode != 0:
            problems.append(
                f"launchd's {self.domain} domain is not reachable from here (it exists while you are "
                "logged in at the Mac itself, not in an ssh session alone); use `qwen-daemon start` instead"
            )
        for directory in (self.agents_dir, self.log_file.parent):
            problem = unwritable(directory)
            if problem is not None:
                problems.append(problem)
        return problems

    def install(self, request: InstallRequest, say: Say) -> None:
        problems = self._conflicts(request)
        if problems:
            raise ServiceError(problems[0])
        from qwen_daemon.service import templates  # rendering is only for install

        try:
            text = templates.render_plist(LABEL, request.argv, request.path, self.log_file)
        except templates.TemplateError as exc:
            raise ServiceError(str(exc)) from None
        path = self.plist_path()
        if request.dry_run:
            say(f"# would write {path}\n{text}")
            return
        if not self.available():
            raise ServiceError(NO_LAUNCHCTL)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        changed = write_if_changed(path, text)
        say(f"wrote {path}" if changed else f"{path} is up to date")
        loaded = self._print(LABEL) is not None
        if loaded and changed:
            # launchd reads a plist only at bootstrap: a loaded agent keeps its old definition
            # (and kickstart would restart it with that), so reload it.
            self._ctl("bootout", f"{self.domain}/{LABEL}", say=say)
            self._ctl("bootstrap", self.domain, str(path), say=say)
        elif not loaded and request.now:
            self._ctl("bootstrap", self.domain, str(path), say=say)
        if loaded or request.now:
            say("loaded: it runs now and whenever you log in")
        else:
            say("it starts when you log in, or now with `qwen-daemon start`")
        say(f"its output goes to {self.log_file}")

    def uninstall(self, say: Say) -> None:
        path = self.plist_path()
        if not path.exists():
            if self.plist_path(HOMEBREW_LABEL).exists():
                say("qwen-daemon is managed by Homebrew; use `brew services stop qwen-daemon`")
            else:
                say(f"qwen-daemon was not installed in {self.agents_dir}")
            return
        if self.available() and self._print(LABEL) is not None:
            self._ctl("bootout", f"{self.domain}/{LABEL}", say=say)
        path.unlink()
        say(f"removed {path}")
        if self.log_file.exists():
            say(f"kept its log {self.log_file}")

    # --- control ------------------------------------------------------------------------------

    def _require_label(self) -> str:
        label = self._label()
        if label is None:
            raise ServiceError("no LaunchAgent for qwen-daemon is installed")
        return label

    def start(self, say: Say) -> None:
        label = self._require_label()
        if self._print(label) is None:
            self._ctl("bootstrap", self.domain, str(self.plist_path(label)), say=say)
        else:
            self._ctl("kickstart", f"{self.domain}/{label}", say=say)

    def stop(self, say: Say) -> None:
        label = self._require_label()
        if self._print(label) is not None:
            self._ctl("bootout", f"{self.domain}/{label}", say=say)

    def restart(self, say: Say) -> None:
        label = self._require_label()
        if self._print(label) is None:
            self._ctl("bootstrap", self.domain, str(self.plist_path(label)), say=say)
        else:
            self._ctl("kickstart", "-k", f"{self.domain}/{label}", say=say)

    def log_command(self, follow: bool, lines: int) -> list[str] | None:
        """``tail`` of the files the installed plist names (Homebrew's agent logs elsewhere)."""
        label = self._label()
        if label is None:
            return None
        try:
            doc = plistlib.loads(self.plist_path(label).read_bytes())
        except (OSError, plistlib.InvalidFileException, ValueError):
            return None
        files = list(dict.fromkeys(str(doc[k]) for k in ("StandardErrorPath", "StandardOutPath") if k in doc))
        if not files:
            return None
        return ["tail", "-n", str(lines), *(["-F"] if follow else []), *files]

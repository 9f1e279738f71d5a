"""OS supervisor integration: who owns the daemon process, and handing it to systemd or launchd.

One owner: when a supervisor knows our service, the CLI's ``start``/``stop``/``restart`` go
through it (``systemctl --user`` / ``launchctl``) and never start a second, self-daemonized copy
beside it; otherwise the daemon is standalone and the CLI daemonizes it itself.

Modules: ``base`` (the interface and shared helpers), ``templates`` (rendering the shipped unit,
socket and plist), ``systemd`` and ``launchd`` (the two backends), ``activation`` (sockets passed
by systemd), ``commands`` (the ``service`` and ``logs`` CLI commands).

The backends are imported on first use: ``start --foreground`` needs only ``activation``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping

from qwen_daemon.service.base import ServiceError, Supervisor, SupervisorStatus

__all__ = ["MANAGERS", "ServiceError", "Supervisor", "SupervisorStatus", "detect", "for_platform"]

MANAGERS = ("systemd", "launchd")


def for_platform(name: str | None = None, environ: Mapping[str, str] | None = None) -> Supervisor:
    """The backend called ``name``, or this platform's (launchd on macOS, systemd elsewhere)."""
    name = name or ("launchd" if sys.platform == "darwin" else "systemd")
    if name == "launchd":
        from qwen_daemon.service.launchd import Launchd

        return Launchd(environ)
    if name == "systemd":
        from qwen_daemon.service.systemd import Systemd

        return Systemd(environ)
    raise ValueError(f"unknown service manager {name!r}")


def detect(environ: Mapping[str, str] | None = None) -> Supervisor | None:
    """The supervisor that owns the daemon, or None when it is standalone.

    A supervisor that cannot be asked (no user manager, a tool that fails) owns nothing: the
    CLI then behaves as it would without it rather than refusing to work.
    """
    for name, tool in (("systemd", "systemctl"), ("launchd", "launchctl")):
        if shutil.which(tool) is None:  # nothing to ask; spares `start` importing the backend
            continue
        backend = for_platform(name, environ)
        try:
            if backend.available() and backend.installed():
                return backend
        except ServiceError:
            continue
    return None

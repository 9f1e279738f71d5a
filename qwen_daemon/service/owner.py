"""Which supervisor owns the daemon (:func:`detect`), and the backend for a platform or a name.

Kept out of the package's ``__init__`` so that the backends, which the functions here import on
first use, never sit in an import cycle with the package that holds them.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping

from qwen_daemon.service.base import ServiceError, Supervisor

#: the backends, by the name ``service --manager`` takes
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

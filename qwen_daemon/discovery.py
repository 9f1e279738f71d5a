"""The runtime discovery file: how the CLI (and anyone else) finds the running daemon.

The daemon writes ``daemon.json`` into the private runtime dir once it is listening and removes it
on a clean exit. A daemon that crashed or was SIGKILLed leaves the file behind, so every reader
validates it: a file that does not parse, has a field of the wrong type, belongs to someone else or
names a PID that no longer exists is stale, and is removed rather than trusted.

A live PID is still not proof (PIDs are reused): callers that need certainty compare the
``instance_id`` here with what ``GET /health`` answers (see :mod:`qwen_daemon.client`).

This module is imported by the fast CLI paths, so it imports the standard library only at the top;
psutil (the process checks, the same on Linux and macOS) is imported where a check runs.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from qwen_daemon.config import ConfigError, Paths
from qwen_daemon.private_files import UnsafePath, read_private, write_private_file

log = logging.getLogger(__name__)

_INSTANCE_ID = re.compile(r"[0-9a-f]{32}")
#: A discovery file is a few hundred bytes; anything much larger is not ours.
_MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class DiscoveryInfo:
    """What the running daemon publishes about itself. Never contains the token."""

    pid: int
    host: str
    port: int
    url: str
    instance_id: str
    version: str
    started_at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_mapping(cls, data: object) -> DiscoveryInfo:
        """Validate every field; raise ``ValueError`` naming the first bad one."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        pid = data.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**31:
            raise ValueError("pid must be a positive integer")
        port = data.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port <= 65535:
            raise ValueError("port must be an integer in 1..65535")
        strings: dict[str, str] = {}
        for name in ("host", "url", "instance_id", "version", "started_at"):
            value = data.get(name)
            if not isinstance(value, str) or not value or len(value) > 1024:
                raise ValueError(f"{name} must be a non-empty string")
            strings[name] = value
        if not strings["url"].startswith(("http://", "https://")):
            raise ValueError("url must be an http(s) URL")
        if not _INSTANCE_ID.fullmatch(strings["instance_id"]):
            raise ValueError("instance_id must be 32 lowercase hex digits")
        try:
            datetime.fromisoformat(strings["started_at"])
        except ValueError:
            raise ValueError("started_at must be an ISO 8601 timestamp") from None
        return cls(pid=pid, port=port, **strings)


def connect_host(host: str) -> str:
    """The address a client should dial for a daemon bound to ``host``.

    A wildcard bind (``0.0.0.0``/``::``) listens on loopback too, and loopback is what the Host
    allowlist always accepts, so local clients use it.
    """
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def make_url(host: str, port: int, tls: bool = False) -> str:
    """``http(s)://host:port/`` with IPv6 literals bracketed."""
    host = connect_host(host)
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"{'https' if tls else 'http'}://{host}:{port}/"


def browser_url(base_url: str, token: str) -> str:
    """The URL to open in a browser: the daemon's ``base_url`` (from :func:`make_url` or a
    discovery file) logging in with ``token``. It holds the token: print it, never log it.

    One builder for the CLI's ``url``, ``start`` and the supervised start's report, and the
    daemon's own: four copies once spelled it three ways (urlencoded or not).
    """
    from urllib.parse import urlencode  # spares the fast paths that never print a URL

    return f"{base_url}?{urlencode({'token': token})}"


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` names a running process (a zombie counts as gone).

    Zombies matter: a daemonized process is reparented to PID 1, and not every PID 1 (containers)
    reaps promptly, so ``kill(pid, 0)`` alone would report a dead daemon as running. psutil reads
    the state the same way on Linux and macOS (procfs there, ``sysctl`` here).
    """
    if pid <= 0:
        return False
    import psutil  # here, not at the top: the fast CLI paths that never ask skip its import

    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:  # ZombieProcess included: macOS cannot even read a zombie
        return False
    except psutil.AccessDenied:
        return True  # exists, belongs to someone else


def process_cmdline(pid: int) -> str | None:
    """The command line of ``pid``, or None when it cannot be read (gone, or not ours to read)."""
    import psutil

    try:
        args = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return None
    return " ".join(args).strip()


def read_pidfile(paths: Paths) -> int | None:
    """The PID in the daemon's PID lock file (written as it daemonizes), or None."""
    try:
        text = read_private(paths.pid_file, limit=64).decode("ascii", "replace").strip()
    except (OSError, ConfigError):  # missing, or not safe to read (start refuses it, naming why)
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 2**31 else None


def starting_pid(paths: Paths) -> int | None:
    """A daemon that holds the PID lock but has not published ``daemon.json`` yet (starting)."""
    pid = read_pidfile(paths)
    return pid if pid is not None and looks_like_daemon(pid) else None


def looks_like_daemon(pid: int) -> bool:
    """Best-effort guard against PID reuse: does ``pid`` run qwen-daemon?

    A live PID whose command line cannot be read is given the benefit of the doubt.
    """
    if not pid_alive(pid):
        return False
    cmdline = process_cmdline(pid)
    if cmdline is None:
        return True
    return "qwen_daemon" in cmdline or "qwen-daemon" in cmdline


def write_discovery(paths: Paths, info: DiscoveryInfo) -> None:
    """Publish ``info`` atomically, 0600 in the 0700 runtime dir."""
    write_private_file(paths.discovery_file, info.to_json(), durable=False)


def _load(path: Path) -> tuple[str, DiscoveryInfo | None] | None:
    """(raw text, parsed info or None when invalid), or None when absent/unreadable/foreign."""
    try:
        raw = read_private(path, limit=_MAX_FILE_BYTES + 1)
        if len(raw) > _MAX_FILE_BYTES:
            log.warning("ignoring discovery file %s: larger than %d bytes", path, _MAX_FILE_BYTES)
            return None
        text = raw.decode("utf-8")
    except FileNotFoundError:
        return None
    except UnsafePath as exc:  # a link or another user's file: never trusted, never removed
        log.warning("ignoring discovery file: %s", exc)
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read discovery file %s: %s", path, exc)
        return None
    try:
        data: Any = json.loads(text)
        return text, DiscoveryInfo.from_mapping(data)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        log.info("discovery file %s is invalid (%s); removing it", path, exc)
        return text, None


def _remove_if_unchanged(path: Path, text: str) -> None:
    """Remove a stale file, unless a new daemon replaced it since we read it."""
    try:
        if read_private(path, limit=_MAX_FILE_BYTES + 1).decode("utf-8") == text:
            path.unlink()
    except (FileNotFoundError, UnicodeDecodeError, UnsafePath):
        pass
    except OSError as exc:
        log.warning("cannot remove stale discovery file %s: %s", path, exc)


def read_discovery(paths: Paths) -> DiscoveryInfo | None:
    """The published info of a daemon whose PID is alive, else None (a stale file is removed)."""
    path = paths.discovery_file
    loaded = _load(path)
    if loaded is None:
        return None
    text, info = loaded
    if info is not None and pid_alive(info.pid):
        return info
    if info is not None:
        log.info("discovery file %s names dead pid %d; removing it", path, info.pid)
    _remove_if_unchanged(path, text)
    return None


def remove_discovery(paths: Paths, instance_id: str | None = None) -> None:
    """Remove the discovery file; with ``instance_id``, only if it is still that instance's."""
    path = paths.discovery_file
    if instance_id is not None:
        loaded = _load(path)
        if loaded is None:
            return
        text, info = loaded
        if info is not None and info.instance_id != instance_id:
            return  # another daemon's file: not ours to remove
        _remove_if_unchanged(path, text)
        return
    path.unlink(missing_ok=True)

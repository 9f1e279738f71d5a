"""The daemon's private files: 0700 directories, 0600 files written atomically, read safely.

Separate from settings parsing (``config``) because these functions touch the disk and guard
secrets, while settings only read and validate; many modules write private files (discovery,
the store, orphan records) without needing any setting. Which files the daemon owns, and the API
token, are :mod:`qwen_daemon.daemon_files`: this module knows no path by name, and so imports
nothing of the package but its error type (``config`` reads ``config.toml`` through it).

Every file the daemon owns is opened here without following a link (``O_NOFOLLOW``) and judged by
``fstat`` of the opened descriptor (owner, type, mode) before a byte is read or written; modes are
repaired through descriptors (``fchmod``), which cannot follow a link. Why: the directories are
0700, but a link or a file planted before they were (or by the user by mistake) must not route the
token, the log or the database elsewhere, nor feed the daemon someone else's content.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from qwen_daemon.errors import ConfigError

log = logging.getLogger(__name__)

#: the most any of the daemon's small files is read (the token, flags, pid, discovery, groups)
MAX_READ = 1024 * 1024

#: How a path is judged (see :func:`open_private`):
#: ``private``: the daemon's own file or directory; too open a mode is repaired (0600, dirs 0700);
#: ``secret``: the token; readable by anyone else, it may have leaked, so it is refused, not repaired;
#: ``config``: the user's ``config.toml``; read only, refused if others can write it (its
#: ``agent_cmd`` is a command the daemon runs), never changed;
#: ``in use``: the token as the CLI reads it to talk to the running daemon: a link or another
#: user's file is refused, but not a mode (refusing that would leave no way to stop the daemon or
#: rotate the token, the way out start names), nor repaired (that would hide the leak from start).
Kind = Literal["private", "secret", "config", "in use"]


class UnsafePath(ConfigError):
    """A path the daemon owns is a symbolic link, another user's, of the wrong type, or a secret
    others can read. The message names the path and what is wrong.

    Why start stops rather than working around it: a link or a foreign file at one of these names
    hands whoever controls its target the token, the log or the database, or a command line the
    daemon would run; only the user can tell a mistake (a dotfiles link) from an attack.
    """


def _judge(path: Path, info: os.stat_result, kind: Kind, *, directory: bool) -> tuple[str | None, int]:
    """(why ``path`` is unusable or None, the mode to repair it to or 0), from its ``stat``."""
    if stat.S_ISLNK(info.st_mode):
        return (
            "is a symbolic link; the daemon never follows links at its own files (put the real one there)",
            0,
        )
    if info.st_uid != os.geteuid():
        return f"belongs to another user (uid {info.st_uid}, not {os.geteuid()})", 0
    if directory and not stat.S_ISDIR(info.st_mode):
        return "is not a directory", 0
    if not directory and not stat.S_ISREG(info.st_mode):
        return "is not a regular file", 0
    mode = stat.S_IMODE(info.st_mode)
    if kind == "secret" and mode & 0o077:
        return (
            f"can be read by other users (mode {mode:04o}) and may have leaked; "
            "`qwen-daemon token rotate` replaces it with a new private token"
        ), 0
    if kind == "config" and mode & 0o022:
        return f"can be changed by other users (mode {mode:04o}); `chmod go-w` it", 0
    if kind == "private" and mode & 0o077:
        return None, 0o700 if directory else 0o600
    return None, 0


def _checked(fd: int, path: Path, kind: Kind, *, directory: bool = False) -> str | None:
    """Judge the opened descriptor ``fd`` (closed on refusal): what was opened is what is used,
    whatever happens to the name meanwhile. Repairs the mode through ``fd`` (``fchmod`` cannot
    follow a link); returns the repair, for the log."""
    info = os.fstat(fd)
    why, repair = _judge(path, info, kind, directory=directory)
    if why is not None:
        os.close(fd)
        raise UnsafePath(f"{path} {why}")
    if not repair:
        return None
    os.fchmod(fd, repair)
    mode = stat.S_IMODE(info.st_mode)
    return f"{path} was open to other users (mode {mode:04o}); set it to {repair:04o}"


def open_private(path: Path, flags: int = os.O_RDONLY, kind: Kind = "private") -> int:
    """Open one of the daemon's files without following a link, then check what was opened.

    ``O_NONBLOCK``: a FIFO planted at the name must be refused, not wait for a writer forever.
    With ``O_CREAT`` a new file is 0600 from its first byte. Raises :class:`UnsafePath`, or
    ``OSError`` (``FileNotFoundError`` without ``O_CREAT``) for what is merely missing or unusable.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and path.is_symlink():  # EMLINK: the BSDs
            raise UnsafePath(f"{path} {_judge(path, path.lstat(), kind, directory=False)[0]}") from None
        raise
    repaired = _checked(fd, path, kind)
    if repaired:
        log.warning("%s", repaired)
    return fd


def read_private(path: Path, kind: Kind = "private", limit: int = MAX_READ) -> bytes:
    """At most ``limit`` bytes of one of the daemon's files, checked by :func:`open_private`."""
    fd = open_private(path, os.O_RDONLY, kind)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit)


def check_path(path: Path, kind: Kind = "private", *, directory: bool = False) -> str | None:
    """Check ``path`` if it exists (``lstat``: a link is judged, not its target); repair too open
    a mode through a descriptor opened without following links. Returns the repair or None;
    raises :class:`UnsafePath`. For paths opened by others (SQLite) or not opened yet."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    why, _repair = _judge(path, info, kind, directory=directory)
    if why is not None:
        raise UnsafePath(f"{path} {why}")
    if not _repair:
        return None
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    return _checked(
        os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC), path, kind, directory=directory
    )


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) 0700 unless it exists; refuse it if it is a link, another
    user's or not a directory; make sure only the owner can enter it."""
    if not os.path.lexists(path):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    repaired = check_path(path, directory=True)
    if repaired:
        log.warning("%s", repaired)
    return path


#: the mode of a file only its owner may read
PRIVATE_MODE = 0o600


@contextlib.contextmanager
def _written_aside(path: Path, text: str, *, durable: bool, mode: int = PRIVATE_MODE) -> Iterator[Path]:
    """``text`` in a new file beside ``path``: ``mode`` (0600 unless said otherwise) from its first
    byte, a name no other process or thread uses, synced if ``durable``. Removed on the way out
    unless it was renamed.

    ``mkstemp`` creates it with ``O_CREAT | O_EXCL | O_NOFOLLOW``: whatever is planted at the name
    (a link, a file), it is refused rather than written through, and the file is ours, 0600, from
    the start; a wider ``mode`` is set through the descriptor before a byte is written.
    """
    if mode & 0o077:  # a file others read (a unit, a plist): its directory is not ours to close
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        ensure_private_dir(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(name)
    try:
        if mode != PRIVATE_MODE:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_private_file(path: Path, text: str, *, durable: bool = True, mode: int = PRIVATE_MODE) -> None:
    """Atomically replace ``path`` with ``text``; the file is 0600 from its first byte.

    The one writer of whole files in the package. Readers see the old file or the new one, never
    half of one; a link at ``path`` is replaced, never written through. ``durable=False`` skips
    the fsync, for files in the runtime directory: they describe this boot's processes, so
    surviving a power loss is moot, and the page cache already outlives a crash of the daemon (the
    fsync cost 1-3 ms on each agent start and daemon start on a disk). ``mode``: wider for a file
    another program reads as the user (0644: a systemd unit, a LaunchAgent plist), whose directory
    is then created like any other rather than made private.
    """
    with _written_aside(path, text, durable=durable, mode=mode) as tmp:
        os.replace(tmp, path)


def create_private_file(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` (0600, synced) unless it exists; False if it did.

    Written aside, then linked into place: the link fails if the name exists, so of several
    processes creating the file at once exactly one wins and none sees it half written.
    """
    with _written_aside(path, text, durable=True) as tmp:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    return True

"""The daemon's private files: 0700 directories, 0600 files written atomically, the API token.

Separate from settings parsing (``config``) because these functions touch the disk and guard
secrets, while settings only read and validate; many modules write private files (discovery,
the store, orphan records) without needing any setting.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from qwen_daemon.config import ConfigError, Paths

TOKEN_BYTES = 32  # 256 bits
#: what a token file must hold (``secrets.token_urlsafe`` makes 43 such characters)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,}")


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make sure only the owner can enter it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


@contextlib.contextmanager
def _written_aside(path: Path, text: str, *, durable: bool) -> Iterator[Path]:
    """``text`` in a new file beside ``path``: 0600 from its first byte, a name no other process
    or thread uses, synced if ``durable``. Removed on the way out unless it was renamed."""
    ensure_private_dir(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_private_file(path: Path, text: str, *, durable: bool = True) -> None:
    """Atomically replace ``path`` with ``text``; the file is 0600 from its first byte.

    ``durable=False`` skips the fsync, for files in the runtime directory: they describe this
    boot's processes, so surviving a power loss is moot, and the page cache already outlives a
    crash of the daemon (the fsync cost 1-3 ms on each agent start and daemon start on a disk).
    """
    with _written_aside(path, text, durable=durable) as tmp:
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


def rotate_token(paths: Paths) -> str:
    """Replace the API token with a fresh one (the old one stops working at once)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    write_private_file(paths.token_file, token + "\n")
    return token


def secure_paths(paths: Paths) -> list[str]:
    """Check the daemon's directories (0700) and secret files (0600); repair what is too open.

    Returns one line per repair, for the log. Raises ConfigError for something owned by another
    user: repairing that is not ours to do, and trusting it would be unsafe.
    """
    repairs = []
    dirs = [paths.config_dir, paths.state_dir, paths.log_dir, paths.runtime_dir]
    files = [paths.token_file, paths.database, paths.discovery_file, paths.pid_file, paths.log_file]
    for path, wanted in [*((d, 0o700) for d in dirs), *((f, 0o600) for f in files)]:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if info.st_uid != os.getuid():
            raise ConfigError(f"{path} belongs to another user (uid {info.st_uid}); refusing to use it")
        mode = info.st_mode & 0o777
        if mode & 0o077:
            path.chmod(wanted)
            repairs.append(f"{path} was readable by others (mode {mode:04o}); set it to {wanted:04o}")
    return repairs


def load_or_create_token(paths: Paths) -> str:
    """The API token: 256 random bits, kept 0600 in the config dir, stable across restarts."""
    path = paths.token_file
    if not path.exists():
        fresh = secrets.token_urlsafe(TOKEN_BYTES)
        if create_private_file(path, fresh + "\n"):
            return fresh
        # several first starts raced and another one's token won: every one must use that one
    token = path.read_bytes().decode("ascii", "replace").strip()
    if not _TOKEN.fullmatch(token):  # empty, cut short or garbage: it cannot work; replace it
        token = secrets.token_urlsafe(TOKEN_BYTES)
        write_private_file(path, token + "\n")
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return token

"""The daemon's own files by name: the check of every one of them at start, and the API token
(made once, rotated, read by the CLI to send it).

Apart from :mod:`~qwen_daemon.private_files` (how any private file is opened, read and written)
because these need :class:`~qwen_daemon.config.Paths`, and ``config`` reads ``config.toml``
through ``private_files``: kept together they made an import cycle. Apart from ``config`` because
settings only parse and validate; nothing there writes a file or mints a secret.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from qwen_daemon.config import Paths
from qwen_daemon.private_files import (
    Kind,
    check_path,
    create_private_file,
    ensure_private_dir,
    read_private,
    write_private_file,
)

TOKEN_BYTES = 32  # 256 bits
#: what a token file must hold (``secrets.token_urlsafe`` makes 43 such characters)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,}")


def rotate_token(paths: Paths) -> str:
    """Replace the API token with a fresh one (the old one stops working at once)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    write_private_file(paths.token_file, token + "\n")
    return token


def secure_paths(paths: Paths) -> list[str]:
    """Check every directory and file the daemon owns before any of them is read or written.

    Run first at start (and by ``start`` before it writes anything): a link, another user's file
    or a readable token stops start with :class:`UnsafePath` naming the path; too open a mode of
    the daemon's own is repaired. Returns one line per repair, for the log. Every later open goes
    through :func:`open_private` too, which checks the opened descriptor itself.
    """
    repairs = []
    database = str(paths.database)
    checks: list[tuple[Path, Kind, bool]] = [
        *(
            (d, "private", True)
            for d in (paths.config_dir, paths.state_dir, paths.log_dir, paths.runtime_dir)
        ),
        (paths.agent_log_dir, "private", True),
        (paths.token_file, "secret", False),
        (paths.config_file, "config", False),
        *((Path(database + end), "private", False) for end in ("", "-wal", "-shm", ".clean")),
        *((f, "private", False) for f in (paths.discovery_file, paths.pid_file, paths.log_file)),
        *((f, "private", False) for f in (paths.agent_groups_file, paths.start_flags_file)),
        (paths.vapid_key_file, "private", False),
    ]
    for path, kind, directory in checks:
        repaired = check_path(path, kind, directory=directory)
        if repaired:
            repairs.append(repaired)
    return repairs


def load_or_create_token(paths: Paths) -> str:
    """The API token: 256 random bits, kept 0600 in the config dir, stable across restarts.

    Read only through :func:`read_private`: a link at its name is refused, never followed (a
    dangling one used to end in a misleading "cannot write"), and so is a token others can read.
    """
    path = paths.token_file
    ensure_private_dir(path.parent)
    try:
        raw = read_private(path, "secret")
    except FileNotFoundError:
        fresh = secrets.token_urlsafe(TOKEN_BYTES)
        if create_private_file(path, fresh + "\n"):
            return fresh
        # several first starts raced and another one's token won: every one must use that one
        raw = read_private(path, "secret")
    token = raw.decode("ascii", "replace").strip()
    if not _TOKEN.fullmatch(token):  # empty, cut short or garbage: it cannot work; replace it
        token = secrets.token_urlsafe(TOKEN_BYTES)
        write_private_file(path, token + "\n")
    return token


def read_token(paths: Paths) -> str | None:
    """The API token if one exists; never creates one (a client has no business minting it).

    Raises :class:`~qwen_daemon.private_files.UnsafePath` (the CLI prints it) for a link or another
    user's file: a token from there is not the daemon's to send. One others can read is still
    used: ``stop`` and ``token rotate`` must work (``start`` refuses it).
    """
    try:
        token = read_private(paths.token_file, "in use").decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None

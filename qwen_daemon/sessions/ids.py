"""The ids the daemon makes (sessions, prompts, permission requests)."""

from __future__ import annotations

import secrets


def new_id(nbytes: int = 9) -> str:
    """A random URL-safe id that never begins with ``-``.

    Ids are typed as command-line arguments (``qwen-daemon mode ID plan``), and argparse reads a
    leading ``-`` as an option: one id in 64 would otherwise be unusable there.
    """
    while True:
        token = secrets.token_urlsafe(nbytes)
        if not token.startswith("-"):
            return token

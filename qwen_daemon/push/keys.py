"""The daemon's VAPID key pair (RFC 8292): who push services see sending, stable across restarts.

Made by py_vapid at the first start and kept as a PKCS#8 PEM in the config dir
(``vapid.pem``, 0600, written and read through ``private_files``: created beside and linked into
place, never through a link). Browsers bind each subscription to the public key they were given
(``applicationServerKey``), so a new key would silently orphan every subscription: the file is
only ever created, never replaced; an unreadable one is an error, not a reason to make another.

Loading imports ``cryptography`` (~30 ms), so it happens in a worker thread after the daemon is
ready, never on the path to ``/health``.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

from qwen_daemon.private_files import create_private_file, read_private

log = logging.getLogger(__name__)


class VapidKeyError(Exception):
    """The key file exists but cannot be used; the message names it."""


def b64url(data: bytes) -> str:
    """Unpadded base64url, as the Push API and VAPID write keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_or_create(path: Path) -> tuple[Any, str]:
    """The ``py_vapid.Vapid`` signer and its public key (base64url uncompressed P-256 point).

    Blocking (file and crypto): call it in a worker thread.
    """
    from cryptography.hazmat.primitives import serialization
    from py_vapid import Vapid

    try:
        pem = read_private(path, "private")
    except FileNotFoundError:
        fresh = Vapid()
        fresh.generate_keys()
        if create_private_file(path, fresh.private_pem().decode("ascii")):
            log.info("made the Web Push (VAPID) key %s", path)
        pem = read_private(path, "private")  # another start may have won the race: use its key
    try:
        vapid = Vapid.from_pem(pem)
    except Exception as exc:  # py_vapid raises bare Exceptions for a malformed key
        raise VapidKeyError(
            f"the Web Push key {path} cannot be read ({exc}); move it aside to make a new one"
        ) from None
    point = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return vapid, b64url(point)

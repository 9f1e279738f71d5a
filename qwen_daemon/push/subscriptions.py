"""Web Push subscriptions: checked when they arrive, kept in SQLite, held in memory.

A subscription is what a browser's ``PushSubscription.toJSON()`` gives
(``{endpoint, expirationTime, keys: {p256dh, auth}}``), tied to the device that made it
(``device_id``; None when made with the bearer token: API, CLI, scripts, kept until deleted).
Everything is checked before it is stored, so a push never fails for a reason known up front:

- the endpoint is an ``https://`` URL (``http://`` only with ``push_insecure_endpoints`` and a
  loopback host: the tests' push service), without credentials, at most 2,000 characters;
- ``p256dh`` is base64url of an uncompressed point on P-256 (65 bytes; checked by
  ``cryptography``) and ``auth`` base64url of 16 bytes, as RFC 8291 requires.

At most :data:`MAX_SUBSCRIPTIONS` are kept (a runaway script must not make every event a
thousand pushes). The table is small and read on every notification, so it lives in memory too;
writes go straight to the database (the store's connection, in autocommit: one row, at once),
and an answer is given only once the row is saved.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import math
import secrets
import sqlite3
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

from qwen_daemon.errors import BadRequest, LimitReached
from qwen_daemon.sessions.events import utc_now
from qwen_daemon.sessions.store import write_now

MAX_SUBSCRIPTIONS = 100
MAX_ENDPOINT = 2000
_COLUMNS = "id, device_id, endpoint, p256dh, auth, expiration_time, created_at"


class Subscription(NamedTuple):
    id: str
    device_id: str | None
    endpoint: str
    p256dh: str
    auth: str
    expiration_time: float | None
    created_at: str

    @property
    def origin(self) -> str:
        """The endpoint's scheme and host: all the log ever says of it (the path is a capability)."""
        return origin_of(self.endpoint)

    def info(self) -> dict[str, Any]:
        """What ``pywebpush`` takes."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device_id": self.device_id,
            "endpoint_origin": self.origin,
            "expiration_time": self.expiration_time,
            "created_at": self.created_at,
        }


def origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _b64url(value: Any, name: str, size: int) -> bytes:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"keys.{name} must be a base64url string")
    text = value.strip().rstrip("=")
    if not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise BadRequest(f"keys.{name} is not base64url (A-Z, a-z, 0-9, '-', '_')")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadRequest(f"keys.{name} is not valid base64url") from None
    if len(raw) != size:
        raise BadRequest(f"keys.{name} must decode to {size} bytes, not {len(raw)}")
    return raw


def _check_endpoint(value: Any, allow_insecure: bool) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("field 'endpoint' must be the push service's URL (a string)")
    if len(value) > MAX_ENDPOINT:
        raise BadRequest(f"field 'endpoint' is longer than {MAX_ENDPOINT} characters")
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise BadRequest("field 'endpoint' is not a valid URL") from None
    if not parts.hostname or parts.username or parts.password or not value.isprintable():
        raise BadRequest("field 'endpoint' must be an https:// URL with a host and no credentials")
    if parts.scheme == "https":
        return value
    if parts.scheme == "http" and allow_insecure and _loopback(parts.hostname):
        return value
    if parts.scheme == "http" and _loopback(parts.hostname):
        raise BadRequest(
            "field 'endpoint' must be an https:// URL; http:// on loopback needs the setting "
            "push_insecure_endpoints (QWEN_DAEMON_PUSH_INSECURE_ENDPOINTS=1, for tests)"
        )
    raise BadRequest("field 'endpoint' must be an https:// URL (push services are reached over TLS)")


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse(body: Mapping[str, Any], allow_insecure: bool) -> tuple[str, str, str, float | None]:
    """``(endpoint, p256dh, auth, expiration_time)`` from ``toJSON()``, or BadRequest saying why.

    Fields other than these three are ignored: browsers may add some, and nothing else is used.
    """
    endpoint = _check_endpoint(body.get("endpoint"), allow_insecure)
    keys = body.get("keys")
    if not isinstance(keys, dict):
        raise BadRequest("field 'keys' must be an object {p256dh, auth} (PushSubscription.toJSON())")
    point = _b64url(keys.get("p256dh"), "p256dh", 65)
    _b64url(keys.get("auth"), "auth", 16)
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise BadRequest("keys.p256dh is not an uncompressed point on the P-256 curve") from None
    expiration = _expiration(body.get("expirationTime"))
    p256dh, auth = keys["p256dh"].strip().rstrip("="), keys["auth"].strip().rstrip("=")
    return endpoint, p256dh, auth, expiration


def _expiration(value: Any) -> float | None:
    """``expirationTime``: null or a finite number. A 400-digit integer is valid JSON that
    ``float()`` cannot hold (OverflowError: a 500), and ``1e400`` reads as ``inf``, which stored
    would make every later listing answer ``Infinity`` (not JSON)."""
    if value is None:
        return None
    if not isinstance(value, bool) and isinstance(value, int | float):
        with contextlib.suppress(OverflowError):
            if math.isfinite(number := float(value)):
                return number
    raise BadRequest("field 'expirationTime' must be null or a number (milliseconds since 1970)")


class Subscriptions:
    """Every subscription, in memory and in the ``push_subscriptions`` table."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        rows = db.execute(f"SELECT {_COLUMNS} FROM push_subscriptions ORDER BY created_at, id")  # noqa: S608
        self._subs: dict[str, Subscription] = {row[0]: Subscription(*row) for row in rows}

    def __len__(self) -> int:
        return len(self._subs)

    def all(self) -> list[Subscription]:
        return list(self._subs.values())

    def get(self, sub_id: str) -> Subscription | None:
        return self._subs.get(sub_id)

    def of_device(self, device_id: str | None) -> list[Subscription]:
        return [s for s in self._subs.values() if s.device_id == device_id]

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        write_now(self._db, sql, args, "the push subscriptions")

    def add(
        self, device_id: str | None, endpoint: str, p256dh: str, auth: str, expiration: float | None
    ) -> tuple[Subscription, bool]:
        """Store a subscription; True when new. The same endpoint again replaces its keys and
        device (a browser re-subscribing) and keeps its id."""
        existing = next((s for s in self._subs.values() if s.endpoint == endpoint), None)
        if existing is None and len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise LimitReached(f"at most {MAX_SUBSCRIPTIONS} push subscriptions; delete one first")
        sub = Subscription(
            existing.id if existing else secrets.token_urlsafe(9),
            device_id,
            endpoint,
            p256dh,
            auth,
            expiration,
            existing.created_at if existing else utc_now(),
        )
        self._write(
            f"INSERT OR REPLACE INTO push_subscriptions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)",  # noqa: S608
            (sub.id, sub.device_id, sub.endpoint, sub.p256dh, sub.auth, sub.expiration_time, sub.created_at),
        )
        self._subs[sub.id] = sub
        return sub, existing is None

    def remove(self, sub_id: str) -> bool:
        if sub_id not in self._subs:
            return False
        self._write("DELETE FROM push_subscriptions WHERE id = ?", (sub_id,))
        del self._subs[sub_id]
        return True

    def remove_device(self, device_id: str) -> int:
        doomed = [s.id for s in self._subs.values() if s.device_id == device_id]
        if doomed:
            self._write("DELETE FROM push_subscriptions WHERE device_id = ?", (device_id,))
            for sub_id in doomed:
                del self._subs[sub_id]
        return len(doomed)

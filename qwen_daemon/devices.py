"""Devices (each logged-in browser's own credential) and the one-time pairing codes that make one.

Why per-device credentials: a login cookie derived from the token (as before) could not be taken
back from one lost phone without logging every browser out. Now each login — the token URL
``/?token=`` or a pairing code — creates a *device*: a row with a random 256-bit secret. The
browser keeps the secret in its HttpOnly cookie; the database keeps only its SHA-256, so a copy of
the database logs nobody in. A request's cookie is hashed and the hash looked up: the secret's own
bytes are never compared with anything, so response timing says nothing about it (and the hash
of a guess says nothing about the hashes that exist). Revoking a device deletes its row; its
cookie stops working with the next request, and whoever hooked :attr:`DeviceRegistry.on_revoked`
(open WebSockets, push subscriptions) lets go of it at once.

Pairing codes are what a phone scans: 128 random bits valid :data:`PAIRING_TTL` seconds, usable
once, kept only in memory and only hashed. At most :data:`MAX_LIVE_CODES` are live at once (a new
one retires the oldest), and a used or expired code is remembered a while so the page can say
which it is. Guessing is throttled by the caller (``server/throttle.py``); with 128 bits it is
hopeless anyway. A code is only as good as the credential that made it: revoking a device retires
the codes it made (else a stolen phone would mint one before it is logged out and come back as a
new device with it), and a new token retires them all.

No Tornado here: the registry only needs the SQLite connection the session store opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen_daemon.errors import BadRequest, DeviceNotFound, StorageUnavailable
from qwen_daemon.sessions.store import write_now
from qwen_daemon.terminal import control_in

if TYPE_CHECKING:
    from qwen_daemon.contract.responses import Device as DeviceJson

log = logging.getLogger(__name__)

#: longest device name
MAX_NAME = 100
#: bytes of randomness in a device's secret (the cookie value is its base64url text)
SECRET_BYTES = 32
#: bytes of randomness in a pairing code (128 bits)
CODE_BYTES = 16
#: seconds a pairing code is valid
PAIRING_TTL = 120.0
#: pairing codes live at once; issuing another retires the oldest
MAX_LIVE_CODES = 5
#: seconds a used or expired code is remembered (to say "used" or "expired", not "unknown")
REMEMBER_CODES = 600.0
#: codes remembered at most (used and expired ones included): memory stays bounded
MAX_REMEMBERED = 256
#: devices kept at most; a login beyond that retires the one seen longest ago
MAX_DEVICES = 200
#: a device's ``last_seen_at`` is written at most this often (seconds)
SEEN_EVERY = 60.0


def iso(timestamp: float) -> str:
    """``2026-12-07T12:00:00Z`` for an epoch time."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def hash_secret(secret: str) -> str:
    """What the database keeps of a secret (a device's, or a pairing code)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Device:
    id: str
    name: str
    secret_hash: str
    created_at: str
    last_seen_at: str

    def to_json(self, current: bool = False) -> DeviceJson:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "last_seen_at": self.last_seen_at,
            "current": current,
        }


#: (pattern, name) in order: the first match names the browser (Edge and Opera say "Chrome" too)
_BROWSERS = (
    (r"\bEdg(e|A|iOS)?/", "Edge"),
    (r"\bOPR/|\bOpera\b", "Opera"),
    (r"\bSamsungBrowser/", "Samsung Internet"),
    (r"\bFirefox/|\bFxiOS/", "Firefox"),
    (r"Chrom(e|ium)/|\bCriOS/", "Chrome"),  # HeadlessChrome/ too
    (r"\bVersion/[\d.]+.*\bSafari/", "Safari"),
    (r"^curl/", "curl"),
)
_SYSTEMS = (
    (r"\bAndroid\b", "Android"),
    (r"\biPhone\b", "iPhone"),
    (r"\biPad\b", "iPad"),
    (r"\bCrOS\b", "ChromeOS"),
    (r"\bWindows\b", "Windows"),
    (r"\bMac OS X\b|\bMacintosh\b", "macOS"),
    (r"\bLinux\b|\bX11\b", "Linux"),
)


def device_name(user_agent: str | None) -> str:
    """A name a person recognises, from the User-Agent: "Chrome on Android", "Firefox on Linux".

    A small heuristic, not a parser: a wrong guess only costs a rename.
    """
    text = (user_agent or "")[:512]
    browser = next((name for pattern, name in _BROWSERS if re.search(pattern, text)), None)
    system = next((name for pattern, name in _SYSTEMS if re.search(pattern, text)), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or (f"Browser on {system}" if system else "Unknown browser")


def validate_name(given: Any) -> str:
    """A device name: 1 to :data:`MAX_NAME` characters, no control characters (they would be obeyed
    by a terminal listing devices); surrounding whitespace is dropped."""
    if not isinstance(given, str):
        raise BadRequest("name must be a string")
    control = control_in(given) or next((f"U+{ord(c):04X}" for c in given if c in "\t\n\r"), None)
    if control is not None:
        raise BadRequest(f"name contains the control character {control}; names may not hold any")
    name = given.strip()
    if not name:
        raise BadRequest("name must not be empty")
    if len(name) > MAX_NAME:
        raise BadRequest(f"name is longer than {MAX_NAME} characters")
    return name


class DeviceRegistry:
    """Every device, cached in memory (a lookup per request must not touch the disk), written
    through to the ``devices`` table at once (autocommit). Single-threaded: the event loop's."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._by_hash: dict[str, Device] = {}
        self._by_id: dict[str, Device] = {}
        self._seen_written: dict[str, float] = {}
        #: called with a device's id once it is revoked (its cookie is dead by then); e.g. the
        #: daemon closes the device's WebSockets, push drops its subscriptions
        self.on_revoked: list[Callable[[str], object]] = []

    def load(self, db: sqlite3.Connection) -> None:
        self._db = db
        rows = db.execute(
            "SELECT id, name, secret_hash, created_at, last_seen_at FROM devices ORDER BY created_at, rowid"
        )
        for row in rows:
            device = Device(*row)
            self._by_id[device.id] = device
            self._by_hash[device.secret_hash] = device

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        if self._db is None:
            raise StorageUnavailable("the device list is not open yet")
        write_now(self._db, sql, args, "the device list")

    # --- reads --------------------------------------------------------------------------------

    def lookup(self, secret: str) -> Device | None:
        """The device whose secret this is, or None (compared by hash; see the module doc)."""
        if not secret or len(secret) > 200:
            return None
        return self._by_hash.get(hash_secret(secret))

    def list(self) -> list[Device]:
        """Oldest first (in the order they were made)."""
        return list(self._by_id.values())

    def get(self, device_id: str) -> Device:
        device = self._by_id.get(device_id)
        if device is None:
            raise DeviceNotFound(f"no device {device_id!r}; `qwen-daemon devices` lists them")
        return device

    # --- changes ------------------------------------------------------------------------------

    def create(self, name: str) -> tuple[Device, str]:
        """A new device and its secret (for the cookie; only its hash is kept)."""
        while len(self._by_id) >= MAX_DEVICES:
            oldest = min(self._by_id.values(), key=lambda d: d.last_seen_at)
            log.warning("%d devices: logging out %s, seen longest ago", MAX_DEVICES, oldest.id)
            self.revoke(oldest.id)
        secret = secrets.token_urlsafe(SECRET_BYTES)
        now = iso(self.clock())
        device = Device(secrets.token_hex(8), name[:MAX_NAME], hash_secret(secret), now, now)
        self._write(
            "INSERT INTO devices (id, name, secret_hash, created_at, last_seen_at) VALUES (?,?,?,?,?)",
            (device.id, device.name, device.secret_hash, device.created_at, device.last_seen_at),
        )
        self._by_id[device.id] = device
        self._by_hash[device.secret_hash] = device
        self._seen_written[device.id] = self.clock()
        log.info("new device %s (%s)", device.id, device.name)
        return device, secret

    def seen(self, device: Device) -> None:
        """Note a request from ``device``: ``last_seen_at`` moves, written at most once a minute."""
        now = self.clock()
        if now - self._seen_written.get(device.id, 0.0) < SEEN_EVERY:
            return
        self._seen_written[device.id] = now
        device.last_seen_at = iso(now)
        # a full disk must not refuse the request; the time is kept in memory meanwhile
        with contextlib.suppress(StorageUnavailable):
            self._write("UPDATE devices SET last_seen_at = ? WHERE id = ?", (device.last_seen_at, device.id))

    def rename(self, device_id: str, name: Any) -> Device:
        device = self.get(device_id)
        name = validate_name(name)
        self._write("UPDATE devices SET name = ? WHERE id = ?", (name, device_id))
        device.name = name
        return device

    def revoke(self, device_id: str) -> None:
        """Log a device out: its row goes, its cookie is dead from now, the hooks are told."""
        device = self.get(device_id)
        self._write("DELETE FROM devices WHERE id = ?", (device_id,))
        self._forget(device)
        log.info("device %s (%s) revoked", device.id, device.name)
        self._tell(device.id)

    def revoke_all(self) -> int:
        """Log every device out (a new token); returns how many there were. Memory first: even if
        the table cannot be written now, no old cookie works in this run of the daemon."""
        devices = list(self._by_id.values())
        for device in devices:
            self._forget(device)
        with contextlib.suppress(StorageUnavailable):  # logged; they stay out until a restart at least
            self._write("DELETE FROM devices", ())
        for device in devices:
            self._tell(device.id)
        return len(devices)

    def _forget(self, device: Device) -> None:
        self._by_id.pop(device.id, None)
        self._by_hash.pop(device.secret_hash, None)
        self._seen_written.pop(device.id, None)

    def _tell(self, device_id: str) -> None:
        for callback in list(self.on_revoked):
            try:
                callback(device_id)
            except Exception:
                log.exception("error in a device-revoked callback")


def revoke_all_stored(database: Path) -> int:
    """Log every device out in a daemon's database while it is stopped (``token rotate`` without
    a daemon): their rows go, with their push subscriptions, as :meth:`DeviceRegistry.revoke_all`
    and its hooks do in a running daemon. Without this, a new token left every old cookie working
    from the next start. Returns how many devices there were; raises ``sqlite3.Error``.
    """
    if not database.exists():
        return 0  # never started: nobody to log out (and no empty database made here)
    db = sqlite3.connect(f"file:{database}?mode=rw", uri=True, isolation_level=None, timeout=5.0)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "devices" not in tables:
            return 0  # made by a version without devices
        with db:
            db.execute("BEGIN IMMEDIATE")
            count: int = db.execute("DELETE FROM devices").rowcount
            if "push_subscriptions" in tables:
                db.execute("DELETE FROM push_subscriptions WHERE device_id IS NOT NULL")
        return count
    finally:
        db.close()


@dataclass
class _Code:
    expires: float
    used: bool = False
    #: the device that made it (None: the bearer token)
    issuer: str | None = None


class PairingCodes:
    """One-time pairing codes, in memory, hashed. ``clock`` and ``ttl`` are injectable (tests)."""

    def __init__(
        self,
        ttl: float = PAIRING_TTL,
        clock: Callable[[], float] = time.time,
        max_live: int = MAX_LIVE_CODES,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_live = max_live
        self._codes: OrderedDict[str, _Code] = OrderedDict()  # hash → code, oldest first

    def _sweep(self, now: float) -> None:
        for key, code in list(self._codes.items()):
            if code.expires + REMEMBER_CODES < now:
                del self._codes[key]
        while len(self._codes) > MAX_REMEMBERED:
            self._codes.popitem(last=False)

    def live(self) -> int:
        now = self.clock()
        return sum(1 for code in self._codes.values() if not code.used and code.expires > now)

    def issue(self, issuer: str | None = None) -> tuple[str, float]:
        """A new code, made by the device ``issuer`` (None: the token), and when it expires."""
        now = self.clock()
        self._sweep(now)
        live = [code for code in self._codes.values() if not code.used and code.expires > now]
        for old in live[: max(0, len(live) - self.max_live + 1)]:
            old.expires = now  # retired: it now reads as expired
        code = secrets.token_urlsafe(CODE_BYTES)
        expires = now + self.ttl
        self._codes[hash_secret(code)] = _Code(expires, issuer=issuer)
        return code, expires

    def retire(self, issuer: str | None = None, *, every: bool = False) -> None:
        """Expire the live codes ``issuer`` made (``every``: all codes): its credential is gone, so
        what it made must not log anyone in either (see the module doc)."""
        now = self.clock()
        for code in self._codes.values():
            if (every or code.issuer == issuer) and code.expires > now:
                code.expires = now

    def _find(self, code: str) -> tuple[_Code | None, str]:
        now = self.clock()
        self._sweep(now)
        entry = self._codes.get(hash_secret(code)) if 0 < len(code) <= 200 else None
        if entry is None:
            return None, "unknown"
        if entry.used:
            return entry, "used"
        if entry.expires <= now:
            return entry, "expired"
        return entry, "ok"

    def check(self, code: str) -> str:
        """What :meth:`redeem` would answer, without using the code up."""
        return self._find(code)[1]

    def redeem(self, code: str) -> str:
        """``"ok"`` (and the code is used up), ``"used"``, ``"expired"`` or ``"unknown"``."""
        entry, outcome = self._find(code)
        if entry is not None and outcome == "ok":
            entry.used = True
        return outcome

"""Durable storage for sessions, their events and pending permission requests (SQLite, WAL).

Durability rule: an event is committed before any client sees it. Events appended during one
turn of the event loop are written in one transaction at the end of that turn (``call_soon``), and
only then published to subscribers, HTTP readers and WebSockets
(:mod:`qwen_daemon.sessions.persistence` publishes, and decides when checkpoints run). With WAL
and ``synchronous=NORMAL`` a committed event survives a crash or ``kill -9`` of the daemon (it is
in the OS's hands); a power cut can lose the last moments, never corrupt the file.

Damage: a file that is not a database, or fails SQLite's quick check (run at each start unless the
file is exactly as a clean close left it), is moved aside (kept, named
``sessions.db.corrupt-<time>``) and a fresh one is started; the daemon logs both paths. A database
that cannot be opened or written (permissions, a full disk) stops the daemon from starting with
a message naming the file: silently starting empty would hide the user's sessions. Once running,
a commit that fails (the disk filled up) keeps its rows queued for the next try, so nothing is lost
while it lasts; :mod:`qwen_daemon.sessions.persistence` says so to clients and retries.

Schema changes go through ``migrations.MIGRATIONS``, applied in order and recorded in ``user_version``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from qwen_daemon.agents.translate import modes_of
from qwen_daemon.config import ConfigError
from qwen_daemon.contract.modes import Modes
from qwen_daemon.errors import StorageUnavailable
from qwen_daemon.jsontext import replace_lone_surrogates
from qwen_daemon.private_files import check_path, ensure_private_dir, open_private, write_private_file
from qwen_daemon.sessions.migrations import MIGRATIONS

log = logging.getLogger(__name__)


#: ``(seq, type, ts, payload)``: an event as stored
EventRow = tuple[int, str, str, str]


class StoreError(Exception):
    """The database cannot be used; the message names the file and what is wrong."""


def write_now(db: sqlite3.Connection, sql: str, args: tuple[Any, ...], what: str) -> None:
    """One statement on the autocommit connection the small tables share (devices, push
    subscriptions): a failure is logged and becomes ``StorageUnavailable`` (507), naming ``what``."""
    try:
        db.execute(sql, args)
    except sqlite3.Error as exc:
        log.error("cannot write %s: %s", what, exc)
        raise StorageUnavailable(f"{what} cannot be written: {exc}") from None


def check_database_files(path: Path) -> None:
    """The database's files (``lstat``: a link is judged, not its target), before anything reads
    them: a link or another user's file here is refused (:class:`StoreError`), never moved aside
    as damage. For every opener of the file: the store, and the CLI while no daemon runs."""
    try:
        for end in ("", "-wal", "-shm", ".clean"):
            check_path(Path(f"{path}{end}"))
    except ConfigError as exc:
        raise StoreError(f"cannot use the session database: {exc}") from None


@dataclass
class SessionRecord:
    id: str
    cwd: str
    title: str
    agent: str
    agent_session_id: str | None
    mode: str | None
    state: str
    failure: str | None
    created_at: str
    updated_at: str
    closed_at: float | None
    archived: bool = False
    #: the modes the agent offers this session, ``{available, current_mode_id}`` (JSON text on disk)
    modes: Modes | None = None


#: the sessions table's columns, in the order SessionRecord takes them
SESSION_FIELDS = tuple(f.name for f in fields(SessionRecord))


#: ``fdatasync`` where the platform has it (macOS has only ``fsync``)
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)

#: bytes the WAL file is cut back to whenever SQLite restarts it after a checkpoint
WAL_SIZE_LIMIT = 32 * 1024 * 1024
#: a database is at least one page (the smallest page size); this one's schema makes it more
SMALLEST_DATABASE = 512


class Store:
    """One SQLite database. Writes are queued and committed together by :meth:`flush`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.moved_aside: Path | None = None
        ensure_private_dir(path.parent)
        self._db = self._open()
        self._events: list[tuple[str, int, str, str, str]] = []
        self._writes: list[tuple[str, tuple[Any, ...]]] = []
        self._after_commit: list[Callable[[], None]] = []
        self._checkpoint_lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = self._checkpoint_connection()

    # --- opening ------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """SQLite opens files by name, following links: so the names were checked first
        (:func:`check_database_files`), the file is opened here without following links and judged by
        ``fstat`` (created 0600 from its first byte), and the connection's file must be that
        same file. Raises StoreError naming the path when any of that fails."""
        try:
            fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        except ConfigError as exc:
            raise StoreError(str(exc)) from None
        try:
            opened = os.fstat(fd)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            now = os.lstat(self.path)
        finally:
            os.close(fd)
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            db.close()
            raise StoreError(f"{self.path} was replaced while it was being opened; refusing to use it")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        # checkpoints (the only fsyncs with synchronous=NORMAL) run in a worker thread, never on
        # the event loop: see Store.checkpoint
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")  # give the disk back after a burst
        return db

    @property
    def _clean_marker(self) -> Path:
        return self.path.with_name(f"{self.path.name}.clean")

    def _left_by_clean_close(self) -> bool:
        """Whether the file is as :meth:`close` left it: then the quick check can be skipped. It
        reads every page (186 MB, 500k events: 2.2 s from a cold cache, at login), and a file no
        one has touched since a clean close has nothing new for it to find. The marker goes
        either way, so a crash from here on leaves none and the next start checks again."""
        try:
            recorded = self._clean_marker.read_text(encoding="ascii").split()
            self._clean_marker.unlink()
            stat = self.path.stat()
        except OSError:
            return False
        wal = Path(f"{self.path}-wal")
        return recorded == [str(stat.st_size), str(stat.st_mtime_ns)] and (
            not wal.exists() or wal.stat().st_size == 0
        )

    def _open(self) -> sqlite3.Connection:
        check_database_files(self.path)
        try:
            clean = self._left_by_clean_close()
            if self.path.exists() and (size := self.path.stat().st_size) < SMALLEST_DATABASE:
                # SQLite takes a truncated (e.g. empty) file for a new database and its quick
                # check passes: every session would be gone without a word
                raise sqlite3.DatabaseError(f"the file is {size} bytes long, too short for a database")
            db = self._connect()
            if not clean and db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                db.close()
                raise sqlite3.DatabaseError("quick_check failed")
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not _is_corruption(exc):
                raise StoreError(f"cannot open the session database {self.path}: {exc}") from None
            self._move_aside(exc)
            try:
                db = self._connect()
            except sqlite3.Error as again:
                raise StoreError(f"cannot create the session database {self.path}: {again}") from None
        except OSError as exc:
            raise StoreError(f"cannot open the session database {self.path}: {exc.strerror or exc}") from None
        try:
            self._migrate(db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the session database {self.path}: {exc}") from None
        return db

    def _move_aside(self, exc: Exception) -> None:
        target = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(target) + suffix))
        self.moved_aside = target
        log.error(
            "session database %s is damaged (%s); moved it to %s and started a new one",
            self.path,
            exc,
            target,
        )

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this qwen-daemon understands ({len(MIGRATIONS)})"
            )
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            if isinstance(step, str):
                db.executescript(f"BEGIN;\n{step}\nPRAGMA user_version={number};\nCOMMIT;")
                continue
            db.execute("BEGIN")
            try:
                step(db)
                db.execute(f"PRAGMA user_version={number}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _checkpoint_connection(self) -> sqlite3.Connection:
        """The checkpointer's connection, with the WAL open from the start: opened only once the
        WAL had been deleted under a running daemon, it made a new, empty WAL and checkpointed
        nothing, so everything since the deletion was lost at the next start."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA user_version").fetchall()  # a read (run to its end): it opens the WAL
        return db

    def checkpoint(self) -> int | None:
        """Copy the WAL into the database file (PASSIVE: never blocks writers). Thread-safe.

        Returns the frames the WAL held when it began (how far the WAL has grown since it last
        started over), or None when it could not run. Why a connection of its own, used in a
        worker thread: a checkpoint fsyncs, and an fsync on a busy disk can take tens of
        milliseconds, which on the event loop would stall every stream.
        """
        with self._checkpoint_lock:
            try:
                if self._checkpointer is None:
                    self._checkpointer = self._checkpoint_connection()
                (row,) = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                log.warning("cannot checkpoint %s: %s", self.path, exc)
                return None
        return int(row[1])

    def sync(self) -> None:
        """Write the WAL's and the database file's dirty pages to disk (``fdatasync``). Thread-safe.

        Why: a checkpoint's own fsyncs then find little left to write. That matters for the one
        that holds commits (:class:`~qwen_daemon.sessions.persistence.Persistence`): what it has
        to flush is what every held event waits for.
        """
        for name in (f"{self.path}-wal", str(self.path)):
            try:
                fd = os.open(name, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                _datasync(fd)
            except OSError as exc:
                log.warning("cannot sync %s: %s", name, exc)
            finally:
                os.close(fd)

    def close(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # a full disk at the stop: what is committed stays, closed cleanly
            queued = len(self._events) + len(self._writes)
            log.error("closing %s: %d queued rows cannot be written and are lost: %s", self.path, queued, exc)
        try:
            with self._checkpoint_lock:
                if self._checkpointer is not None:
                    self._checkpointer.close()
                    self._checkpointer = None
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            stat = self.path.stat()
            write_private_file(self._clean_marker, f"{stat.st_size} {stat.st_mtime_ns}\n")
        except (sqlite3.Error, OSError) as exc:  # no marker: the next start runs the quick check
            log.warning("closing %s: %s", self.path, exc)
            with contextlib.suppress(sqlite3.Error):
                self._db.close()

    # --- writes (queued) ----------------------------------------------------------------------

    def add_event(self, session_id: str, seq: int, type_: str, ts: str, payload: str) -> None:
        self._events.append((session_id, seq, type_, ts, payload))

    def save_session(self, record: SessionRecord) -> None:
        placeholders = ",".join("?" for _ in SESSION_FIELDS)
        self._writes.append(
            (
                f"INSERT OR REPLACE INTO sessions ({','.join(SESSION_FIELDS)}) VALUES ({placeholders})",  # noqa: S608 (column names are constants)
                tuple(_column(getattr(record, f)) for f in SESSION_FIELDS),
            )
        )

    def save_permission(
        self, session_id: str, request_id: str, payload: Mapping[str, Any], status: str
    ) -> None:
        self._writes.append(
            (
                "INSERT OR REPLACE INTO permissions VALUES (?,?,?,?)",
                (session_id, request_id, json.dumps(payload), status),
            )
        )

    def delete_session(self, session_id: str) -> None:
        for table, column in (("events", "session_id"), ("permissions", "session_id"), ("sessions", "id")):
            self._writes.append((f"DELETE FROM {table} WHERE {column} = ?", (session_id,)))  # noqa: S608

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once what is queued now is committed."""
        self._after_commit.append(callback)

    @property
    def dirty(self) -> bool:
        return bool(self._events or self._writes or self._after_commit)

    def flush(self) -> int:
        """Commit everything queued in one transaction, then run the after-commit callbacks.

        Returns how many rows it wrote."""
        if not self.dirty:
            return 0
        events, writes, callbacks = self._events, self._writes, self._after_commit
        self._events, self._writes, self._after_commit = [], [], []
        db = self._db
        try:
            db.execute("BEGIN")
            if events:
                db.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?)", events)
            for sql, args in writes:
                db.execute(sql, args)
            db.execute("COMMIT")
            rows = len(events) + len(writes)
        except UnicodeEncodeError:
            # a lone surrogate in a value an agent sent (events are JSON text, escaped already)
            if db.in_transaction:
                db.execute("ROLLBACK")
            log.warning("a value held a lone surrogate; it is stored with U+FFFD in its place")
            self._events = [_text(row) for row in events] + self._events
            self._writes = [(sql, _text(args)) for sql, args in writes] + self._writes
            self._after_commit = callbacks + self._after_commit
            return self.flush()
        except Exception:
            # keep the data queued (first: a ROLLBACK can fail too): a later flush may succeed,
            # e.g. once disk space is freed
            self._events, self._writes = events + self._events, writes + self._writes
            self._after_commit = callbacks + self._after_commit
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        for callback in callbacks:
            callback()
        return rows

    # --- reads --------------------------------------------------------------------------------

    @property
    def connection(self) -> sqlite3.Connection:
        """The database, for the small tables other modules keep (devices): autocommit, at once."""
        return self._db

    def sessions(self) -> list[SessionRecord]:
        rows = self._db.execute(f"SELECT {','.join(SESSION_FIELDS)} FROM sessions ORDER BY created_at, id")  # noqa: S608 (column names are constants)
        return [_record(row) for row in rows]

    def events(self, session_id: str, after: int = 0, limit: int | None = None) -> list[EventRow]:
        """``(seq, type, ts, payload)`` rows with ``seq > after``, oldest first."""
        sql = "SELECT seq, type, ts, payload FROM events WHERE session_id = ? AND seq > ? ORDER BY seq"
        args: tuple[Any, ...] = (session_id, after)
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        return list(self._db.execute(sql, args))

    def last_turn_event(self, session_id: str) -> EventRow | None:
        """The session's newest ``turn_started`` or ``turn_ended`` event, however far back."""
        row: EventRow | None = self._db.execute(
            "SELECT seq, type, ts, payload FROM events WHERE session_id = ?"
            " AND type IN ('turn_started', 'turn_ended') ORDER BY seq DESC LIMIT 1",
            (session_id,),
        ).fetchone()
        return row

    def tail_events(self, session_id: str, count: int) -> list[EventRow]:
        rows = self._db.execute(
            "SELECT seq, type, ts, payload FROM events WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
            (session_id, count),
        ).fetchall()
        rows.reverse()
        return rows

    def last_seq(self, session_id: str) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM events WHERE session_id = ?", (session_id,)).fetchone()
        return int(row[0] or 0)

    def permissions(self, session_id: str, status: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT payload FROM permissions WHERE session_id = ? AND status = ?", (session_id, status)
        )
        return [json.loads(r[0]) for r in rows]

    def permission_status(self, session_id: str, request_id: str) -> str | None:
        row = self._db.execute(
            "SELECT status FROM permissions WHERE session_id = ? AND request_id = ?", (session_id, request_id)
        ).fetchone()
        return str(row[0]) if row else None

    def prunable(self, older_than: float) -> list[str]:
        """Ids of closed sessions closed before ``older_than`` (epoch seconds)."""
        rows = self._db.execute(
            "SELECT id FROM sessions WHERE state = 'closed' AND closed_at IS NOT NULL AND closed_at < ?",
            (older_than,),
        )
        return [r[0] for r in rows]


def prune_offline(path: Path, older_than_days: float) -> list[str]:
    """With the daemon stopped: delete closed sessions closed more than the given days ago."""
    if not path.exists():
        return []
    store = Store(path)
    try:
        pruned = store.prunable(time.time() - older_than_days * 86400)
        for session_id in pruned:
            store.delete_session(session_id)
    finally:
        store.close()
    return pruned


def _column(value: Any) -> Any:
    """A record field as SQLite stores it: ``modes`` (a dict) as JSON text, ``archived`` as 0/1."""
    return json.dumps(value) if isinstance(value, dict) else int(value) if isinstance(value, bool) else value


def _record(row: tuple[Any, ...]) -> SessionRecord:
    record = SessionRecord(*row)
    record.archived = bool(record.archived)
    try:
        modes = json.loads(record.modes) if isinstance(record.modes, str) else None
    except ValueError:  # damaged text must not keep the session from being listed
        modes = None
    record.modes = modes_of(modes)  # checked: a damaged value is no modes, not a crash later
    return record


def _text(values: tuple[Any, ...]) -> Any:
    """The row with each string's lone surrogates replaced: SQLite can store only UTF-8 text."""
    return tuple(replace_lone_surrogates(v) for v in values)


def _is_corruption(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("not a database", "malformed", "corrupt", "quick_check"))

"""The SQLite store: schema, batching, damage handling."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.sessions.migrations import MIGRATIONS
from qwen_daemon.sessions.store import SessionRecord, Store, StoreError


def record(session_id: str = "s1", state: str = "idle") -> SessionRecord:
    return SessionRecord(session_id, "/w", "t", "agent", "a-1", "plan", state, None, "c", "u", None)


def test_schema_version_file_mode_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sessions.db"
    store = Store(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    store.save_session(record())
    store.add_event("s1", 1, "state", "ts", '{"seq":1}')
    store.add_event("s1", 2, "state", "ts", '{"seq":2}')
    store.save_permission("s1", "r1", {"request_id": "r1"}, "pending")
    done: list[str] = []
    store.after_commit(lambda: done.append("committed"))
    assert store.events("s1") == []  # queued, not yet committed
    store.flush()
    assert done == ["committed"]
    store.close()

    again = Store(path)
    assert again.sessions() == [record()]
    assert [seq for seq, *_ in again.events("s1")] == [1, 2]
    assert [seq for seq, *_ in again.events("s1", after=1)] == [2]
    assert [seq for seq, *_ in again.tail_events("s1", 1)] == [2]
    assert again.last_seq("s1") == 2
    assert again.permissions("s1", "pending") == [{"request_id": "r1"}]
    assert again.permission_status("s1", "r1") == "pending"
    again.delete_session("s1")
    again.flush()
    assert again.sessions() == [] and again.events("s1") == []
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == len(MIGRATIONS)
    again.close()


def test_corrupt_database_is_moved_aside_and_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "sessions.db"
    path.write_bytes(b"this is not a database at all" * 100)
    store = Store(path)
    assert store.moved_aside is not None and store.moved_aside.exists()
    assert store.moved_aside.read_bytes().startswith(b"this is not a database")
    assert str(store.moved_aside) in caplog.text and "damaged" in caplog.text
    assert store.sessions() == []
    store.close()


def test_damaged_pages_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    store = Store(path)
    for i in range(200):
        store.save_session(record(f"s{i}"))
    store.flush()
    store.close()
    data = bytearray(path.read_bytes())
    data[4096 : 4096 + 64] = b"\xff" * 64  # smash the b-tree header of the second page
    before = path.stat()
    path.write_bytes(bytes(data))
    # any later write moves the mtime; this one may land within the clock tick of the close
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    store = Store(path)
    assert store.moved_aside is not None
    store.close()


def quick_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every quick check a Store runs from now on."""
    seen: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = connect(*args, **kwargs)
        db.set_trace_callback(lambda sql: seen.append(sql) if "quick_check" in sql else None)
        return db

    monkeypatch.setattr(sqlite3, "connect", traced)  # every connection a Store opens
    return seen


def test_quick_check_runs_unless_the_file_is_as_a_clean_close_left_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sessions.db"
    checks = quick_checks(monkeypatch)
    store = Store(path)  # a new file: checked
    store.save_session(record("s1"))
    store.flush()
    store.close()
    assert len(checks) == 1
    Store(path).close()  # as the clean close left it: not checked
    assert len(checks) == 1
    running = Store(path)  # not checked either; its marker is gone now that it is open
    running.add_event("s1", 1, "state", "t", "{}")
    running.flush()
    try:
        Store(path).close()  # the daemon before was killed (-9) while running: checked
        assert len(checks) == 2
    finally:
        running.connection.close()
    Store(path).close()  # as the last clean close left it
    assert len(checks) == 2
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000))  # changed since: checked again
    Store(path).close()
    assert len(checks) == 3


def test_unusable_database_refuses_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    path.mkdir()  # a directory where the file should be: cannot be opened, is not "damage"
    with pytest.raises(StoreError, match=str(path)):
        Store(path)
    assert path.is_dir()


def test_newer_schema_is_refused_not_downgraded(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 5}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_checkpoint_reports_how_long_the_wal_was_and_copies_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "sessions.db")
    for seq in range(1, 51):
        store.add_event("s1", seq, "agent_message_chunk", "ts", "x" * 300)
        store.flush()
    frames = store.checkpoint()
    assert frames is not None and frames >= 50  # a frame per commit at least
    store.sync()  # nothing to check but that it runs on both files
    store.add_event("s1", 51, "agent_message_chunk", "ts", "y")
    store.flush()  # every frame was copied: this commit starts the WAL over
    assert (store.checkpoint() or 0) < 10
    store.close()


def test_a_lone_surrogate_in_a_value_is_stored_as_u_fffd(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent's text may hold a lone surrogate, which UTF-8 (so SQLite) cannot: the whole batch
    used to fail, left the transaction open and lost every queued row."""
    store = Store(tmp_path / "sessions.db")
    broken = SessionRecord("s1", "/w", "t", "agent", "a-\ud800", None, "failed", "no \udfff", "c", "u", None)
    store.save_session(broken)
    store.add_event("s1", 1, "error", "ts", '{"seq":1,"message":"\ud800"}')  # not escaped: a bug upstream
    store.add_event("s2", 1, "state", "ts", '{"seq":1}')
    done: list[str] = []
    store.after_commit(lambda: done.append("committed"))
    assert store.flush() == 3
    assert done == ["committed"]
    assert "lone surrogate" in caplog.text
    (saved,) = store.sessions()
    assert (saved.agent_session_id, saved.failure) == ("a-\ufffd", "no \ufffd")
    assert store.events("s1")[0][3] == '{"seq":1,"message":"\ufffd"}'
    assert [seq for seq, *_ in store.events("s2")] == [1]
    store.save_session(record("s3"))  # the connection is usable afterwards
    store.flush()
    assert len(store.sessions()) == 2
    store.close()


@pytest.mark.parametrize("keep_wal", [True, False])
def test_a_truncated_database_is_moved_aside_not_taken_for_a_new_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, keep_wal: bool
) -> None:
    """SQLite opens a zero-byte file as an empty database and its quick check passes: every
    session was gone after a restart without a log line, and the WAL was overwritten."""
    path = tmp_path / "sessions.db"
    store = Store(path)
    store.save_session(record())
    store.flush()
    wal = Path(f"{path}-wal")
    wal_bytes = wal.read_bytes()  # as a crash leaves it: the WAL still holds the session
    store.close()
    path.write_bytes(b"")
    if keep_wal:
        wal.write_bytes(wal_bytes)
    again = Store(path)
    assert again.moved_aside is not None and "too short" in caplog.text
    assert str(again.moved_aside) in caplog.text
    assert again.sessions() == []
    if keep_wal:
        assert Path(f"{again.moved_aside}-wal").read_bytes() == wal_bytes
    again.close()


def test_a_wal_deleted_under_a_running_store_loses_nothing(tmp_path: Path) -> None:
    """Someone deletes sessions.db-wal and -shm while the daemon runs (a cleanup script, a
    user): both connections keep the files they opened, so checkpoints still copy every row."""
    path = tmp_path / "sessions.db"
    store = Store(path)
    store.save_session(record("before"))
    store.flush()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink()
    store.save_session(record("after"))
    store.flush()
    assert store.checkpoint() is not None
    store.connection.close()  # as a crash would leave it, without close()'s own checkpoint
    again = Store(path)
    assert sorted(r.id for r in again.sessions()) == ["after", "before"]
    again.close()

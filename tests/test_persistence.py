"""Persistence: commit, then publish; checkpoints at pauses, catch-up, and the holding bound."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from qwen_daemon.errors import StorageUnavailable
from qwen_daemon.sessions.events import Event, EventLog
from qwen_daemon.sessions.persistence import Persistence
from qwen_daemon.sessions.store import Store
from tests.support.probe import until


class GatedStore(Store):
    """A real store whose checkpoints each wait for one ``gate.release()`` (so a test can look at
    what happens while one is in flight) and report ``frames`` as the WAL's length."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Semaphore(0)
        self.frames = 0
        self.started: list[int] = []  # committed events when each checkpoint began
        self.syncs = 0

    def checkpoint(self) -> int | None:
        self.started.append(len(self.events("s1")))
        assert self.gate.acquire(timeout=10), "the test never opened the gate"
        super().checkpoint()
        return self.frames

    def sync(self) -> None:
        self.syncs += 1
        super().sync()


def gated(tmp_path: Path, **policy: float) -> tuple[Persistence, GatedStore, EventLog]:
    store = GatedStore(tmp_path / "sessions.db")
    persist = Persistence(store)
    persist.CHECKPOINT_ROWS = 5
    for name, value in policy.items():
        setattr(persist, name, value)
    return persist, store, EventLog(sink=persist.sink_for("s1"))


async def append(log: EventLog, count: int, pause: float = 0.0) -> None:
    """``count`` events, each committed in its own loop turn, ``pause`` seconds apart."""
    for _ in range(count):
        log.append("agent_message_chunk", text="x")
        await asyncio.sleep(pause)


async def test_events_publish_only_once_committed(tmp_path: Path) -> None:
    async def main() -> None:
        persist = Persistence(Store(tmp_path / "sessions.db"))
        log = EventLog(sink=persist.sink_for("s1"))
        log.append("agent_message_chunk", text="x")
        assert log.last_seq == 0 and persist.store.events("s1") == []
        await asyncio.sleep(0)
        assert log.last_seq == 1 and len(persist.store.events("s1")) == 1
        persist.close()

    await main()


async def test_a_due_checkpoint_waits_for_a_pause_then_runs_beside_commits(tmp_path: Path) -> None:
    """Due after CHECKPOINT_ROWS, it starts only once commits pause; commits made while it runs
    are published at once (it holds nobody)."""

    async def main() -> None:
        persist, store, log = gated(tmp_path, QUIET_SECONDS=0.05, DUE_SECONDS=30)
        await append(log, 5)
        await append(log, 20, pause=0.01)  # a stream with no 50 ms pause in it
        assert store.started == [], "a checkpoint started while the stream ran"
        await until(lambda: store.started == [25])  # the stream stopped: it starts
        await append(log, 3)
        assert log.last_seq == 28, "events waited for a checkpoint that does not need them to"
        store.gate.release()
        await until(lambda: not persist.writing)
        assert persist.stats == {"checkpoints": 1, "catch_ups": 0, "overdue": 0, "holds": 0}
        persist.close()

    await main()


async def test_on_a_stream_with_no_pause_an_overdue_checkpoint_starts_anyway(tmp_path: Path) -> None:
    async def main() -> None:
        persist, store, log = gated(tmp_path, QUIET_SECONDS=0.05, DUE_SECONDS=0.1)
        await append(log, 5)
        streaming = asyncio.create_task(append(log, 1000, pause=0.005))
        await until(lambda: store.started != [])
        assert not streaming.done() and persist.stats["overdue"] == 1
        streaming.cancel()
        store.gate.release()
        await until(lambda: not persist.writing)
        persist.close()

    await main()


async def test_a_checkpoint_that_ran_beside_commits_is_followed_by_a_catch_up(tmp_path: Path) -> None:
    """Past CATCHUP_FRAMES, a checkpoint that may have missed frames committed while it ran is
    followed by another at the next pause; one that ran alone is not."""

    async def main() -> None:
        persist, store, log = gated(tmp_path, QUIET_SECONDS=0.01, CATCHUP_FRAMES=100)
        store.frames = 150
        await append(log, 5)
        await until(lambda: store.started == [5])
        await append(log, 2)  # committed beside it
        store.gate.release()
        await until(lambda: store.started == [5, 7])  # the catch-up
        store.gate.release()  # it ran alone: nothing follows
        await until(lambda: not persist.writing)
        await asyncio.sleep(0.05)
        assert store.started == [5, 7] and persist.stats["catch_ups"] == 1
        assert persist.stats["holds"] == 0 and log.last_seq == 7
        persist.close()

    await main()


async def test_past_hold_frames_the_wal_is_synced_then_a_checkpoint_holds_commits(tmp_path: Path) -> None:
    """The bound for a stream that never pauses: the dirty pages are synced beside live commits,
    then the next checkpoint holds commits until it is done (events stay unpublished meanwhile,
    nothing is lost), so every frame is copied and the WAL can start over."""

    async def main() -> None:
        persist, store, log = gated(tmp_path, QUIET_SECONDS=0.01, HOLD_FRAMES=100)
        store.frames = 150
        await append(log, 5)
        await until(lambda: store.started == [5])
        await append(log, 3)
        assert log.last_seq == 8, "the first checkpoint held commits"
        store.gate.release()
        await until(lambda: store.started == [5, 8])  # the holding one, after a sync
        assert store.syncs == 1 and persist.stats["holds"] == 1
        await append(log, 2)
        assert log.last_seq == 8 and len(store.events("s1")) == 8, "commits were not held"
        store.gate.release()
        await until(lambda: log.last_seq == 10)
        assert len(store.events("s1")) == 10
        await until(lambda: not persist.writing)
        persist.close()

    await main()


def _wal_size(store: Store) -> int:
    return Path(f"{store.path}-wal").stat().st_size


async def test_the_wal_stays_bounded_under_a_stream_that_never_pauses(tmp_path: Path) -> None:
    async def main() -> None:
        store = Store(tmp_path / "sessions.db")
        persist = Persistence(store)
        persist.CHECKPOINT_ROWS, persist.CATCHUP_FRAMES, persist.HOLD_FRAMES = 50, 100, 400
        persist.DUE_SECONDS = 0.01
        logs = [EventLog(sink=persist.sink_for(f"s{i}")) for i in range(20)]
        largest = 0
        for n in range(3000):  # one small commit per loop turn, 20 sessions interleaved
            logs[n % 20].append("agent_message_chunk", text="x" * 200)
            await asyncio.sleep(0)
            largest = max(largest, _wal_size(store))
        await until(lambda: not persist.writing)
        assert persist.stats["holds"] >= 1
        persist.close()
        # 3,000 single-event commits write ~25 MB of WAL frames; restarts keep the file at a few
        assert largest < 8 * 1024 * 1024, f"the WAL grew to {largest / 2**20:.1f} MiB"

    await main()


async def test_between_bursts_the_wal_starts_over_without_holding_anyone(tmp_path: Path) -> None:
    """Agents write in bursts (a reply's chunks, then the model thinks): checkpoints run in the
    pauses, catch up, and the WAL starts over with no hold, so no stream ever waits for one."""

    async def main() -> None:
        store = Store(tmp_path / "sessions.db")
        persist = Persistence(store)
        persist.CHECKPOINT_ROWS, persist.CATCHUP_FRAMES, persist.HOLD_FRAMES = 100, 100, 1000
        logs = [EventLog(sink=persist.sink_for(f"s{i}")) for i in range(20)]
        largest = 0
        for _ in range(60):  # 60 bursts of 40 commits, 50 ms apart: 2,400 commits, ~25 MB
            for n in range(40):
                logs[n % 20].append("agent_message_chunk", text="x" * 200)
                await asyncio.sleep(0)
            largest = max(largest, _wal_size(store))
            await asyncio.sleep(0.05)
        await until(lambda: not persist.writing)
        assert persist.stats["checkpoints"] >= 10
        # Nobody is ever held. A checkpoint may start overdue (beside commits, still holding no
        # one) when a loaded machine keeps the loop from seeing a pause: a few, not most.
        assert persist.stats["holds"] == 0 and persist.stats["overdue"] <= 3, persist.stats
        persist.close()
        assert largest < 6 * 1024 * 1024, f"the WAL grew to {largest / 2**20:.1f} MiB"

    await main()


async def test_a_failing_checkpoint_is_logged_and_the_next_one_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class FailingOnce(Store):
        calls = 0

        def checkpoint(self) -> int | None:
            FailingOnce.calls += 1
            if FailingOnce.calls == 1:
                raise OSError("disk on fire")
            return super().checkpoint()

    async def main() -> None:
        persist = Persistence(FailingOnce(tmp_path / "sessions.db"))
        persist.CHECKPOINT_ROWS, persist.QUIET_SECONDS = 5, 0.001
        log = EventLog(sink=persist.sink_for("s1"))
        await append(log, 5)
        await until(lambda: FailingOnce.calls == 1 and not persist.writing)
        await append(log, 5)
        await until(lambda: FailingOnce.calls == 2 and not persist.writing)
        assert log.last_seq == 10
        persist.close()

    await main()
    assert "WAL checkpoint or sync failed: disk on fire" in caplog.text


class Unwritable(Store):
    """A real store whose commits fail while ``broken`` (as a database gone read-only does)."""

    broken = False
    failed = 0  # commits refused so far

    def flush(self) -> int:
        if self.broken and self.dirty:
            self.failed += 1
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return super().flush()


async def test_failing_commits_degrade_tell_live_clients_once_and_recover_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14, finding 6 without a filesystem: while commits fail the persistence is degraded
    (the reason, 507 for writes), each session's live clients hear it once as an error frame
    with no seq, the failure is logged once (not at every retry), and the first commit that
    succeeds publishes the held events and the durable error event in order."""

    async def main() -> None:
        store = Unwritable(tmp_path / "sessions.db")
        persist = Persistence(store)
        persist.RETRY_SECONDS = 0.01
        changes: list[str | None] = []
        persist.listeners.append(changes.append)
        logs = {name: EventLog(sink=persist.sink_for(name)) for name in ("s1", "s2")}
        frames: dict[str, list[tuple[int, str]]] = {"s1": [], "s2": []}
        for name, log in logs.items():

            def record(e: Event, name: str = name) -> None:
                frames[name].append((e.seq, e.json))

            log.subscribe(0, record)
        logs["s1"].append("agent_message_chunk", text="saved")
        await until(lambda: logs["s1"].last_seq == 1)
        persist.require_writable()  # nothing failed yet

        store.broken = True
        logs["s1"].append("agent_message_chunk", text="held")
        await until(lambda: persist.failure is not None)
        assert persist.failure == "cannot write the session database: attempt to write a readonly database"
        with pytest.raises(StorageUnavailable, match="readonly database"):
            persist.require_writable()
        notices = [json.loads(text) for seq, text in frames["s1"] if seq == 0]
        assert [n["error"]["code"] for n in notices] == ["storage_unavailable"]
        assert frames["s2"] == [], "a session with nothing held was told"
        logs["s2"].append("agent_message_chunk", text="held too")  # talks while degraded: told at once
        assert [seq for seq, _ in frames["s2"]] == [0]
        failed = store.failed
        await until(lambda: store.failed >= failed + 3)  # retries that fail again
        assert len([r for r in caplog.records if "readonly" in r.getMessage()]) == 1
        assert logs["s1"].last_seq == 1 and len(store.events("s1")) == 1

        store.broken = False
        await until(lambda: persist.failure is None)
        assert changes == ["cannot write the session database: attempt to write a readonly database", None]
        persist.require_writable()
        published = [json.loads(text) for seq, text in frames["s1"] if seq]
        assert [(e["seq"], e["type"]) for e in published] == [
            (1, "agent_message_chunk"),
            (2, "agent_message_chunk"),
            (3, "error"),
        ]
        assert [(seq, type_) for seq, type_, _ts, _payload in store.events("s1")] == [
            (1, "agent_message_chunk"),
            (2, "agent_message_chunk"),
            (3, "error"),
        ]
        assert [e.seq for e in logs["s2"].since(0)] == [1, 2]
        persist.close()

    await main()

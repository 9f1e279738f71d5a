"""Glue between live sessions and the store: one transaction per event-loop turn, then publish;
and when the WAL is copied back into the database (checkpoints), so that streams never wait on it.

Everything queued while the loop runs one turn (events of every session, session rows,
permission rows) is committed by a single ``call_soon`` callback; then the event logs that were
waiting publish to their clients. A failed commit keeps everything queued, logs the reason, and
retries a second later: clients see nothing they could lose.

A failing commit (a full disk, a database gone read-only) must not stall clients silently, so
until one succeeds again the daemon is *degraded* (:attr:`Persistence.failure`): ``/health`` and
``qwen-daemon status`` say so with the reason, and commands that would write are refused with 507
(:meth:`Persistence.require_writable`). Each session whose events are held is told at once with
an ``error`` frame on its live streams (see :meth:`Persistence._tell` for how that one frame is
seen before it is committed without breaking the rule for anything else). Recovery needs nobody:
the retry that succeeds commits the held events in order and publishes them.

Checkpoints copy the WAL back into the database in a worker thread (PASSIVE: commits go on). Each
fsyncs, and on a shared disk that slows the loop's own WAL writes, so a due checkpoint (every
:attr:`Persistence.CHECKPOINT_ROWS` rows) waits for a pause: no commit for
:attr:`Persistence.QUIET_SECONDS`. Agents write in bursts (a reply's chunks, then the model
thinks; the bench's 50 paced sessions every 20 ms), so one comes soon; on a stream with no pause
it starts anyway after :attr:`Persistence.DUE_SECONDS`.

The WAL file only starts over when a commit finds every frame already copied, which a checkpoint
that overlapped commits did not achieve; under a stream that never pauses the WAL would grow
without bound. Two ways there:

* **catch-up** (free): past :attr:`Persistence.CATCHUP_FRAMES`, a checkpoint that had commits
  beside it is followed by another at the next pause. It has only the frames since the last to
  copy, so it is short and usually falls between two bursts: then it copies everything and the
  next commit starts the WAL over. Nobody waits.
* **hold** (the bound): past :attr:`Persistence.HOLD_FRAMES` the next checkpoint holds commits
  until it is done, so it always catches up. Events stay unpublished meanwhile, nothing is lost.
  Before it, the dirty pages are synced beside live commits, so the fsyncs inside the hold, which
  every held event waits for, have little left to write.

Measured with ``bench/relay.py`` (50 paced sessions, same hour, alternating builds): holding a
checkpoint every 4,000 rows and starting them at any moment (the policy before) gave a p99 of
5.7-13 ms; this one 3.1-7.4 ms, with no hold at all while sessions stream in bursts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from qwen_daemon import jsontext
from qwen_daemon.errors import StorageUnavailable, error_frame
from qwen_daemon.sessions.events import Backfill, Event, EventLog, EventSink
from qwen_daemon.sessions.store import SessionRecord, Store

log = logging.getLogger(__name__)


def _stored_event(seq: int, type_: str, ts: str, text: str) -> Event:
    """An event read back from the store, its JSON on one line.

    Clients take one WebSocket message as newline-delimited events, so a raw newline would split
    a frame in two. The daemon's own JSON never has one; a row written by other means (a damaged
    or hand-edited database) may, and in valid JSON it can only be whitespace between tokens, so
    a space in its place keeps the meaning. Done here, where such text enters, not for every
    event the relay sends.
    """
    return Event(seq, type_, ts, text.replace("\n", " ") if "\n" in text else text)


class Persistence:
    """Commits what live sessions queue once per loop turn, publishes after it, checkpoints."""

    RETRY_SECONDS = 1.0
    #: committed rows after which a PASSIVE checkpoint starts in a worker thread, commits going
    #: on meanwhile. Small and frequent: the fsyncs of a checkpoint grow with what it copies.
    CHECKPOINT_ROWS = 1000
    #: WAL frames (8 MiB of 4 KiB pages) past which checkpoints follow each other until the WAL
    #: has started over (see the module's docstring)
    CATCHUP_FRAMES = 2000
    #: WAL frames (32 MiB) past which the next checkpoint holds commits: the WAL's bound
    HOLD_FRAMES = 8000
    #: a due checkpoint starts once no commit has happened for this long (between two bursts)...
    QUIET_SECONDS = 0.002
    #: ...or, on a stream with no such pause, once it has been due this long
    DUE_SECONDS = 0.1

    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiting_logs: list[EventLog] = []
        self._dirty: dict[str, Callable[[], SessionRecord]] = {}
        self._deleted: set[str] = set()  # ids are random: one is never made again
        self._scheduled = False
        self._checkpointing: asyncio.Future[Any] | None = None
        self._uncheckpointed = 0  # rows committed since the last checkpoint started
        self._due: float | None = None  # since when a checkpoint is due (time.monotonic)
        self._timer: asyncio.TimerHandle | None = None
        self._last_commit = 0.0  # time.monotonic
        self._holding = False  # commits wait for the running checkpoint
        self._closed = False
        #: checkpoints run; catch-up ones, ones started with no pause in sight, and holds among
        #: them (logged at close; for tests and the bench)
        self.stats = {"checkpoints": 0, "catch_ups": 0, "overdue": 0, "holds": 0}
        #: why commits fail, in words for clients (no path: ``/health`` is public); None while
        #: they succeed. Set, the daemon is degraded (see the module's docstring).
        self.failure: str | None = None
        #: called with :attr:`failure` each time it changes (sd_notify STATUS)
        self.listeners: list[Callable[[str | None], None]] = []
        self._told: set[EventLog] = set()  # logs whose clients have heard of the current failure

    def sink_for(self, session_id: str) -> EventSink:
        def sink(log: EventLog, event: Event) -> None:
            if session_id in self._deleted:
                return
            self.store.add_event(session_id, event.seq, event.type, event.ts, event.json)
            if not self._waiting_logs or self._waiting_logs[-1] is not log:
                self._waiting_logs.append(log)
            if self.failure is not None and log not in self._told:
                self._tell(log)  # a session that starts talking while commits fail
            self._schedule()

        return sink

    @property
    def writing(self) -> bool:
        """A checkpoint, catch-up or hold runs on the writer thread, its outcome not yet applied:
        what a caller (or a test) waits out before reading ``stats`` or ``failure`` as settled."""
        return self._checkpointing is not None

    def require_writable(self) -> None:
        """Raise :class:`StorageUnavailable` (507) while commits fail: a prompt accepted then would
        run a turn no client sees and nothing saves (issue 14, finding 6)."""
        if self.failure is not None:
            raise StorageUnavailable(
                f"{self.failure}; commands that must be saved are refused until a write succeeds again"
            )

    def notice(self) -> str | None:
        """The live ``error`` frame for the current failure (None without one): for a client that
        connects while commits fail, and for :meth:`_tell`."""
        if self.failure is None:
            return None
        return jsontext.dumps(error_frame(StorageUnavailable.code, self._held_message()))

    def _held_message(self) -> str:
        return (
            f"{self.failure}: this session's events are kept in memory and are saved and sent once "
            "a write succeeds; prompts are refused until then"
        )

    def backfill_for(self, session_id: str) -> Backfill:
        def backfill(after: int, through: int) -> list[Event]:
            rows = self.store.events(session_id, after, limit=max(0, through - after))
            return [_stored_event(*row) for row in rows]

        return backfill

    def history(self, session_id: str, count: int) -> list[Event]:
        rows = self.store.tail_events(session_id, count)
        return [_stored_event(*row) for row in rows]

    def last_turn_event(self, session_id: str) -> Event | None:
        row = self.store.last_turn_event(session_id)
        return None if row is None else _stored_event(*row)

    def session_changed(self, session_id: str, snapshot: Callable[[], SessionRecord]) -> None:
        if session_id in self._deleted:
            return
        self._dirty[session_id] = snapshot
        self._schedule()

    def permission(
        self,
        session_id: str,
        request_id: str,
        payload: Mapping[str, Any],
        status: str,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Queue a permission request's status; ``then`` runs once it is committed (at once if
        this session was deleted or the store is closed: nothing would ever commit it)."""
        if session_id in self._deleted or self._closed:
            if then is not None:
                then()
            return
        self.store.save_permission(session_id, request_id, payload, status)
        if then is not None:
            self.store.after_commit(then)
        self._schedule()

    def delete(self, session_id: str) -> None:
        """Forget a session for good: what it still does (e.g. a start that was under way when it
        was deleted) is not written back."""
        self._deleted.add(session_id)
        self._dirty.pop(session_id, None)
        self.store.delete_session(session_id)
        self._schedule()

    def _schedule(self, delay: float = 0.0) -> None:
        if not self._scheduled and not self._closed:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            if delay:
                loop.call_later(delay, self.flush)
            else:
                loop.call_soon(self.flush)

    def flush(self) -> None:
        """Commit what is queued, then publish the waiting events. Safe to call any time."""
        if self._holding or self._closed:  # _scheduled stays set; the hold's end flushes
            return
        self._scheduled = False
        for snapshot in self._dirty.values():
            self.store.save_session(snapshot())
        self._dirty.clear()
        logs, self._waiting_logs = self._waiting_logs, []
        try:
            rows = self.store.flush()
        except Exception as exc:  # the store kept it all queued; nothing is published unsaved
            # each log once: a long outage with interleaved sessions must not grow the list
            self._waiting_logs = list(dict.fromkeys(logs + self._waiting_logs))
            with contextlib.suppress(RuntimeError):  # no running loop: the caller retries
                self._schedule(self.RETRY_SECONDS)
            self._failed(exc)
            return
        if self.failure is not None:
            log.warning("the session database %s is writable again: %d rows committed", self.store.path, rows)
            self._set_failure(None)
        self._uncheckpointed += rows
        for event_log in logs:
            event_log.publish()
        self._last_commit = time.monotonic()
        if self._uncheckpointed >= self.CHECKPOINT_ROWS:
            self._make_due()

    # --- failing commits (see the module's docstring) -----------------------------------------

    def _failed(self, exc: Exception) -> None:
        """Degrade (logged once per reason, not at every retry: the log may be on the same full
        disk), and tell every session whose events are held."""
        if isinstance(exc, sqlite3.Error):
            reason = f"cannot write the session database: {exc}"
        elif isinstance(exc, OSError):  # its text may name a path
            reason = f"cannot write the session database: {exc.strerror or type(exc).__name__}"
        else:
            reason = "cannot write the session database: internal error; see the daemon log"
        if reason != self.failure:
            log.error(
                "cannot write the session database %s: %s; events are held in memory, prompts refused, "
                "retrying every %.0f s",
                self.store.path,
                exc,
                self.RETRY_SECONDS,
                exc_info=not isinstance(exc, sqlite3.Error | OSError),
            )
            self._set_failure(reason)
        for event_log in list(self._waiting_logs):
            if event_log not in self._told:
                self._tell(event_log)

    def _set_failure(self, failure: str | None) -> None:
        self.failure = failure
        self._told.clear()
        for listener in self.listeners:
            try:
                listener(failure)
            except Exception:
                log.exception("error in a storage listener")

    def _tell(self, event_log: EventLog) -> None:
        """Tell a session's clients that its events are held: the one thing seen before it is
        committed, and why that keeps the rule "committed before seen" for everything else.

        Live, now: an ``error`` frame with no ``seq`` (see :meth:`EventLog.notify`). Without a seq
        it is no event a client can resume from: its cursor stays on the last committed event, so
        a reconnect cannot skip the held ones (it hears this frame anew while the failure lasts),
        and nothing it has seen can be taken back by a crash: the frame only says that something
        is not yet safe, and every event it has seen is committed.
        Durable, later: the same message as an ``error`` event queued behind the held ones; it
        takes the next seq and is committed and published with them, in order, once a write
        succeeds, so the history shows where saving stopped and seqs stay continuous.
        """
        self._told.add(event_log)  # first: the append below comes back through the sink
        frame = self.notice()
        if frame is not None:
            event_log.notify(frame)
            event_log.append("error", message=self._held_message())

    # --- checkpoints (see the module's docstring) ---------------------------------------------

    def _make_due(self) -> None:
        """Start a checkpoint at the next pause in the commits (or once it is overdue)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # closing: the store's close() checkpoints
            return
        if self._due is None:
            self._due = time.monotonic()
        if self._timer is None and self._checkpointing is None and not self._closed:
            self._timer = loop.call_later(self.QUIET_SECONDS, self._when_quiet)

    def _when_quiet(self) -> None:
        self._timer = None
        if self._due is None or self._checkpointing is not None or self._closed:
            return
        now = time.monotonic()
        quiet_for = now - self._last_commit
        if quiet_for >= self.QUIET_SECONDS or now - self._due >= self.DUE_SECONDS:
            if quiet_for < self.QUIET_SECONDS:
                self.stats["overdue"] += 1
            self._checkpoint(self._checkpoint_done)
        else:
            self._timer = asyncio.get_running_loop().call_later(
                self.QUIET_SECONDS - quiet_for, self._when_quiet
            )

    def _run(self, work: Callable[[], Any], done: Callable[[asyncio.Future[Any]], None]) -> bool:
        """Run ``work`` (a checkpoint or a sync) in a worker thread, then ``done`` on the loop."""
        if self._checkpointing is not None or self._closed:
            return False
        try:
            loop = asyncio.get_running_loop()
            self._checkpointing = loop.run_in_executor(None, work)
        except RuntimeError:  # no running loop, or closing: the store's close() checkpoints
            self._holding = False
            return False
        self._checkpointing.add_done_callback(done)
        return True

    def _checkpoint(self, done: Callable[[asyncio.Future[Any]], None]) -> None:
        if self._run(self.store.checkpoint, done):
            self._uncheckpointed, self._due = 0, None
            self.stats["checkpoints"] += 1

    def _checkpoint_done(self, future: asyncio.Future[Any]) -> None:
        self._checkpointing = None
        frames = _outcome(future) or 0  # how long the WAL was when this checkpoint began
        if frames >= self.HOLD_FRAMES:
            self._run(self.store.sync, self._synced)
        elif frames >= self.CATCHUP_FRAMES and self._uncheckpointed:
            # commits ran beside it, so it may have missed their frames: again, at the next
            # pause. One that ran alone copied everything: the next commit starts the WAL over.
            self.stats["catch_ups"] += 1
            self._make_due()
        elif self._uncheckpointed >= self.CHECKPOINT_ROWS:
            self._make_due()

    def _synced(self, future: asyncio.Future[Any]) -> None:
        _outcome(future)
        self._checkpointing = None
        self._holding = True
        self.stats["holds"] += 1
        self._checkpoint(self._hold_done)

    def _hold_done(self, future: asyncio.Future[Any]) -> None:
        """Every frame is in the database now: the next commit starts the WAL over."""
        _outcome(future)
        self._checkpointing = None
        self._holding = False
        if self._scheduled:
            self.flush()

    def close(self) -> None:
        """Commit what is queued and close the store; later writes are dropped (shutdown). Once."""
        if self._closed:
            return
        self._holding = False  # store.close() waits for a running checkpoint (its lock)
        if self._timer is not None:
            self._timer.cancel()
        log.info(
            "checkpoints: %(checkpoints)d (catching up %(catch_ups)d, with no pause %(overdue)d, "
            "holding %(holds)d)",
            self.stats,
        )
        self.flush()
        self._closed = True
        self.store.close()


def _outcome(future: asyncio.Future[Any]) -> Any:
    """The result of a checkpoint or sync; None (logged) when it raised: a failed one only leaves
    the WAL longer until the next."""
    try:
        return future.result()
    except Exception as exc:
        log.warning("WAL checkpoint or sync failed: %s", exc)
        return None

"""Numbered session events and the per-session log that fans them out.

Every thing a session emits becomes an event ``{"seq", "type", "ts", ...}`` whose ``seq`` rises
by exactly one per session. The log serializes each event to JSON once, at append time, so a
hundred clients cost one ``json.dumps``; subscribers get the stored object and send its text.

Replay and live delivery meet without a gap or a duplicate because both happen on the event-loop
thread: :meth:`EventLog.subscribe` takes the replay slice and registers the subscriber in the
same synchronous step, so no append can fall between the two.

The log keeps a bounded window in memory (``max_events``); older events come from ``backfill``
(the durable store). With a ``sink`` (the store), an appended event is *pending* until the sink
calls :meth:`EventLog.publish` after committing it: only published events are counted in
``last_seq``, returned by :meth:`EventLog.since` or sent to subscribers, so no client ever sees an
event that a crash could take back.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from qwen_daemon import jsontext

#: Every event type a session can emit: the contract's, re-exported for the modules that read it
#: from here (anything else the agent sends travels as ``agent_update``)
from qwen_daemon.contract.events import EVENT_TYPES as EVENT_TYPES

_last_stamp: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """An ISO 8601 UTC timestamp with milliseconds, the one time format of the API.

    Formatted by hand and reused within a millisecond: ``datetime.isoformat`` was a visible share
    of the per-event cost when profiling the relay.
    """
    global _last_stamp
    ms = time.time_ns() // 1_000_000
    if ms != _last_stamp[0]:
        seconds, rest = divmod(ms, 1000)
        _last_stamp = (ms, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:03d}Z")
    return _last_stamp[1]


class Event(NamedTuple):
    """One stored event: its number, type and time, and its JSON text, made once."""

    seq: int
    type: str
    ts: str
    json: str

    @property
    def data(self) -> dict[str, Any]:
        """The event's fields, parsed anew from :attr:`json` on each call (slow paths only)."""
        fields: dict[str, Any] = json.loads(self.json)
        return fields


Subscriber = Callable[[Event], None]


class EventSink(Protocol):
    """Receives each event first; must call ``log.publish()`` once the event is durable."""

    def __call__(self, log: EventLog, event: Event) -> None: ...


#: ``(after, through)`` → the events with ``after < seq <= through`` (from durable storage)
Backfill = Callable[[int, int], list[Event]]


class Subscription:
    """A live feed; :meth:`close` stops delivery. Closing twice is harmless."""

    def __init__(self, log: EventLog, callback: Subscriber, on_end: Callable[[], None] | None = None) -> None:
        self._log = log
        self.callback = callback
        self.on_end = on_end

    def close(self) -> None:
        self._log._subscribers.discard(self)


#: how :class:`EventLog` keeps an event: a plain tuple of atomic values, which the garbage collector
#: stops tracking (it keeps tracking any object, a named tuple included). Kept as objects, a
#: daemon's history (up to 10,000 events per session) made every full collection scan all of it,
#: pausing the event loop and so every stream (20-85 ms at 50-110k objects, relay bench).
_Row = tuple[int, str, str, str]


class EventLog:
    """The ordered, bounded event history of one session plus its live subscribers."""

    def __init__(
        self,
        max_events: int = 10_000,
        sink: EventSink | None = None,
        backfill: Backfill | None = None,
        history: list[Event] | None = None,
    ) -> None:
        if max_events < 1:
            raise ValueError("max_events must be positive")
        rows = ((e.seq, e.type, e.ts, e.json) for e in history or ())
        self._events: deque[_Row] = deque(rows, maxlen=max_events)
        self._appended_seq = self._events[-1][0] if self._events else 0
        self._last_seq = self._appended_seq  # published: what clients may see
        self._sink = sink
        self._backfill = backfill
        self._subscribers: set[Subscription] = set()
        #: told of every published (so committed) event after the subscribers, not counted among
        #: them and never ended by a close: the push notifier (``qwen_daemon.push.service``)
        self.observer: Subscriber | None = None

    @property
    def last_seq(self) -> int:
        """The newest event clients may see (committed, when there is a store)."""
        return self._last_seq

    @property
    def first_seq(self) -> int:
        """The oldest seq clients can still fetch."""
        if self._backfill is not None:
            return 1
        return self._events[0][0] if self._events else self._last_seq + 1

    def __len__(self) -> int:
        return len(self._events)

    def append(self, type_: str, **fields: Any) -> Event:
        """Number, timestamp and serialize an event; publish it now, or once the sink has it safe."""
        self._appended_seq += 1
        seq = self._appended_seq
        ts = utc_now()
        data: dict[str, Any] = {"seq": seq, "type": type_, "ts": ts, **fields}
        row = (seq, type_, ts, jsontext.dumps(data))
        self._events.append(row)
        event = Event._make(row)
        if self._sink is None:
            self.publish()
        else:
            self._sink(self, event)
        return event

    def publish(self) -> None:
        """Make every appended event visible and deliver it to subscribers, in order."""
        if self._last_seq == self._appended_seq:
            return
        after = self._last_seq
        fresh = self._window_after(after)
        window_start = fresh[0].seq if fresh else self._appended_seq + 1
        if after + 1 < window_start and self._subscribers and self._backfill is not None:
            # more events waited for their commit (a slow or full disk) than the window holds:
            # the oldest left it unsent; they are committed now, so the store has them
            fresh = self._backfill(after, window_start - 1) + fresh
        self._last_seq = self._appended_seq
        observer = self.observer
        for event in fresh:
            for sub in tuple(self._subscribers):
                sub.callback(event)
            if observer is not None:
                observer(event)

    def notify(self, frame: str) -> None:
        """Send ``frame`` (JSON text without a ``seq``) to every live subscriber now.

        Outside the sequence, so outside the durability rule: nothing stores it and no replay
        repeats it. Only for what clients must hear while nothing can be committed (see
        :meth:`qwen_daemon.sessions.persistence.Persistence.flush`); it reaches them as an
        :class:`Event` with ``seq`` 0, which no stored event has.
        """
        notice = Event(0, "notice", "", frame)
        for sub in tuple(self._subscribers):
            sub.callback(notice)

    def _window_after(self, after: int) -> list[Event]:
        if not self._events or after >= self._events[-1][0]:
            return []
        start = max(0, after + 1 - self._events[0][0])
        # seqs are contiguous in the window, so the slice position is arithmetic, not a search
        rows = self._events
        return [Event._make(rows[i]) for i in range(start, len(rows))]

    def since(self, after: int) -> list[Event]:
        """Every visible event with ``seq > after``, in order (older ones from the backfill)."""
        if after >= self._last_seq:
            return []
        older: list[Event] = []
        window_start = self._events[0][0] if self._events else self._last_seq + 1
        if after + 1 < window_start and self._backfill is not None:
            older = self._backfill(after, window_start - 1)
        visible = self._window_after(after)
        if visible and visible[-1].seq > self._last_seq:
            visible = [e for e in visible if e.seq <= self._last_seq]
        return older + visible

    def subscribe(
        self, after: int, callback: Subscriber, on_end: Callable[[], None] | None = None
    ) -> tuple[list[Event], Subscription]:
        """Atomically: the replay (``seq > after``) and a subscription for everything after it.

        ``on_end`` is called if the log ends the feed itself (the session was closed).
        """
        replay = self.since(after)
        sub = Subscription(self, callback, on_end)
        self._subscribers.add(sub)
        return replay, sub

    def close_subscribers(self) -> None:
        """End every live feed, telling each subscriber through its ``on_end``."""
        subs = tuple(self._subscribers)
        self._subscribers.clear()
        for sub in subs:
            if sub.on_end is not None:
                sub.on_end()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

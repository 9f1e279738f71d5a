"""EventLog numbering, replay and live fan-out (ACP translation: test_translate.py)."""

from __future__ import annotations

import gc
import json

import pytest

from qwen_daemon.sessions.events import Event, EventLog


def test_seq_is_contiguous_and_json_is_made_once() -> None:
    log = EventLog()
    first = log.append("state", state="idle")
    second = log.append("agent_message_chunk", text="hé")
    assert (first.seq, second.seq, log.last_seq) == (1, 2, 2)
    assert json.loads(second.json) == second.data
    assert second.data["type"] == "agent_message_chunk" and second.data["ts"].endswith("Z")
    assert "hé" in second.json  # not escaped: one encoding, readable


def test_history_is_out_of_the_garbage_collectors_sight() -> None:
    """A long history must not lengthen full collections (each one pauses every stream): the log
    keeps its events as untracked tuples, not as objects the collector rescans every time."""
    log = EventLog(max_events=10_000)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5000):
        log.append("tool_call", tool_call_id=f"t{i}", content=[{"type": "text", "text": "x"}])
    gc.collect()
    assert len(gc.get_objects()) - before < 500
    assert log.since(4999)[0].data["content"] == [{"type": "text", "text": "x"}]


def test_since_and_bounded_window() -> None:
    log = EventLog(max_events=5)
    for i in range(12):
        log.append("agent_message_chunk", text=str(i))
    assert log.first_seq == 8 and log.last_seq == 12 and len(log) == 5
    assert [e.seq for e in log.since(0)] == [8, 9, 10, 11, 12]
    assert [e.seq for e in log.since(10)] == [11, 12]
    assert log.since(12) == [] and log.since(99) == []


def test_subscribe_replays_then_streams_without_gap_or_duplicate() -> None:
    log = EventLog()
    for _ in range(3):
        log.append("state", state="idle")
    seen: list[int] = []
    replay, sub = log.subscribe(1, lambda e: seen.append(e.seq))
    seen[:0] = [e.seq for e in replay]
    log.append("state", state="running")
    assert seen == [2, 3, 4]
    sub.close()
    log.append("state", state="idle")
    assert seen == [2, 3, 4]
    sub.close()


def test_close_subscribers_tells_each_feed() -> None:
    log = EventLog()
    ended: list[str] = []
    log.subscribe(0, lambda e: None, lambda: ended.append("a"))
    log.subscribe(0, lambda e: None)
    log.close_subscribers()
    assert ended == ["a"] and log.subscriber_count == 0


def test_events_stay_invisible_until_the_sink_publishes_them() -> None:
    held: list[Event] = []

    def sink(log: EventLog, event: Event) -> None:
        held.append(event)

    log = EventLog(sink=sink)
    seen: list[int] = []
    log.subscribe(0, lambda e: seen.append(e.seq))
    log.append("state", state="idle")
    log.append("state", state="running")
    assert [e.seq for e in held] == [1, 2]
    assert (log.last_seq, log.since(0), seen) == (0, [], [])
    log.publish()
    assert log.last_seq == 2 and [e.seq for e in log.since(0)] == [1, 2] and seen == [1, 2]


def test_backfill_serves_what_the_window_dropped() -> None:
    store: dict[int, Event] = {}

    def sink(log: EventLog, event: Event) -> None:
        store[event.seq] = event
        log.publish()

    log = EventLog(max_events=3, sink=sink, backfill=lambda a, b: [store[i] for i in range(a + 1, b + 1)])
    for i in range(10):
        log.append("agent_message_chunk", text=str(i))
    assert len(log) == 3 and log.first_seq == 1
    assert [e.seq for e in log.since(0)] == list(range(1, 11))
    assert [e.seq for e in log.since(6)] == [7, 8, 9, 10]


def test_a_commit_held_up_past_the_window_still_reaches_subscribers_whole() -> None:
    """When more events wait for their commit than the window holds (the disk was full for a
    while), the ones pushed out unsent come from the store: live clients used to skip them."""
    store: dict[int, Event] = {}
    held: list[Event] = []
    log = EventLog(
        max_events=3,
        sink=lambda log, event: held.append(event),
        backfill=lambda a, b: [store[i] for i in range(a + 1, b + 1)],
    )
    seen: list[int] = []
    log.subscribe(0, lambda e: seen.append(e.seq))
    for i in range(10):
        log.append("agent_message_chunk", text=str(i))
    store.update((e.seq, e) for e in held)  # the commit, at last
    log.publish()
    assert seen == list(range(1, 11))
    log.append("turn_ended")
    store[11] = held[-1]
    log.publish()
    assert seen == list(range(1, 12))


def test_bad_window_size() -> None:
    with pytest.raises(ValueError):
        EventLog(max_events=0)

"""The agent host's state table (``agents/host_states.py``): every (state, event) pair, illegal ones too;
then real hosts (the fake agent, a real subprocess) whose every move is recorded and checked
against the table and the diagram."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.agents import host as host_module
from qwen_daemon.agents.host import AgentHost
from qwen_daemon.agents.host_states import (
    IGNORED,
    ILLEGAL,
    REFUSED,
    TABLE,
    HostEvent,
    HostState,
    IllegalHostTransition,
    host_outcome,
    next_host_state,
    refuses,
)
from qwen_daemon.errors import AgentFailed
from tests.support.probe import until

FAKE_AGENT = str(Path(__file__).with_name("fake_agent.py"))
H, E = HostState, HostEvent
PAIRS = list(itertools.product(HostState, HostEvent))
IDS = [f"{s.value}-{e.value}" for s, e in PAIRS]


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=IDS)
def test_next_host_state_follows_its_cell(state: HostState, event: HostEvent) -> None:
    cell = host_outcome(state, event)
    assert refuses(state, event) == (cell is REFUSED)
    if cell is ILLEGAL:
        with pytest.raises(IllegalHostTransition, match=f"{state.value!r}.*{event.value!r}"):
            next_host_state(state, event)
    elif cell is REFUSED:
        with pytest.raises(AgentFailed, match="stopped for good"):
            next_host_state(state, event)
    else:
        assert next_host_state(state, event) == (state if cell is IGNORED else cell)


def moves() -> set[tuple[HostState, HostEvent, HostState]]:
    return {
        (s, e, c) for s, row in TABLE.items() for e, c in row.items() if isinstance(c, HostState) and c != s
    }


def test_every_pair_has_a_cell_and_the_table_keeps_the_hosts_promises() -> None:
    assert set(TABLE) == set(HostState)
    assert all(set(row) == set(HostEvent) for row in TABLE.values())
    # retired is for good: only retire leads there, nothing leads out, and a start is refused
    assert {(s, e) for s, e, c in moves() if c is H.RETIRED} == {(s, E.RETIRE) for s in HostState} - {
        (H.RETIRED, E.RETIRE)
    }
    assert not {c for s, _e, c in moves() if s is H.RETIRED}
    assert [s for s in HostState if refuses(s, E.START)] == [H.RETIRED]
    # running only through a connection made by a start; a start only once nothing runs or stops
    assert {(s, e) for s, e, c in moves() if c is H.RUNNING} == {(H.STARTING, E.CONNECTED)}
    assert {s for s in HostState if host_outcome(s, E.START) is H.STARTING} == {H.STOPPED, H.RUNNING}
    # a stop's end is the only way out of stopping but a retire
    assert {e for s, e, c in moves() if s is H.STOPPING} == {E.STOP_DONE, E.RETIRE}
    # an exit during a stop is never taken for a crash
    assert host_outcome(H.STOPPING, E.EXITED) is ILLEGAL and host_outcome(H.RETIRED, E.EXITED) is ILLEGAL


def test_every_state_is_reachable_from_a_new_host() -> None:
    seen, frontier = {H.STOPPED}, [H.STOPPED]
    while frontier:
        state = frontier.pop()
        for _s, _e, target in (m for m in moves() if m[0] is state):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(HostState)


# --- real hosts: every move recorded ---------------------------------------------------------


class Sink:
    """A daemon session as the host sees it; counts what it is told."""

    def __init__(self) -> None:
        self.exits: list[str] = []

    def on_event(self, event_type: str, fields: dict[str, Any]) -> None:
        return None

    async def on_permission_request(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"outcome": {"outcome": "cancelled"}}

    def on_agent_exit(self, message: str) -> None:
        self.exits.append(message)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[HostState, HostEvent, HostState]]]:
    """Every transition any host makes, as (from, event, to), each checked against the table."""
    recorded: list[tuple[HostState, HostEvent, HostState]] = []

    def recording(state: HostState, event: HostEvent) -> HostState:
        target = next_host_state(state, event)  # raises as the table says
        recorded.append((state, event, target))
        return target

    monkeypatch.setattr(host_module, "next_host_state", recording)
    yield recorded


def state_of(host: AgentHost) -> HostState:
    return host.state  # read anew each time (an attribute read would be narrowed by mypy)


def make_host(tmp_path: Path, **env: str) -> AgentHost:
    command = (sys.executable, FAKE_AGENT)
    return AgentHost(command, str(tmp_path), tmp_path / "agent.log", env={**os.environ, **env})


async def test_start_stop_and_restart(
    tmp_path: Path, steps: list[tuple[HostState, HostEvent, HostState]]
) -> None:
    host = make_host(tmp_path)
    assert state_of(host) is H.STOPPED and not host.running and not host.starting
    starting = asyncio.ensure_future(host.ensure_started())
    await asyncio.sleep(0)  # one step: the start takes its lock and awaits the spawn
    assert host.starting and state_of(host) is H.STARTING and not host.running
    await starting
    assert host.state is H.RUNNING and host.running and not host.starting and host.generation == 1
    await host.ensure_started()  # running: no new start
    stopping = asyncio.ensure_future(host.stop())
    await asyncio.sleep(0)  # one step: stdin closed, waiting for the agent to exit
    assert state_of(host) is H.STOPPING and not host.running
    await stopping
    assert host.state is H.STOPPED and not host.running
    await host.ensure_started()
    assert host.running and host.generation == 2
    await host.retire()
    assert steps == [
        (H.STOPPED, E.START, H.STARTING),
        (H.STARTING, E.CONNECTED, H.RUNNING),
        (H.RUNNING, E.STOP, H.STOPPING),
        (H.STOPPING, E.STOP_DONE, H.STOPPED),
        (H.STOPPED, E.START, H.STARTING),
        (H.STARTING, E.CONNECTED, H.RUNNING),
        (H.RUNNING, E.RETIRE, H.RETIRED),
        (H.RETIRED, E.STOP, H.RETIRED),
        (H.RETIRED, E.STOP_DONE, H.RETIRED),
    ]


async def test_a_crash_stops_the_host_and_tells_its_sessions(
    tmp_path: Path, steps: list[tuple[HostState, HostEvent, HostState]]
) -> None:
    host = make_host(tmp_path)
    sink = Sink()
    session_id, _result = await host.new_session(str(tmp_path), sink)
    assert session_id and host.running
    pid = host.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    await until(lambda: host.state is H.STOPPED)
    assert sink.exits == ["agent exited on signal SIGKILL"] and not host.crash_looping
    await host.ensure_started()  # a session's next prompt starts it again
    assert host.running and host.generation == 2
    await host.retire()
    assert steps == [
        (H.STOPPED, E.START, H.STARTING),
        (H.STARTING, E.CONNECTED, H.RUNNING),
        (H.RUNNING, E.EXITED, H.STOPPED),
        (H.STOPPED, E.START, H.STARTING),
        (H.STARTING, E.CONNECTED, H.RUNNING),
        (H.RUNNING, E.RETIRE, H.RETIRED),
        (H.RETIRED, E.STOP, H.RETIRED),
        (H.RETIRED, E.STOP_DONE, H.RETIRED),
    ]


async def test_a_retired_host_refuses_to_start(
    tmp_path: Path, steps: list[tuple[HostState, HostEvent, HostState]]
) -> None:
    host = make_host(tmp_path)
    await host.retire()  # never started: nothing to stop
    assert host.state is H.RETIRED
    with pytest.raises(AgentFailed, match="stopped for good"):
        await host.ensure_started()
    await host.stop()  # changes nothing
    assert host.state is H.RETIRED and steps[0] == (H.STOPPED, E.RETIRE, H.RETIRED)
    assert all(target is H.RETIRED for _s, _e, target in steps)


async def test_a_stop_during_a_start_wins(
    tmp_path: Path, steps: list[tuple[HostState, HostEvent, HostState]]
) -> None:
    host = make_host(tmp_path)
    starting = asyncio.ensure_future(host.ensure_started())
    await asyncio.sleep(0)  # one step: the start takes its lock and awaits the spawn
    assert state_of(host) is H.STARTING
    await host.stop()  # before the spawn returned: nothing to stop yet, but the start gives up
    with pytest.raises(AgentFailed, match="stopped while it started"):
        await starting
    assert state_of(host) is H.STOPPED and not host.running
    assert steps == [
        (H.STOPPED, E.START, H.STARTING),
        (H.STARTING, E.STOP, H.STOPPING),
        (H.STOPPING, E.STOP_DONE, H.STOPPED),
        (H.STOPPED, E.START_FAILED, H.STOPPED),
    ]
    await host.ensure_started()  # the next start is a fresh one
    assert host.running
    await host.retire()


async def test_a_start_that_fails_leaves_it_stopped(
    tmp_path: Path, steps: list[tuple[HostState, HostEvent, HostState]]
) -> None:
    host = AgentHost((str(tmp_path / "no-such-agent"),), str(tmp_path), tmp_path / "agent.log")
    with pytest.raises(AgentFailed, match="cannot start agent"):
        await host.ensure_started()
    assert host.state is H.STOPPED and not host.starting
    assert steps == [(H.STOPPED, E.START, H.STARTING), (H.STARTING, E.START_FAILED, H.STOPPED)]

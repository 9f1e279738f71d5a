"""The session's transition table (``sessions/states.py``): every (state, trigger) pair, illegal ones too.

Three layers. The table against an oracle written from the code it replaced (the old
``_set_state`` that ignored every change once closed, ``_check_open``'s refusals, the busy checks,
``lifecycle.reopen``/``recover``), so the table is known to change no behaviour. A real
:class:`Session` (the fake agent behind it, a temp store) applying each pair exactly as the table
says, with or without a ``state`` event. And the commands (prompt, cancel, set_mode) in states
reached for real, refused as the table says.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qwen_daemon.config import Paths, Settings
from qwen_daemon.contract.states import BUSY_STATES, OPEN_STATES, SessionState
from qwen_daemon.errors import DaemonError, SessionBusy, SessionClosed, SessionFailed
from qwen_daemon.sessions import lifecycle
from qwen_daemon.sessions import states as machine
from qwen_daemon.sessions.manager import SessionManager
from qwen_daemon.sessions.session import Session
from qwen_daemon.sessions.states import IGNORED, ILLEGAL, IllegalTransition, Refused, Trigger
from tests.support.probe import until
from tests.support.sessions import loaded_manager

FAKE_AGENT = str(Path(__file__).with_name("fake_agent.py"))
S, T = SessionState, Trigger
PAIRS = list(itertools.product(SessionState, Trigger))
#: the triggers the old code sent through ``_set_state``, and where each led
SET_STATE: dict[Trigger, SessionState] = {
    T.STARTED: S.IDLE,
    T.START_FAILED: S.FAILED,
    T.PROMPT: S.RUNNING,
    T.PERMISSION_ASKED: S.AWAITING_PERMISSION,
    T.PERMISSIONS_SETTLED: S.RUNNING,
    T.TURN_ENDED: S.IDLE,
    T.AGENT_GAVE_UP: S.FAILED,
    T.CLOSE: S.CLOSED,
    T.RECOVER: S.IDLE,
}
#: where the old code only ever sent each of those (the rest never happened: ILLEGAL now)
REACHED_FROM: dict[Trigger, frozenset[SessionState]] = {
    T.STARTED: frozenset({S.STARTING}),
    T.START_FAILED: frozenset({S.STARTING}),
}


def old_code(state: SessionState, trigger: Trigger) -> machine.Outcome:
    """What the code before the table did, written from it: the oracle for the table."""
    closed_or_failed = {S.CLOSED: SessionClosed, S.FAILED: SessionFailed}
    if trigger in (T.PROMPT, T.CANCEL, T.SET_MODE) and state in closed_or_failed:
        return ("refused", closed_or_failed[state])  # type: ignore[return-value]  # _check_open
    if trigger is T.PROMPT and (state is S.STARTING or state in BUSY_STATES):
        return ("refused", SessionBusy)  # type: ignore[return-value]
    if trigger is T.SET_MODE:
        return ("refused", SessionBusy) if state is S.STARTING else state  # type: ignore[return-value]
    if trigger is T.CANCEL:
        return state if state in BUSY_STATES else IGNORED  # "if not self.busy: return"
    if trigger in (T.STARTED, T.START_FAILED):
        if state is S.CLOSED:  # _check_not_closed_while_starting
            return ("refused", SessionClosed)  # type: ignore[return-value]
        if state not in REACHED_FROM[trigger]:
            return ILLEGAL
    if trigger is T.REOPEN:  # lifecycle.reopen: "if session.state not in (failed, closed)"
        return S.IDLE if state in (S.FAILED, S.CLOSED) else IGNORED
    if trigger is T.AGENT_MISSING:  # the manager never calls it for a closed session
        return ILLEGAL if state is S.CLOSED else S.FAILED
    guards = {  # each caller's own condition before it called _set_state
        T.PERMISSION_ASKED: state in BUSY_STATES,  # else the request is answered cancelled
        T.PERMISSIONS_SETTLED: state is S.AWAITING_PERMISSION,
        T.TURN_ENDED: state in BUSY_STATES,
        T.AGENT_GAVE_UP: state not in (S.CLOSED, S.FAILED),  # on_agent_exit returns for those
        T.CLOSE: state is not S.CLOSED,  # close() returns at once
        T.RECOVER: state in (S.STARTING, *BUSY_STATES),
    }
    if not guards.get(trigger, True) or state is S.CLOSED:  # _set_state: "closed is for good"
        return IGNORED
    return SET_STATE[trigger]


def same(cell: machine.Outcome, expected: machine.Outcome) -> bool:
    if isinstance(cell, Refused):
        return isinstance(expected, tuple) and cell.error is expected[1]
    return cell == expected


@pytest.mark.parametrize(("state", "trigger"), PAIRS, ids=[f"{s.value}-{t.value}" for s, t in PAIRS])
def test_the_table_does_what_the_code_before_it_did(state: SessionState, trigger: Trigger) -> None:
    assert same(machine.outcome(state, trigger), old_code(state, trigger)), (
        machine.outcome(state, trigger),
        old_code(state, trigger),
    )


@pytest.mark.parametrize(("state", "trigger"), PAIRS, ids=[f"{s.value}-{t.value}" for s, t in PAIRS])
def test_next_state_follows_its_cell(state: SessionState, trigger: Trigger) -> None:
    cell = machine.outcome(state, trigger)
    if cell is ILLEGAL:
        with pytest.raises(IllegalTransition, match=f"{state.value!r}.*{trigger.value!r}"):
            machine.next_state(state, trigger)
    elif isinstance(cell, Refused):
        with pytest.raises(cell.error) as info:
            machine.next_state(state, trigger, "s1", "it broke")
        assert "{" not in str(info.value)  # the message is filled in
    else:
        assert machine.next_state(state, trigger) == (state if cell is IGNORED else cell)


def test_every_pair_has_a_cell_and_the_groupings_agree_with_it() -> None:
    assert set(machine.TABLE) == set(SessionState)
    assert all(set(row) == set(Trigger) for row in machine.TABLE.values())
    # closed is for good: nothing but a reopen leads out of it
    assert {t for t, c in machine.TABLE[S.CLOSED].items() if isinstance(c, SessionState)} == {T.REOPEN}
    # a prompt is taken only where no turn runs and the session is open
    assert {s for s in SessionState if machine.outcome(s, T.PROMPT) == S.RUNNING} == {S.IDLE}
    assert {s for s in SessionState if machine.outcome(s, T.REOPEN) is IGNORED} == OPEN_STATES
    assert {s for s in SessionState if machine.outcome(s, T.TURN_ENDED) == S.IDLE} == BUSY_STATES


# --- through the real objects ------------------------------------------------------------------


def settings(tmp_path: Path) -> Settings:
    paths = Paths(tmp_path / "config", tmp_path / "state", tmp_path / "log", tmp_path / "run")
    return Settings(agent_cmd=(sys.executable, FAKE_AGENT), paths=paths, spare_agents=0)


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[SessionManager]:
    async with loaded_manager(settings(tmp_path)) as manager:
        yield manager


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


def state_events(session: Session) -> list[str]:
    session.persist.flush()  # events are seen once committed
    return [e.data["state"] for e in session.events.since(0) if e.type == "state"]


def state_of(session: Session) -> SessionState:
    return session.state  # read anew each time (a plain attribute read would be narrowed by mypy)


async def commands_refused(session: Session, error: type[DaemonError], match: str) -> None:
    with pytest.raises(error, match=match):
        session.prompt("hi")
    with pytest.raises(error, match=match):
        await session.cancel()
    with pytest.raises(error, match=match):
        await session.set_mode("default")


async def test_a_session_applies_every_pair_as_its_cell_says(
    manager: SessionManager, workspace: Path
) -> None:
    """Each state set on a live session, then each trigger: the state it ends in, whether a
    ``state`` event was emitted (and stored), and what is raised, all as the table says."""
    session = await manager.create(str(workspace))
    session.failure = "it broke"
    saved = session.state
    for state, trigger in PAIRS:
        session.state = state
        before = state_events(session)
        cell = machine.outcome(state, trigger)
        if cell is ILLEGAL:
            with pytest.raises(IllegalTransition):
                session.transition(trigger)
        elif isinstance(cell, Refused):
            with pytest.raises(cell.error, match=session.id if "{id}" in cell.message else None):
                session.transition(trigger)
        else:
            session.transition(trigger)
        moved = isinstance(cell, SessionState) and cell != state
        assert session.state == (cell if moved else state), (state, trigger)
        assert state_events(session) == before + ([str(cell)] if moved else []), (state, trigger)
        saved = session.state if moved else saved
        assert manager.persist.store.sessions()[0].state == saved, (state, trigger)  # each move is saved


async def test_commands_in_states_reached_for_real_are_refused_as_the_table_says(
    manager: SessionManager, workspace: Path
) -> None:
    session = await manager.create(str(workspace))
    assert state_events(session) == ["starting", "idle"]

    session.prompt("wait")
    assert state_of(session) == S.RUNNING
    with pytest.raises(SessionBusy, match="already running"):
        session.prompt("say again")
    await session.cancel()
    await until(lambda: session.state == S.IDLE)

    session.prompt("permission Write notes.txt")
    await until(lambda: session.state == S.AWAITING_PERMISSION)
    with pytest.raises(SessionBusy):
        session.prompt("say again")
    await session.cancel()  # its request resolves cancelled: permissions_settled, then turn_ended
    await until(lambda: session.state == S.IDLE)
    assert state_events(session)[-4:] == ["running", "awaiting_permission", "running", "idle"]

    await session.cancel()  # idle: ignored, nothing emitted
    assert state_events(session)[-1] == "idle"

    lifecycle.agent_missing(session, "its agent 'gone' is not available")
    assert state_of(session) == S.FAILED and state_events(session)[-1] == "idle"  # set, not announced
    await commands_refused(session, SessionFailed, "not available")
    assert lifecycle.reopen(session) and state_of(session) == S.IDLE
    assert not lifecycle.reopen(session)  # open already: ignored

    await session.close()
    assert state_of(session) == S.CLOSED
    await commands_refused(session, SessionClosed, "is closed")
    await session.close()  # closed already: ignored
    assert state_events(session)[-1] == "closed"
    assert await session.on_permission_request({}) == {"outcome": {"outcome": "cancelled"}}  # ignored

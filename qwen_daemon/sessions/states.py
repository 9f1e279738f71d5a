"""The session's state machine as a table: for each (state, trigger), what happens.

States are the contract's :class:`SessionState`; every move emits a ``state`` event::

    starting ──started──▶ idle ──prompt──▶ running ──permission_asked──▶ awaiting_permission
       │                  ▲ ▲               │  ▲                                 │
       │                  │ └──turn_ended───┘  └───────permissions_settled───────┘
       │                  │     (turn_ended from awaiting_permission too)
       │                  ├── recover: after a restart, from starting, running, awaiting_permission
       │                  └── reopen: from failed or closed
       └──start_failed──▶ failed ◀── agent_gave_up: from any open state (a crash loop)
                                 ◀── agent_missing: from any state but closed (set, not announced)
    any state ──close──▶ closed   (for good: only a reopen leads out)

Each cell holds one :data:`Outcome`:

* a :class:`SessionState`: move there (the same state is no move and no event);
* :data:`IGNORED`: nothing changes, silently. A late agent callback after a close, a turn that
  ends after a crash loop failed its session, a cancel with no turn, a reopen of an open session;
* a :class:`Refused`: a command the state does not allow, refused with the error the API maps to
  a status (SessionBusy, SessionClosed and SessionFailed: 409, each with its own code);
* :data:`ILLEGAL`: cannot happen; :class:`IllegalTransition` is raised, a bug said out loud
  rather than a session silently set to a state that contradicts what it is doing.

Triggers that are commands (``prompt``, ``cancel``, ``set_mode``) change nothing by themselves
when allowed but ``prompt``; they are in the table so that every refusal is in one place.
``tests/test_session_states.py`` tries every (state, trigger) pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

from qwen_daemon.contract.states import SessionState
from qwen_daemon.errors import DaemonError, SessionBusy, SessionClosed, SessionFailed


class Trigger(StrEnum):
    """What can happen to a session."""

    STARTED = "started"  # its agent session was created
    START_FAILED = "start_failed"  # its agent refused or failed to start
    PROMPT = "prompt"  # a user's prompt starts a turn
    CANCEL = "cancel"  # a user asks the turn to stop
    SET_MODE = "set_mode"  # a user switches the agent's mode
    PERMISSION_ASKED = "permission_asked"  # the agent asks for a permission during a turn
    PERMISSIONS_SETTLED = "permissions_settled"  # the last pending request was resolved
    TURN_ENDED = "turn_ended"  # the turn's task finished (any stop reason)
    AGENT_GAVE_UP = "agent_gave_up"  # the agent crashed once too often: not restarted
    CLOSE = "close"  # deleted
    REOPEN = "reopen"  # a user brings a failed or closed session back
    RECOVER = "recover"  # the daemon restarted: a turn or start it cut off is over
    AGENT_MISSING = "agent_missing"  # restored, but its named agent is not in the config


class _Marker(Enum):
    IGNORED = "ignored"
    ILLEGAL = "illegal"


IGNORED: Final = _Marker.IGNORED
ILLEGAL: Final = _Marker.ILLEGAL


@dataclass(frozen=True)
class Refused:
    """A command refused in this state: ``error`` raised with ``message``, which may name the
    session (``{id}``) and why it failed (``{failure}``)."""

    error: type[DaemonError]
    message: str

    def exception(self, session_id: str, failure: str | None) -> DaemonError:
        return self.error(self.message.format(id=session_id, failure=failure))


Outcome = SessionState | Refused | _Marker


class IllegalTransition(RuntimeError):
    """A trigger arrived in a state where it cannot (a bug in the daemon, never the user's doing)."""

    def __init__(self, state: SessionState, trigger: Trigger) -> None:
        super().__init__(f"session state {state.value!r} has no transition for {trigger.value!r}")
        self.state, self.trigger = state, trigger


S, T = SessionState, Trigger
CLOSED = Refused(SessionClosed, "session {id} is closed")
FAILED = Refused(SessionFailed, "session {id} failed: {failure}")
STILL_STARTING = Refused(SessionBusy, "the session is still starting")
TURN_RUNNING = Refused(
    SessionBusy, "a turn is already running in this session; cancel it or wait for it to end"
)
CLOSED_WHILE_STARTING = Refused(SessionClosed, "session {id} was closed while its agent started")

#: the whole machine: every (state, trigger) pair has a cell
TABLE: Final[dict[SessionState, dict[Trigger, Outcome]]] = {
    S.STARTING: {
        T.STARTED: S.IDLE,
        T.START_FAILED: S.FAILED,
        T.PROMPT: STILL_STARTING,
        T.CANCEL: IGNORED,  # no turn to stop
        T.SET_MODE: STILL_STARTING,
        T.PERMISSION_ASKED: IGNORED,  # no turn: the request is answered cancelled
        T.PERMISSIONS_SETTLED: IGNORED,
        T.TURN_ENDED: IGNORED,
        T.AGENT_GAVE_UP: S.FAILED,
        T.CLOSE: S.CLOSED,
        T.REOPEN: IGNORED,  # open already
        T.RECOVER: S.IDLE,  # the restart cut its start off; the next prompt starts the agent
        T.AGENT_MISSING: S.FAILED,
    },
    S.IDLE: {
        T.STARTED: ILLEGAL,
        T.START_FAILED: ILLEGAL,
        T.PROMPT: S.RUNNING,
        T.CANCEL: IGNORED,
        T.SET_MODE: S.IDLE,
        T.PERMISSION_ASKED: IGNORED,
        T.PERMISSIONS_SETTLED: IGNORED,
        T.TURN_ENDED: IGNORED,  # a turn cut off by a crash loop, its session reopened meanwhile
        T.AGENT_GAVE_UP: S.FAILED,
        T.CLOSE: S.CLOSED,
        T.REOPEN: IGNORED,
        T.RECOVER: IGNORED,
        T.AGENT_MISSING: S.FAILED,
    },
    S.RUNNING: {
        T.STARTED: ILLEGAL,
        T.START_FAILED: ILLEGAL,
        T.PROMPT: TURN_RUNNING,
        T.CANCEL: S.RUNNING,  # the agent is asked to stop; its turn ends by itself
        T.SET_MODE: S.RUNNING,
        T.PERMISSION_ASKED: S.AWAITING_PERMISSION,
        T.PERMISSIONS_SETTLED: IGNORED,  # e.g. a cancel with nothing pending
        T.TURN_ENDED: S.IDLE,
        T.AGENT_GAVE_UP: S.FAILED,
        T.CLOSE: S.CLOSED,
        T.REOPEN: IGNORED,
        T.RECOVER: S.IDLE,  # the restart cut the turn off ("interrupted")
        T.AGENT_MISSING: S.FAILED,
    },
    S.AWAITING_PERMISSION: {
        T.STARTED: ILLEGAL,
        T.START_FAILED: ILLEGAL,
        T.PROMPT: TURN_RUNNING,
        T.CANCEL: S.AWAITING_PERMISSION,  # its requests resolve cancelled: permissions_settled
        T.SET_MODE: S.AWAITING_PERMISSION,
        T.PERMISSION_ASKED: S.AWAITING_PERMISSION,  # a second request beside the first
        T.PERMISSIONS_SETTLED: S.RUNNING,
        T.TURN_ENDED: S.IDLE,
        T.AGENT_GAVE_UP: S.FAILED,
        T.CLOSE: S.CLOSED,
        T.REOPEN: IGNORED,
        T.RECOVER: S.IDLE,
        T.AGENT_MISSING: S.FAILED,
    },
    S.FAILED: {
        T.STARTED: ILLEGAL,
        T.START_FAILED: ILLEGAL,
        T.PROMPT: FAILED,
        T.CANCEL: FAILED,
        T.SET_MODE: FAILED,
        T.PERMISSION_ASKED: IGNORED,
        T.PERMISSIONS_SETTLED: IGNORED,
        T.TURN_ENDED: IGNORED,  # the turn a crash loop cut off ends after the session failed
        T.AGENT_GAVE_UP: IGNORED,  # failed already
        T.CLOSE: S.CLOSED,
        T.REOPEN: S.IDLE,
        T.RECOVER: IGNORED,
        T.AGENT_MISSING: S.FAILED,
    },
    S.CLOSED: {
        T.STARTED: CLOSED_WHILE_STARTING,  # deleted while its agent started
        T.START_FAILED: CLOSED_WHILE_STARTING,
        T.PROMPT: CLOSED,
        T.CANCEL: CLOSED,
        T.SET_MODE: CLOSED,
        T.PERMISSION_ASKED: IGNORED,  # late agent callbacks: closed is for good
        T.PERMISSIONS_SETTLED: IGNORED,
        T.TURN_ENDED: IGNORED,
        T.AGENT_GAVE_UP: IGNORED,
        T.CLOSE: IGNORED,
        T.REOPEN: S.IDLE,  # from a database of before issue 13 (the former idle timeout)
        T.RECOVER: IGNORED,
        T.AGENT_MISSING: ILLEGAL,  # the manager lists a closed session as it was
    },
}


def outcome(state: SessionState, trigger: Trigger) -> Outcome:
    """The table's cell for ``trigger`` in ``state``."""
    return TABLE[state][trigger]


def next_state(
    state: SessionState, trigger: Trigger, session_id: str = "", failure: str | None = None
) -> SessionState:
    """The state ``trigger`` leads to from ``state`` (``state`` itself when it is ignored).

    Raises the table's refusal (naming ``session_id`` and ``failure``), or
    :class:`IllegalTransition`.
    """
    cell = TABLE[state][trigger]
    if cell is IGNORED:
        return state
    if cell is ILLEGAL:
        raise IllegalTransition(state, trigger)
    if isinstance(cell, Refused):
        raise cell.exception(session_id, failure)
    assert isinstance(cell, SessionState)
    return cell

"""The agent host's life as a state machine: one :class:`HostState`, moved only by this table.

::

                 start                 connected
    stopped ───────────────▶ starting ───────────▶ running ──┐
      ▲  ▲                      │                   │  │     │ start (its process is gone,
      │  └──── start_failed ────┘                   │  │     │ not yet reaped: a new one)
      │  └──── exited (unexpectedly) ───────────────┘  │     ▼
      │                                                │  starting
      └── stop_done ── stopping ◀──────── stop ────────┘
                          ▲  (from stopped and starting too: a start under way gives up)
    any state ── retire ──▶ retired   (for good: a start is refused, stops change nothing)

Why a table: where the host was used to be read off flags (``_stopping``, ``_retired``, whether
the start lock was held) together with its process and connection optionals, and which
combinations could happen, and what each call did in each, had to be worked out from the code.
Now a call says what happened (a :class:`HostEvent`) and the table says where that leads;
``tests/test_host_states.py`` tries every pair. The process and the connection stay where they
were: they are what the host holds, not where it is.

Each cell: a :class:`HostState` (move there; the same state is no move), :data:`IGNORED`
(nothing changes: a late signal a newer start or stop has overtaken), :data:`REFUSED` (the call is
refused with :class:`~qwen_daemon.errors.AgentFailed`: a retired host never starts again), or
:data:`ILLEGAL` (cannot happen; :class:`IllegalHostTransition` says so rather than letting the
host run in a state that contradicts its process).

Not a state: *crash looping* (``AgentHost.crash_looping``). It is a rate, CRASH_LIMIT unexpected
exits within CRASH_WINDOW seconds, that stops being true by itself as time passes; as a state it
would need a timer to leave it. The host keeps the exit times and asks when an exit is seen.

``running`` is this state plus one fact no event reports: a process in ``running`` whose stdout
is at EOF is gone before it is reaped (``exited`` follows); the host checks that when asked.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Final

from qwen_daemon.errors import AgentFailed

RETIRED_MESSAGE = "the agent was stopped for good: its sessions closed or the daemon is stopping"


class HostState(StrEnum):
    """Where an agent host is."""

    STOPPED = "stopped"  # no agent process (never started, stopped, or it exited)
    STARTING = "starting"  # spawning it; ``initialize`` not yet sent
    RUNNING = "running"  # connected: initializing or serving sessions
    STOPPING = "stopping"  # stdin closed, then SIGTERM, then SIGKILL under way
    RETIRED = "retired"  # stopped for good: the manager dropped it or the daemon is stopping


class HostEvent(StrEnum):
    """What happened to an agent host."""

    START = "start"  # ensure_started begins a start
    CONNECTED = "connected"  # its process is spawned and the connection open
    START_FAILED = "start_failed"  # the start failed, timed out or was given up
    EXITED = "exited"  # its current process exited unexpectedly (a crash, not a stop)
    STOP = "stop"  # stop() begins
    STOP_DONE = "stop_done"  # stop() has finished
    RETIRE = "retire"  # retire(): no start from now on


class _Marker(Enum):
    IGNORED = "ignored"
    REFUSED = "refused"
    ILLEGAL = "illegal"


IGNORED: Final = _Marker.IGNORED
REFUSED: Final = _Marker.REFUSED
ILLEGAL: Final = _Marker.ILLEGAL

HostOutcome = HostState | _Marker


class IllegalHostTransition(RuntimeError):
    """An event arrived in a state where it cannot (a bug in the host, never the agent's doing)."""

    def __init__(self, state: HostState, event: HostEvent) -> None:
        super().__init__(f"agent host state {state.value!r} has no transition for {event.value!r}")
        self.state, self.event = state, event


H, E = HostState, HostEvent
#: the whole machine: every (state, event) pair has a cell
TABLE: Final[dict[HostState, dict[HostEvent, HostOutcome]]] = {
    H.STOPPED: {
        E.START: H.STARTING,
        E.CONNECTED: ILLEGAL,  # only a start connects
        E.START_FAILED: IGNORED,  # a stop that came during the start has finished first
        E.EXITED: IGNORED,  # the process a failed start killed is reaped
        E.STOP: H.STOPPING,  # a process that is gone is still waited for and its group killed
        E.STOP_DONE: IGNORED,  # an overlapping stop finished first
        E.RETIRE: H.RETIRED,
    },
    H.STARTING: {
        E.START: ILLEGAL,  # starts take the start lock: one at a time
        E.CONNECTED: H.RUNNING,
        E.START_FAILED: H.STOPPED,
        E.EXITED: IGNORED,  # the process before this one, seen gone while this one starts
        E.STOP: H.STOPPING,  # the start sees it and gives up
        E.STOP_DONE: IGNORED,  # a stop that began before this start (an overlapping one)
        E.RETIRE: H.RETIRED,
    },
    H.RUNNING: {
        E.START: H.STARTING,  # asked only once its process is gone (stdout at EOF, not reaped)
        E.CONNECTED: ILLEGAL,
        E.START_FAILED: H.STOPPED,  # connected, but ``initialize`` failed or timed out
        E.EXITED: H.STOPPED,
        E.STOP: H.STOPPING,
        E.STOP_DONE: IGNORED,
        E.RETIRE: H.RETIRED,
    },
    H.STOPPING: {
        E.START: ILLEGAL,  # a start waits for the stop under way
        E.CONNECTED: ILLEGAL,  # a start that sees a stop gives up before connecting
        E.START_FAILED: IGNORED,  # the start gave up for this stop; its end says stopped
        E.EXITED: ILLEGAL,  # an exit during a stop is the stop's doing, not a crash
        E.STOP: H.STOPPING,  # a second stop joins the first
        E.STOP_DONE: H.STOPPED,
        E.RETIRE: H.RETIRED,
    },
    H.RETIRED: {
        E.START: REFUSED,
        E.CONNECTED: ILLEGAL,
        E.START_FAILED: IGNORED,
        E.EXITED: ILLEGAL,  # as for stopping: the retire's stop ended it
        E.STOP: IGNORED,
        E.STOP_DONE: IGNORED,
        E.RETIRE: IGNORED,
    },
}


def host_outcome(state: HostState, event: HostEvent) -> HostOutcome:
    """The table's cell for ``event`` in ``state``."""
    return TABLE[state][event]


def refuses(state: HostState, event: HostEvent) -> bool:
    """Whether ``event`` is refused in ``state`` (a start of a retired host)."""
    return TABLE[state][event] is REFUSED


def next_host_state(state: HostState, event: HostEvent) -> HostState:
    """The state ``event`` leads to from ``state`` (``state`` itself when it is ignored).

    Raises :class:`AgentFailed` for a refused start, :class:`IllegalHostTransition` for an event
    that cannot happen there.
    """
    cell = TABLE[state][event]
    if cell is REFUSED:
        raise AgentFailed(RETIRED_MESSAGE)
    if cell is ILLEGAL:
        raise IllegalHostTransition(state, event)
    return state if cell is IGNORED else HostState(cell)

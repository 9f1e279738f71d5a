"""The session states, named once.

The transition rules live with the session (``sessions/states.py``); this module only names the
states and the two groupings other layers ask about, so the OpenAPI document, the manager and the
generated ``protocol.js`` read the same words.
"""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    """Where a session is; the value is what the API and the browser see."""

    STARTING = "starting"
    IDLE = "idle"
    RUNNING = "running"
    AWAITING_PERMISSION = "awaiting_permission"
    CLOSED = "closed"
    FAILED = "failed"


#: A turn is under way: a prompt is refused with 409 and a cancel has something to stop.
BUSY_STATES: frozenset[SessionState] = frozenset({SessionState.RUNNING, SessionState.AWAITING_PERMISSION})
#: The session counts against the limit and keeps its agent.
OPEN_STATES: frozenset[SessionState] = frozenset(
    {SessionState.STARTING, SessionState.IDLE, SessionState.RUNNING, SessionState.AWAITING_PERMISSION}
)

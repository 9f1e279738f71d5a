"""What happens to a session between turns: rename, archive, reopen, and recovery after a restart.

Why a module of its own: these change a session's standing rather than run its turns, and
``session.py`` is the turn machine. Each function takes a :class:`LifecycleSession`, the part of
a session it needs, not the class: ``session.py`` calls in here (a prompt unarchives, a restore
puts the mode back), and importing it back would be a cycle.

No timer closes a session (issue 13: a user who walks away for hours must find it as it was);
only a delete removes one. ``closed`` survives in databases
from before that (the former idle timeout) and, like ``failed``, is left by :func:`reopen`.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from qwen_daemon.agents.host import AgentHost
from qwen_daemon.contract.bodies import EditSession
from qwen_daemon.contract.modes import Modes
from qwen_daemon.contract.states import BUSY_STATES, SessionState
from qwen_daemon.errors import BadRequest
from qwen_daemon.sessions import states as machine
from qwen_daemon.sessions.modes import offered_modes
from qwen_daemon.sessions.permissions import PermissionRegistry
from qwen_daemon.sessions.persistence import Persistence
from qwen_daemon.sessions.states import Trigger
from qwen_daemon.terminal import control_in, one_line

MAX_TITLE = 200


class LifecycleSession(Protocol):
    """What these functions read and change of a session (:class:`~qwen_daemon.sessions.session.Session`).

    Its private members are the session's own bookkeeping that a standing change must keep in
    step: events (``_emit``), the saved record (``_changed``), the mode (``_mode_changed``) and
    which agent process its agent session lives in (``_agent_generation``).
    """

    id: str
    cwd: str
    title: str
    archived: bool
    state: SessionState
    failure: str | None
    closed_at: float | None
    stored_standing: tuple[SessionState, str | None] | None
    modes: Modes | None
    mode: str | None
    agent_session_id: str | None
    host: AgentHost
    persist: Persistence
    permissions: PermissionRegistry
    _agent_generation: int

    def transition(self, trigger: Trigger) -> None: ...

    def _emit(self, type_: str, **fields: Any) -> None: ...

    def _changed(self) -> None: ...

    def _mode_changed(self, mode_id: str) -> None: ...


def validate_title(title: Any, cwd: str) -> str:
    """Whitespace collapsed, at most MAX_TITLE characters; none or blank: the workspace's name.

    A control character (ESC, BEL, NUL, a bidi override...) in a title given is refused: titles
    are printed by ``qwen-daemon sessions`` and shown in terminals, where it would be obeyed. A
    folder's name used instead is escaped, not refused: the user cannot rename it from here.
    """
    if title is None:
        return _folder_title(cwd)
    if not isinstance(title, str):
        raise BadRequest("title must be a string")
    control = control_in(title)
    if control is not None:
        raise BadRequest(
            f"title contains the control character {control}; titles may not hold control "
            "characters (tabs and line breaks become spaces)"
        )
    title = " ".join(title.split())
    if len(title) > MAX_TITLE:
        raise BadRequest(f"title is longer than {MAX_TITLE} characters")
    return title or _folder_title(cwd)


def _folder_title(cwd: str) -> str:
    """The workspace folder's name (the path for ``/``), control characters escaped, one line."""
    return one_line(os.path.basename(cwd) or cwd)[:MAX_TITLE]


def edit(session: LifecycleSession, changes: EditSession) -> None:
    """Rename and/or (un)archive (``PATCH``): all checked before anything changes, then persisted.
    The body's form (known fields, at least one, their types) was checked against
    ``contract.bodies.EditSession``; the title's content is checked here.

    Any state, a running turn included: neither touches the agent. Archiving only moves the
    session to the archived list; its history stays and a prompt brings it back. Emits
    ``session_updated {title, archived}``.
    """
    session.persist.require_writable()  # 507: a change that cannot be saved is not made
    if "title" in changes:
        session.title = validate_title(changes["title"], session.cwd)
    if "archived" in changes:
        session.archived = changes["archived"]
    # committed like any event, so an open session page (and the dashboard) learns of a change
    # made in another tab or from the CLI: the title and the Archive / Unarchive button follow
    session._emit("session_updated", title=session.title, archived=session.archived)
    session._changed()


async def reapply_mode(session: LifecycleSession, wanted: str | None, *, announce: bool = False) -> None:
    """Put back the session's mode, which a restored or new agent session resets to its default.

    Qwen Code keeps no mode across ``session/load``, and a new agent session (the conversation
    could not be restored) starts in the default one: the user's plan mode must not silently
    become "default". A mode the agent no longer offers is left: the agent's one then stands.
    ``announce``: say which mode is in force with a ``mode_changed`` event (after a lost
    conversation, the transcript shows which mode the new agent session runs in).
    """
    if (
        wanted
        and wanted != session.mode
        and wanted in offered_modes(session.modes)
        and session.agent_session_id is not None
    ):
        await session.host.set_mode(session.agent_session_id, wanted)
        session._mode_changed(wanted)
    if announce and session.mode is not None:
        session._emit("mode_changed", mode_id=session.mode)


def reopen(session: LifecycleSession) -> bool:
    """Bring a ``failed`` or ``closed`` session back to ``idle``; False if it was open already.

    Its ``agent_session_id`` is kept, so the next prompt starts the agent and restores the
    conversation (ACP resume/load), exactly as after a daemon restart. The caller has checked
    that its agent exists and bound it to a usable host. ``reopen`` is the one trigger the
    state table lets out of ``closed``; the record is persisted like any change, so the reopened
    session stays open across restarts.
    """
    if machine.outcome(session.state, Trigger.REOPEN) is machine.IGNORED:
        return False
    session.failure = None
    session.closed_at = None
    session.stored_standing = None  # its agent is back: what is in memory is what to keep
    session._agent_generation = -1  # whichever host it is bound to now restores its agent session
    session.transition(Trigger.REOPEN)
    return True


def agent_missing(session: LifecycleSession, reason: str) -> None:
    """List a restored session as failed because its named agent is not in the config (or not found).

    The failure lives in memory only: its record keeps the state it was stored with, however
    often the session is saved meanwhile (a rename or an archive writes the whole record), so
    once the agent is back, the next start restores the session as it was rather than failed.
    """
    session.stored_standing = (session.state, session.failure)
    # set, not announced: this is how it is listed from the start, not a change anyone saw happen
    session.state, session.failure = machine.next_state(session.state, Trigger.AGENT_MISSING), reason


def recover(session: LifecycleSession, interrupted_prompt: str | None, expired: list[dict[str, Any]]) -> None:
    """After a daemon restart: end the turn the crash cut off and expire its permission requests."""
    session.permissions.expire(expired)
    if session.state in BUSY_STATES and interrupted_prompt is not None:
        session._emit("turn_ended", prompt_id=interrupted_prompt, stop_reason="interrupted")
    session.transition(Trigger.RECOVER)  # a turn or a start the restart cut off is over

"""One agent session: its turns and event log, driven by the state machine of ``states.py``.

Every state change goes through :meth:`Session.transition`, which does what the table in
``states.py`` says (drawn there) and emits a ``state`` event; permission requests are kept by the
:class:`PermissionRegistry` of ``permissions.py``.

One turn at a time: :meth:`Session.prompt` moves to ``running`` synchronously, before any await, so
a second prompt is refused with :class:`SessionBusy` and never reaches the agent (Qwen Code would
cancel the running turn). Cancel asks the agent to stop and resolves every pending permission
request itself, because Qwen Code drops them silently.

If the agent process dies, the turn ends with an ``error`` and ``turn_ended`` event and the session
returns to ``idle``; its next prompt restarts the agent and restores the agent's own conversation
(ACP ``session/resume`` where offered, else ``session/load``, whose replayed history is not added
to the transcript again), falling back to a new agent session with a visible error if it cannot.
An agent that keeps crashing marks its sessions ``failed`` instead of being restarted forever.
No timer closes a session; renaming, archiving, reopening and restart recovery live in
``lifecycle.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from qwen_daemon.agents.host import AgentHost
from qwen_daemon.contract.modes import Modes
from qwen_daemon.contract.states import BUSY_STATES, SessionState
from qwen_daemon.errors import AgentFailed, BadRequest, SessionClosed
from qwen_daemon.sessions import lifecycle
from qwen_daemon.sessions import states as machine
from qwen_daemon.sessions.events import Event, EventLog, utc_now
from qwen_daemon.sessions.ids import new_id
from qwen_daemon.sessions.modes import offered_modes, require_offered
from qwen_daemon.sessions.permissions import CANCELLED, PendingPermission, PermissionRegistry
from qwen_daemon.sessions.persistence import Persistence
from qwen_daemon.sessions.states import Trigger
from qwen_daemon.sessions.store import SessionRecord

if TYPE_CHECKING:
    from qwen_daemon.contract.responses import SessionDetail, SessionSummary

log = logging.getLogger(__name__)


class Session:
    """A daemon session bound to one ACP session inside a workspace's agent host."""

    def __init__(
        self,
        cwd: str,
        title: str,
        host: AgentHost,
        max_events: int,
        persist: Persistence,
        *,
        session_id: str | None = None,
        history: list[Event] | None = None,
        agent: str | None = None,
    ) -> None:
        self.id = session_id or new_id()
        self.cwd = cwd
        self.title = title
        self.host = host
        self.agent = agent or " ".join(host.command)  # the agent's name (see config.AgentSpec)
        self.created_at = utc_now()
        self.updated_at = self.created_at
        self.state: SessionState = SessionState.STARTING  # changed only by transition()
        self.failure: str | None = None
        self.agent_session_id: str | None = None
        self.modes: Modes | None = None
        self.mode: str | None = None  # re-applied after a restore: Qwen Code does not persist it
        self.closed_at: float | None = None
        self.archived = False  # only hides it from the default list; a prompt unarchives it
        #: the state and failure its record keeps while it is failed only because its named agent
        #: is missing (see ``lifecycle.agent_missing``); None when what is in memory is the truth
        self.stored_standing: tuple[SessionState, str | None] | None = None
        self._suspending = False  # a daemon stop is ending the turn: it ends "interrupted"
        #: where it is stored: every session is (its events committed before clients see them)
        self.persist = persist
        sink, backfill = persist.sink_for(self.id), persist.backfill_for(self.id)
        self.events = EventLog(max_events, sink=sink, backfill=backfill, history=history)
        self._replaying = False
        #: its permission requests (see permissions.py); the last one resolved lets the turn go on
        self.permissions = PermissionRegistry(self.id, persist, self._emit, self._permissions_settled)
        self._turn: asyncio.Task[None] | None = None
        self._prompt_id: str | None = None
        # a cancel that arrives before the prompt reached the agent must stop it from being sent
        self._prompt_sent = False
        self._cancel_requested = False
        self._agent_generation = -1
        self.last_activity = asyncio.get_running_loop().time()

    # --- views --------------------------------------------------------------------------------

    def summary(self) -> SessionSummary:
        return {
            "id": self.id,
            "title": self.title,
            "cwd": self.cwd,
            "state": SessionState(self.state),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "url": f"/s/{self.id}",
            "last_seq": self.events.last_seq,
            "agent": self.agent,
            "mode": self.mode,
            "archived": self.archived,
        }

    def detail(self) -> SessionDetail:
        return {
            **self.summary(),
            "pending_permissions": [p.as_json() for p in self.pending.values()],
            "prompt_id": self._prompt_id,
            "failure": self.failure,
            "modes": self.modes,
        }

    @property
    def pending(self) -> dict[str, PendingPermission]:
        """The permission requests waiting for an answer, by request id."""
        return self.permissions.pending

    @property
    def busy(self) -> bool:
        return self.state in BUSY_STATES

    def record(self) -> SessionRecord:
        state, failure = self.stored_standing or (self.state, self.failure)
        return SessionRecord(
            id=self.id,
            cwd=self.cwd,
            title=self.title,
            agent=self.agent,
            agent_session_id=self.agent_session_id,
            mode=self.mode,
            state=state,
            failure=failure,
            created_at=self.created_at,
            updated_at=self.updated_at,
            closed_at=self.closed_at,
            archived=self.archived,
            modes=self.modes,
        )

    def _changed(self) -> None:
        self.persist.session_changed(self.id, self.record)

    # --- internals ----------------------------------------------------------------------------

    def _emit(self, type_: str, **fields: Any) -> None:
        self.updated_at = utc_now()
        self.last_activity = asyncio.get_running_loop().time()
        self.events.append(type_, **fields)

    def transition(self, trigger: Trigger) -> None:
        """Make the change the table says (``states.py``), emitting ``state`` and saving the
        record; a refusal of the table is raised, an ignored trigger changes nothing."""
        state = self._allowed(trigger)
        if state != self.state:
            self.state = state
            self._emit("state", state=state.value)
            self._changed()

    def _allowed(self, trigger: Trigger) -> SessionState:
        """Where ``trigger`` would lead; raises the table's refusal for it (session_busy...: 409)."""
        return machine.next_state(self.state, trigger, self.id, self.failure)

    def _check_open(self, trigger: Trigger, *, writes: bool = True) -> None:
        """A command's first checks, in the order clients see: closed or failed (the table's
        refusal, 409), then 507 while nothing can be saved."""
        if self.state in (SessionState.CLOSED, SessionState.FAILED):
            self._allowed(trigger)
        if writes:
            self.persist.require_writable()  # 507 while nothing can be saved

    async def _ensure_agent_session(self) -> None:
        """Make sure the agent holds a live ACP session for us, restoring ours after a restart."""
        if (
            self.agent_session_id is not None
            and self.host.running
            and (self.host.generation == self._agent_generation)
        ):
            return
        if self.agent_session_id is not None and await self._restore_agent_session(self.agent_session_id):
            return
        wanted = self.mode  # None at creation; else the conversation was lost, not the mode
        self.agent_session_id, modes = await self.host.new_session(self.cwd, self)
        self._after_agent_session(modes)
        self._changed()
        if wanted is not None and wanted != self.mode:
            await lifecycle.reapply_mode(self, wanted, announce=True)

    async def _restore_agent_session(self, agent_session_id: str) -> bool:
        """Reattach to the agent's own session; False (with an error event) if it cannot be."""
        self._replaying = True  # session/load replays history we already hold
        try:
            modes = await self.host.restore_session(self.cwd, agent_session_id, self)
        except AgentFailed as exc:
            if not self.host.running:
                raise
            self._emit(
                "error",
                message=f"could not restore the agent's conversation ({exc.message}); "
                "continuing in a new agent session",
            )
            return False
        finally:
            self._replaying = False
        wanted = self.mode
        self._after_agent_session(modes)
        await lifecycle.reapply_mode(self, wanted)
        return True

    def _mode_changed(self, mode_id: str) -> None:
        """Record the current mode, in ``modes`` too: both are persisted and shown after a restart."""
        self.mode = mode_id
        if self.modes is not None:
            self.modes["current_mode_id"] = mode_id
        self._changed()

    def _after_agent_session(self, modes: Modes | None) -> None:
        self._agent_generation = self.host.generation
        if modes is not None:  # an answer without them keeps the ones persisted
            self.modes = modes
        if self.modes is not None and self.modes["current_mode_id"] is not None:
            self.mode = self.modes["current_mode_id"]

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the agent session. On refusal the session is ``failed`` and AgentFailed is raised;
        closed meanwhile (deleted while the agent started), it stays closed: SessionClosed."""
        self._emit("state", state=SessionState.STARTING.value)
        try:
            await self._ensure_agent_session()
        except AgentFailed as exc:
            self._check_not_closed_while_starting(Trigger.START_FAILED)
            self.failure = exc.message
            self._emit("error", message=exc.message)
            self.transition(Trigger.START_FAILED)
            raise
        self._check_not_closed_while_starting(Trigger.STARTED)
        self.transition(Trigger.STARTED)

    def _check_not_closed_while_starting(self, trigger: Trigger) -> None:
        try:
            self._allowed(trigger)  # SessionClosed once deleted meanwhile
        except SessionClosed:
            if self.agent_session_id is not None:
                self.host.forget(self.agent_session_id)
            raise

    def prompt(self, text: str) -> str:
        """Start a turn; returns its prompt id. Never forwards a prompt while a turn runs."""
        self._check_open(Trigger.PROMPT)
        self._allowed(Trigger.PROMPT)  # SessionBusy while starting or while a turn runs
        prompt_id = new_id(6)
        self._prompt_id = prompt_id
        self._prompt_sent = self._cancel_requested = False
        self._emit("user_message", text=text, prompt_id=prompt_id)
        self._emit("turn_started", prompt_id=prompt_id)
        if self.archived:  # a prompt brings it back, and every page showing it learns so
            lifecycle.edit(self, {"archived": False})
        self.transition(Trigger.PROMPT)
        self._turn = asyncio.create_task(self._run_turn(prompt_id, text), name=f"turn-{self.id}")
        return prompt_id

    async def _run_turn(self, prompt_id: str, text: str) -> None:
        stop_reason = "error"
        try:
            await self._ensure_agent_session()
            assert self.agent_session_id is not None
            if self._cancel_requested:
                stop_reason = "cancelled"
                return
            # the request is queued for the agent before this coroutine first yields, so a cancel
            # seen after this flag is set always reaches the agent after the prompt
            self._prompt_sent = True
            stop_reason = await self.host.prompt(self.agent_session_id, text)
        except AgentFailed as exc:
            self._emit("error", message=exc.message)
        except asyncio.CancelledError:
            stop_reason = "cancelled"
        except Exception as exc:  # a bug must end the turn visibly, not wedge the session
            log.exception("turn %s of session %s failed", prompt_id, self.id)
            self._emit("error", message=f"internal error: {exc}")
        finally:
            self.permissions.resolve_all()
            self._prompt_id = None
            self._turn = None
            if self._suspending and stop_reason == "cancelled":
                stop_reason = "interrupted"  # as after a crash: the daemon, not the user, ended it
            self._emit("turn_ended", prompt_id=prompt_id, stop_reason=stop_reason)
            self.transition(Trigger.TURN_ENDED)  # ignored once failed or closed meanwhile

    async def cancel(self) -> None:
        """End the running turn (if any): pending permissions resolve as cancelled at once."""
        self._check_open(Trigger.CANCEL, writes=False)  # stopping an agent must work on a full disk
        if machine.outcome(self.state, Trigger.CANCEL) is machine.IGNORED:
            return  # no turn to stop
        self.permissions.resolve_all()
        if not self._prompt_sent:
            self._cancel_requested = True
        elif self.agent_session_id is not None:
            await self.host.cancel(self.agent_session_id)

    async def close(self, reason: str = "closed") -> None:
        """Cancel any turn, release the agent session and move to ``closed`` for good."""
        if machine.outcome(self.state, Trigger.CLOSE) is machine.IGNORED:
            return  # closed already
        await self._end_turn()
        log.info("session %s closed (%s)", self.id, reason)
        self.closed_at = time.time()
        self.transition(Trigger.CLOSE)
        self.events.close_subscribers()

    async def suspend(self) -> None:
        """For a daemon stop: end any turn and detach from the agent, but stay open for later."""
        self._suspending = True
        await self._end_turn()
        self.events.close_subscribers()

    async def _end_turn(self, grace: float = 2.0) -> None:
        """Cancel a running turn, give the agent ``grace`` seconds to end it, then detach."""
        turn = self._turn
        if self.busy:
            await self.cancel()
        if turn is not None:
            try:
                await asyncio.wait_for(asyncio.shield(turn), grace)
            except (TimeoutError, asyncio.CancelledError):
                turn.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await turn
        if self.agent_session_id is not None:
            self.host.forget(self.agent_session_id)

    async def set_mode(self, mode_id: str) -> None:
        """Switch the agent session's mode (plan, default, auto-edit, …) to one the agent offers."""
        self._check_open(Trigger.SET_MODE)
        available = offered_modes(self.modes)
        if not available:
            raise BadRequest(f"the agent {self.agent!r} offers no modes for this session")
        require_offered(mode_id, available)
        self._allowed(Trigger.SET_MODE)  # SessionBusy while starting
        await self._ensure_agent_session()
        assert self.agent_session_id is not None
        await self.host.set_mode(self.agent_session_id, mode_id)
        self._mode_changed(mode_id)
        self._emit("mode_changed", mode_id=mode_id)  # as when the agent itself switches modes

    # --- permissions --------------------------------------------------------------------------

    def answer_permission(self, request_id: str, option_id: str, answers: Any = None) -> None:
        """Answer a pending permission request (see :meth:`PermissionRegistry.answer`)."""
        self.permissions.answer(request_id, option_id, answers)

    def _permissions_settled(self) -> None:
        self.transition(Trigger.PERMISSIONS_SETTLED)  # awaiting_permission: running again

    # --- SessionSink: what the agent host delivers ----------------------------------------------

    def on_event(self, event_type: str, fields: dict[str, Any]) -> None:
        """An event from the agent, already in the daemon's vocabulary (``agents/`` translated it).
        A load's replay of history we hold is dropped (extension notifications are not replays)."""
        notification = event_type == "agent_update" and "method" in fields
        if self.state == SessionState.CLOSED or (self._replaying and not notification):
            return
        if event_type == "mode_changed":
            self._mode_changed(fields["mode_id"])
        self._emit(event_type, **fields)

    async def on_permission_request(self, params: dict[str, Any]) -> dict[str, Any]:
        if machine.outcome(self.state, Trigger.PERMISSION_ASKED) is machine.IGNORED:
            return CANCELLED  # no turn is running: nobody would see it
        pending = self.permissions.add(params)
        self.transition(Trigger.PERMISSION_ASKED)
        try:
            return await pending.future
        except asyncio.CancelledError:
            self.permissions.withdraw(pending)
            raise

    def on_agent_exit(self, message: str) -> None:
        # keep agent_session_id: the next prompt restarts the agent and restores that session
        if self.state in (SessionState.CLOSED, SessionState.FAILED):
            return
        self.permissions.resolve_all()
        if self.host.crash_looping:
            self.failure = f"the agent keeps crashing ({message}); not restarting it"
            self._emit("error", message=self.failure)
            self.transition(Trigger.AGENT_GAVE_UP)
        elif not self.busy:
            self._emit("error", message=message)
        # a running turn sees the broken connection and ends itself with the same message

"""One agent session: its state machine, turns, permission requests and event log.

States (every transition emits a ``state`` event)::

    starting ──agent session created──▶ idle ──prompt──▶ running ──permission asked──▶ awaiting_permission
       │                                 ▲                │  ▲                               │
       │                                 └──turn_ended────┘  └────────answered / cancel──────┘
       └──agent refused / failed to start──▶ failed
    any state ──delete──▶ closed           failed / closed ──reopen──▶ idle   (lifecycle.py)

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
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from qwen_daemon.agents.host import AgentHost
from qwen_daemon.agents.questions import PermissionAsk, read_permission_request
from qwen_daemon.contract.modes import Mode, Modes
from qwen_daemon.errors import (
    AgentFailed,
    BadRequest,
    PermissionAlreadyAnswered,
    PermissionNotFound,
    SessionBusy,
    SessionClosed,
    SessionFailed,
)
from qwen_daemon.sessions import lifecycle
from qwen_daemon.sessions.events import Event, EventLog, utc_now
from qwen_daemon.sessions.persistence import Persistence
from qwen_daemon.sessions.store import SessionRecord

log = logging.getLogger(__name__)

State = Literal["starting", "idle", "running", "awaiting_permission", "closed", "failed"]
BUSY_STATES: frozenset[str] = frozenset({"running", "awaiting_permission"})
_ANSWERED_MEMORY = 1000


def new_id(nbytes: int = 9) -> str:
    """A random URL-safe id that never begins with ``-``.

    Ids are typed as command-line arguments (``qwen-daemon mode ID plan``), and argparse reads a
    leading ``-`` as an option: one id in 64 would otherwise be unusable there.
    """
    while True:
        token = secrets.token_urlsafe(nbytes)
        if not token.startswith("-"):
            return token


@dataclass
class PendingPermission:
    """A permission request waiting for its answer; ``ask`` is it in the daemon's shape."""

    request_id: str
    ask: PermissionAsk
    future: asyncio.Future[dict[str, Any]]
    created_at: str = field(default_factory=utc_now)
    answers: dict[str, Any] | None = None  # once answered: the answers to its questions, as given

    def as_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, **self.ask.fields(), "created_at": self.created_at}


def mode_ids(modes: list[Mode]) -> list[str]:
    """The ids of the modes offered (``Modes.available``, or an agent's list in ``/api/agents``)."""
    return [m["id"] for m in modes]


def offered_modes(modes: Modes | None) -> list[str]:
    """The ids of the modes a session's agent offers it (none when it named none)."""
    return mode_ids(modes["available"]) if modes is not None else []


def require_offered(mode_id: Any, available: list[str]) -> None:
    """Refuse (400) a mode id that is not among ``available``, naming the ones that are."""
    if not isinstance(mode_id, str) or mode_id not in available:
        raise BadRequest(f"mode {mode_id!r} is not offered; choose one of: {', '.join(map(str, available))}")


class Session:
    """A daemon session bound to one ACP session inside a workspace's agent host."""

    def __init__(
        self,
        cwd: str,
        title: str,
        host: AgentHost,
        max_events: int = 10_000,
        persist: Persistence | None = None,
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
        self.state: State = "starting"
        self.failure: str | None = None
        self.agent_session_id: str | None = None
        self.modes: Modes | None = None
        self.mode: str | None = None  # re-applied after a restore: Qwen Code does not persist it
        self.closed_at: float | None = None
        self.archived = False  # only hides it from the default list; a prompt unarchives it
        #: the state and failure its record keeps while it is failed only because its named agent
        #: is missing (see ``lifecycle.agent_missing``); None when what is in memory is the truth
        self.stored_standing: tuple[State, str | None] | None = None
        self._suspending = False  # a daemon stop is ending the turn: it ends "interrupted"
        self._persist = persist
        if persist is None:
            self.events = EventLog(max_events, history=history)
        else:
            sink, backfill = persist.sink_for(self.id), persist.backfill_for(self.id)
            self.events = EventLog(max_events, sink=sink, backfill=backfill, history=history)
        self._replaying = False
        self.pending: dict[str, PendingPermission] = {}
        self._answered: OrderedDict[str, str | None] = OrderedDict()
        self._turn: asyncio.Task[None] | None = None
        self._prompt_id: str | None = None
        # a cancel that arrives before the prompt reached the agent must stop it from being sent
        self._prompt_sent = False
        self._cancel_requested = False
        self._agent_generation = -1
        self.last_activity = asyncio.get_running_loop().time()

    # --- views --------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "cwd": self.cwd,
            "state": self.state,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "url": f"/s/{self.id}",
            "last_seq": self.events.last_seq,
            "agent": self.agent,
            "mode": self.mode,
            "archived": self.archived,
        }

    def detail(self) -> dict[str, Any]:
        data = self.summary()
        data["pending_permissions"] = [p.as_json() for p in self.pending.values()]
        data["prompt_id"] = self._prompt_id
        data["failure"] = self.failure
        data["modes"] = self.modes
        return data

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
        if self._persist is not None:
            self._persist.session_changed(self.id, self.record)

    # --- internals ----------------------------------------------------------------------------

    def _emit(self, type_: str, **fields: Any) -> None:
        self.updated_at = utc_now()
        self.last_activity = asyncio.get_running_loop().time()
        self.events.append(type_, **fields)

    def _set_state(self, state: State) -> None:
        if state != self.state and self.state != "closed":  # closed is for good
            self.state = state
            self._emit("state", state=state)
            self._changed()

    def _check_open(self, *, writes: bool = True) -> None:
        if self.state == "closed":
            raise SessionClosed(f"session {self.id} is closed")
        if self.state == "failed":
            raise SessionFailed(f"session {self.id} failed: {self.failure}")
        if writes and self._persist is not None:
            self._persist.require_writable()  # 507 while nothing can be saved

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
        self._emit("state", state="starting")
        try:
            await self._ensure_agent_session()
        except AgentFailed as exc:
            self._check_not_closed_while_starting()
            self.failure = exc.message
            self._emit("error", message=exc.message)
            self._set_state("failed")
            raise
        self._check_not_closed_while_starting()
        self._set_state("idle")

    def _check_not_closed_while_starting(self) -> None:
        if self.state == "closed":
            if self.agent_session_id is not None:
                self.host.forget(self.agent_session_id)
            raise SessionClosed(f"session {self.id} was closed while its agent started")

    def prompt(self, text: str) -> str:
        """Start a turn; returns its prompt id. Never forwards a prompt while a turn runs."""
        self._check_open()
        if self.state == "starting":
            raise SessionBusy("the session is still starting")
        if self.busy:
            raise SessionBusy("a turn is already running in this session; cancel it or wait for it to end")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("prompt text must be a non-empty string")
        prompt_id = new_id(6)
        self._prompt_id = prompt_id
        self._prompt_sent = self._cancel_requested = False
        self._emit("user_message", text=text, prompt_id=prompt_id)
        self._emit("turn_started", prompt_id=prompt_id)
        if self.archived:  # a prompt brings it back, and every page showing it learns so
            lifecycle.edit(self, {"archived": False})
        self._set_state("running")
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
            self._resolve_all_pending()
            self._prompt_id = None
            self._turn = None
            if self._suspending and stop_reason == "cancelled":
                stop_reason = "interrupted"  # as after a crash: the daemon, not the user, ended it
            self._emit("turn_ended", prompt_id=prompt_id, stop_reason=stop_reason)
            if self.state in BUSY_STATES:
                self._set_state("idle")

    async def cancel(self) -> None:
        """End the running turn (if any): pending permissions resolve as cancelled at once."""
        self._check_open(writes=False)  # stopping an agent must work on a full disk
        if not self.busy:
            return
        self._resolve_all_pending()
        if not self._prompt_sent:
            self._cancel_requested = True
        elif self.agent_session_id is not None:
            await self.host.cancel(self.agent_session_id)

    async def close(self, reason: str = "closed") -> None:
        """Cancel any turn, release the agent session and move to ``closed`` for good."""
        if self.state == "closed":
            return
        await self._end_turn()
        log.info("session %s closed (%s)", self.id, reason)
        self.closed_at = time.time()
        self._set_state("closed")
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

    async def set_mode(self, mode_id: Any) -> None:
        """Switch the agent session's mode (plan, default, auto-edit, …) to one the agent offers."""
        self._check_open()
        available = offered_modes(self.modes)
        if not available:
            raise BadRequest(f"the agent {self.agent!r} offers no modes for this session")
        require_offered(mode_id, available)
        if self.state == "starting":
            raise SessionBusy("the session is still starting")
        await self._ensure_agent_session()
        assert self.agent_session_id is not None
        await self.host.set_mode(self.agent_session_id, mode_id)
        self._mode_changed(mode_id)
        self._emit("mode_changed", mode_id=mode_id)  # as when the agent itself switches modes

    # --- permissions --------------------------------------------------------------------------

    def answer_permission(self, request_id: str, option_id: str, answers: Any = None) -> None:
        """The first answer wins; later ones get PermissionAlreadyAnswered (409). ``answers`` (to the
        request's questions, ``{"0": "SQLite"}``) are checked first and sent as the agent reads them."""
        pending = self.pending.get(request_id)
        if pending is None:
            stored = self._persist.store.permission_status(self.id, request_id) if self._persist else None
            if stored == "expired":
                raise PermissionAlreadyAnswered(
                    f"permission request {request_id} expired when the daemon restarted; "
                    "prompt again to let the agent ask anew"
                )
            if request_id in self._answered or stored is not None:
                raise PermissionAlreadyAnswered(f"permission request {request_id} was already answered")
            raise PermissionNotFound(f"no permission request {request_id} in session {self.id}")
        if self._persist is not None:  # the agent would wait for a commit that cannot happen
            self._persist.require_writable()
        reply = pending.ask.answer(option_id, answers)  # BadRequest before anything is forwarded
        pending.answers = reply.answers
        self._resolve(pending, option_id, reply.response)

    def _resolve(self, pending: PendingPermission, option_id: str | None, outcome: dict[str, Any]) -> None:
        self.pending.pop(pending.request_id, None)
        self._answered[pending.request_id] = option_id
        while len(self._answered) > _ANSWERED_MEMORY:
            self._answered.popitem(last=False)

        def release() -> None:
            if not pending.future.done():
                pending.future.set_result(outcome)

        if self._persist is not None and option_id is not None:
            # the agent acts on an answer only once it is on disk: were the commit lost (a full
            # disk, then a crash), the restart would record it expired while the agent had acted
            self._persist.permission(self.id, pending.request_id, pending.as_json(), "answered", release)
        else:
            release()
            if self._persist is not None:
                self._persist.permission(self.id, pending.request_id, pending.as_json(), "answered")
        given = {} if pending.answers is None else {"answers": pending.answers}
        self._emit("permission_resolved", request_id=pending.request_id, option_id=option_id, **given)
        if not self.pending and self.state == "awaiting_permission":
            self._set_state("running")

    def _resolve_all_pending(self) -> None:
        for pending in list(self.pending.values()):
            self._resolve(pending, None, {"outcome": {"outcome": "cancelled"}})

    # --- SessionSink: what the agent host delivers ----------------------------------------------

    def on_event(self, event_type: str, fields: dict[str, Any]) -> None:
        """An event from the agent, already in the daemon's vocabulary (``agents/`` translated it).
        A load's replay of history we hold is dropped (extension notifications are not replays)."""
        notification = event_type == "agent_update" and "method" in fields
        if self.state == "closed" or (self._replaying and not notification):
            return
        if event_type == "mode_changed":
            self._mode_changed(fields["mode_id"])
        self._emit(event_type, **fields)

    async def on_permission_request(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.state not in BUSY_STATES:
            return {"outcome": {"outcome": "cancelled"}}
        pending = PendingPermission(
            request_id=new_id(6),
            ask=read_permission_request(params),  # questions and plans in the daemon's one shape
            future=asyncio.get_running_loop().create_future(),
        )
        self.pending[pending.request_id] = pending
        if self._persist is not None:
            self._persist.permission(self.id, pending.request_id, pending.as_json(), "pending")
        self._emit("permission_request", **pending.as_json())
        self._set_state("awaiting_permission")
        try:
            return await pending.future
        except asyncio.CancelledError:
            # the agent withdrew the request (it went away): nobody can answer it any more
            if pending.request_id in self.pending:
                self._resolve(pending, None, {"outcome": {"outcome": "cancelled"}})
            raise

    def on_agent_exit(self, message: str) -> None:
        # keep agent_session_id: the next prompt restarts the agent and restores that session
        if self.state in ("closed", "failed"):
            return
        self._resolve_all_pending()
        if self.host.crash_looping:
            self.failure = f"the agent keeps crashing ({message}); not restarting it"
            self._emit("error", message=self.failure)
            self._set_state("failed")
        elif not self.busy:
            self._emit("error", message=message)
        # a running turn sees the broken connection and ends itself with the same message

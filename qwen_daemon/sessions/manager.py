"""The session manager: creates, finds, reopens, deletes and prunes sessions.

Agent processes are not its business: the :class:`~qwen_daemon.agents.pool.AgentPool` it owns
(``manager.pool``) keeps one agent host per (agent name, workspace), the warm spares, and puts
idle agents to sleep. The manager asks the pool for a session's host, hands the host back when the
last open session there lets it go, and tells the pool (``pool.idle_since``) when a host's
sessions last worked or were watched — the one thing about sessions the pool needs to know.
Each session records the name of its agent.

No timer closes a session: it stays until deleted (archiving only hides it from the default
list). A failed (or, in an old database, closed) session can be reopened (``lifecycle.py``).
Closed sessions stay listed with their history until deleted, or pruned ``retention_days`` after
closing.

Durability: :meth:`SessionManager.load` opens the SQLite store that every session lives in (tests
too: a temporary one); a daemon stop suspends sessions instead of closing them, so after any
restart every session is listed again with its history and carries on.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from qwen_daemon.agents.host import AgentHost
from qwen_daemon.agents.pool import AgentPool, validate_cwd
from qwen_daemon.config import Settings
from qwen_daemon.contract.modes import Mode
from qwen_daemon.contract.states import OPEN_STATES, SessionState
from qwen_daemon.errors import (
    AgentFailed,
    AgentUnavailable,
    BadRequest,
    LimitReached,
    SessionNotFound,
    ShuttingDown,
)
from qwen_daemon.sessions import lifecycle
from qwen_daemon.sessions.events import Event
from qwen_daemon.sessions.lifecycle import validate_title
from qwen_daemon.sessions.modes import mode_ids, require_offered
from qwen_daemon.sessions.persistence import Persistence
from qwen_daemon.sessions.session import Session
from qwen_daemon.sessions.store import SessionRecord, Store

log = logging.getLogger(__name__)

#: events of a restored session kept in memory at start; older ones are read from the store
RESTORED_EVENTS = 100


class SessionManager:
    """Every session of this daemon, in creation order."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.sessions: dict[str, Session] = {}
        #: the agent hosts and warm spares; told here when a host's sessions are idle
        self.pool = AgentPool(settings, env)
        self.pool.idle_since = self._idle_since
        #: the modes each agent last advertised (from session/new), for GET /api/agents
        self.agent_modes: dict[str, list[Mode]] = {}
        self._closing = False
        self._creating: set[str] = set()  # ids of sessions whose create() awaits their agent
        self._recent: list[tuple[str, str]] = []  # (agent, cwd) of stored sessions, newest first
        self._persist: Persistence | None = None  # opened by load()
        #: told of every committed event of every session (the push notifier); set before load()
        self.on_event: Callable[[Session, Event], None] | None = None

    def load(self) -> None:
        """Open the store, sweep agents a dead daemon left, and restore every session.

        Raises :class:`qwen_daemon.sessions.store.StoreError` when the database cannot be used.
        Needs a running loop (restored sessions emit their recovery events).
        """
        self.pool.sweep_orphans()
        store = Store(self.settings.paths.database)
        self._persist = Persistence(store)
        records = store.sessions()
        for record in records:
            self._restore(record)
        self._persist.flush()
        self._recent = [
            (self.sessions[r.id].agent, self.sessions[r.id].cwd)
            for r in sorted(records, key=lambda r: r.updated_at, reverse=True)
            if r.id in self.sessions
        ]

    @property
    def persist(self) -> Persistence:
        """The session store's front (persistence.py). Every session is stored, so a manager used
        before :meth:`load` is a bug: RuntimeError, not a session that saves nothing."""
        if self._persist is None:
            raise RuntimeError("the session manager is not loaded: its store is not open")
        return self._persist

    def _restore(self, record: SessionRecord) -> None:
        agent, unavailable = self._restored_agent(record.agent)
        host = None
        if unavailable is None:
            try:
                host = self.pool.host_for(agent, record.cwd, take_spare=False)
            except AgentFailed as exc:  # its named agent is gone (uninstalled, not on PATH)
                unavailable = exc.message
        if host is None:
            host = self.pool.stand_in(record.cwd)
        # Only a short tail in memory: clients asking for older events get them from the store,
        # and restoring every session's whole window made a long history slow the start (50
        # sessions of 10,000 events: 1.4 s to /health).
        history = self.persist.history(record.id, min(RESTORED_EVENTS, self.settings.event_history))
        session = Session(
            record.cwd,
            record.title,
            host,
            self.settings.event_history,
            self.persist,
            session_id=record.id,
            history=history,
            agent=agent,
        )
        session.created_at, session.updated_at = record.created_at, record.updated_at
        session.agent_session_id, session.mode = record.agent_session_id, record.mode
        session.state, session.failure = SessionState(record.state), record.failure
        session.closed_at = record.closed_at
        session.archived, session.modes = record.archived, record.modes
        if record.modes and not self.agent_modes.get(agent):  # for GET /api/agents before any start
            self.agent_modes[agent] = list(record.modes["available"])
        interrupted = _open_turn(self.persist.last_turn_event(record.id))
        lifecycle.recover(session, interrupted, self.persist.store.permissions(record.id, "pending"))
        if unavailable is not None and session.state != SessionState.CLOSED:
            log.warning("session %s: listed, but cannot run: %s", record.id, unavailable)
            lifecycle.agent_missing(session, f"its agent {agent!r} is not available: {unavailable}")
        self._watch(session)
        self.sessions[session.id] = session

    def _watch(self, session: Session) -> None:
        if self.on_event is not None:
            session.events.observer = functools.partial(self.on_event, session)

    def _restored_agent(self, name: str) -> tuple[str, str | None]:
        """The agent a stored session runs with, and why it cannot run (None if it can).

        A name no longer in the config is not silently swapped for the default agent (another
        program on the same conversation); the session is listed as failed until the name is
        back or it is deleted. A record from before named agents holds a command line instead
        of a name: it ran the default agent.
        """
        names = self.settings.agent_names()
        if name in names:
            return name, None
        if re.fullmatch(r"[\w.-]{1,64}", name):
            return name, f"no agent named {name!r} in the config (known: {', '.join(names)})"
        return self.settings.default_agent, None

    # --- agent ------------------------------------------------------------------------------

    def _idle_since(self, host: AgentHost) -> float | None:
        """Since when ``host``'s sessions have neither worked nor been watched (loop time); None
        while one runs a turn, starts, or has a client attached. For the pool's reaper."""
        mine = [s for s in self.sessions.values() if s.host is host]
        if any(s.busy or s.state == SessionState.STARTING or s.events.subscriber_count for s in mine):
            return None
        return max((s.last_activity for s in mine), default=float("-inf"))

    def require_agent(self, name: str) -> None:
        """Refuse (400) a name that is not a configured agent, naming the ones that are: the one
        check of an agent name a client gives (its form is the request body's)."""
        if name not in self.settings.agent_names():
            raise BadRequest(
                f"unknown agent {name!r}; choose one of: {', '.join(self.settings.agent_names())}"
            )

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start background housekeeping (idle agents sleep, spares stop). Needs a running loop."""
        self.pool.start(self._recent)

    async def shutdown(self) -> None:
        """Close every session (cancelling turns), then stop every agent. Idempotent."""
        self._closing = True
        for session_id in self._creating:  # never confirmed to their clients, who get ShuttingDown
            self.sessions.pop(session_id, None)
            self.persist.delete(session_id)
        await self.pool.stop_housekeeping()
        sessions = [s for s in self.sessions.values() if s.state != SessionState.CLOSED]
        # durable: sessions carry on after the restart
        await asyncio.gather(*(s.suspend() for s in sessions), return_exceptions=True)
        await self.pool.shutdown()
        if self._persist is not None:  # load() ran: a start that failed before it opened nothing
            self._persist.close()  # later writes are dropped

    # --- sessions -----------------------------------------------------------------------------

    @property
    def storage_failure(self) -> str | None:
        """Why the session database cannot be written now (None: it can); see persistence.py."""
        return self.persist.failure

    def _require_writable(self) -> None:
        self.persist.require_writable()

    @property
    def open_count(self) -> int:
        """Sessions that count against ``max_sessions``: open (not failed or closed) and unarchived.

        Nothing closes a session any more, so counting every one would reach the limit for good.
        An idle session whose agent sleeps costs nothing but its row; the limit only keeps the
        working list bounded (a runaway script), and archiving or deleting makes room.
        """
        return sum(1 for s in self.sessions.values() if s.state in OPEN_STATES and not s.archived)

    def _check_limit(self) -> None:
        if self.open_count >= self.settings.max_sessions:
            raise LimitReached(
                f"at most {self.settings.max_sessions} unarchived sessions; delete or archive one first"
            )

    async def create(
        self, cwd: Any, title: Any = None, agent: str | None = None, mode: str | None = None
    ) -> Session:
        """Create a session (with the named agent, in ``mode``). Raises AgentFailed after recording why."""
        if self._closing:
            raise ShuttingDown("the daemon is stopping")
        self._require_writable()
        path = validate_cwd(cwd)
        name = validate_title(title, path)
        self._check_limit()
        if agent is not None:
            self.require_agent(agent)
        agent_name = agent or self.settings.default_agent
        known = mode_ids(self.agent_modes.get(agent_name, []))
        if mode is not None and known:  # refuse before starting anything
            require_offered(mode, known)
        host = self.pool.host_for(agent_name, path)
        session = Session(path, name, host, self.settings.event_history, self.persist, agent=agent_name)
        self._watch(session)
        self.sessions[session.id] = session
        self._creating.add(session.id)
        try:
            await session.start()
        except AgentFailed as exc:
            await self.release_host(session)
            if self._closing:
                raise ShuttingDown("the daemon is stopping; create the session once it is back") from None
            raise AgentFailed(exc.message, session_id=session.id) from None
        finally:
            self._creating.discard(session.id)
        if session.id not in self.sessions:  # dropped by shutdown() while its agent started
            raise ShuttingDown("the daemon is stopping; create the session once it is back")
        if session.modes:
            self.agent_modes[agent_name] = list(session.modes["available"])
        if mode is not None and mode != session.mode:
            try:
                await session.set_mode(mode)
            except Exception:  # a refused mode must not leave a session nobody asked for
                with contextlib.suppress(SessionNotFound):  # deleted meanwhile: the error stands
                    await self.delete(session.id)
                raise
        return session

    def list(self) -> list[Session]:
        return list(self.sessions.values())

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise SessionNotFound(f"no session {session_id}")
        return session

    async def reopen(self, session_id: str) -> Session:
        """Bring a failed or closed session back to ``idle`` with its agent's crash count cleared.

        Open already: returned unchanged. Its agent must exist (409 ``agent_unavailable``
        otherwise, naming it); it is bound to the workspace's current host, as a new session
        would be, since the one it had may be retired or a stand-in for a missing agent.
        """
        session = self.get(session_id)
        if session.state in OPEN_STATES:
            return session
        if self._closing:
            raise ShuttingDown("the daemon is stopping")
        self._require_writable()
        if not session.archived:  # an archived one comes back archived, not counted
            self._check_limit()
        _agent, missing = self._restored_agent(session.agent)
        try:
            if missing is not None:
                raise AgentFailed(missing)
            host = self.pool.host_for(session.agent, session.cwd)
        except AgentFailed as exc:
            raise AgentUnavailable(
                f"its agent {session.agent!r} is not available: {exc.message}", agent=session.agent
            ) from None
        host.forgive_crashes()
        session.host = host
        lifecycle.reopen(session)
        return session

    async def delete(self, session_id: str) -> None:
        """Cancel and close the session and forget it."""
        session = self.get(session_id)
        self._require_writable()  # deleting rows needs room in the WAL too
        await session.close(reason="deleted")
        self.sessions.pop(session_id, None)
        self.persist.delete(session_id)
        await self.release_host(session)

    async def prune(self, older_than_days: float | None = None) -> builtins.list[str]:
        """Delete closed sessions closed more than ``retention_days`` ago; returns their ids."""
        self._require_writable()
        days = self.settings.retention_days if older_than_days is None else older_than_days
        cutoff = time.time() - days * 86400
        doomed = [
            s.id
            for s in self.sessions.values()
            if s.state == SessionState.CLOSED and s.closed_at is not None and s.closed_at < cutoff
        ]
        for session_id in doomed:
            await self.delete(session_id)
        return doomed

    async def release_host(self, session: Session) -> None:
        """Give a workspace's agent back to the pool (a spare, or stopped) once no open session
        uses it."""
        host = session.host
        if any(s.host is host and s.state in OPEN_STATES for s in self.sessions.values()):
            return
        await self.pool.release(session.agent, host)


def _open_turn(last: Event | None) -> str | None:
    """The prompt id of a turn that started but never ended (the daemon died during it)."""
    if last is None or last.type != "turn_started":
        return None
    return str(last.data.get("prompt_id"))

"""The session manager: creates, finds, closes and reaps sessions; owns the agent hosts.

One :class:`AgentHost` serves every session whose workspace (``cwd``, resolved to its real path)
is the same; it starts with the first session there and stops when the last one closes.

Idle timeout: a session in ``idle`` state with no event and no attached client for
``settings.idle_timeout`` seconds is closed, which frees its agent session. Closed sessions stay
listed with their history until deleted, or pruned ``retention_days`` after closing.

Agents sleep: an agent with no running turn and no attached client for
``settings.agent_idle_timeout`` seconds is stopped; its sessions stay ``idle`` and the next prompt
starts it again and restores the agent's own session.

Durability (after :meth:`SessionManager.load`): sessions, events and permission requests live in
the SQLite store; a daemon stop suspends sessions instead of closing them, so after any restart
every session is listed again with its history and carries on.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from qwen_daemon.agents.host import AgentHost
from qwen_daemon.agents.orphans import OrphanGuard
from qwen_daemon.agents.registry import AgentCommand, AgentNotFound, resolve_agent
from qwen_daemon.config import Settings
from qwen_daemon.errors import AgentFailed, BadRequest, LimitReached, SessionNotFound, ShuttingDown
from qwen_daemon.sessions.session import Session
from qwen_daemon.sessions.store import Persistence, SessionRecord, Store

log = logging.getLogger(__name__)

MAX_TITLE = 200
OPEN_STATES = frozenset({"starting", "idle", "running", "awaiting_permission"})


def validate_cwd(cwd: Any) -> str:
    """A session's workspace must be an existing absolute directory."""
    if not isinstance(cwd, str) or not cwd:
        raise BadRequest("cwd must be a non-empty string (an absolute directory path)")
    if "\x00" in cwd or not os.path.isabs(cwd):
        raise BadRequest(f"cwd must be an absolute path, got {cwd!r}")
    if not os.path.isdir(cwd):
        raise BadRequest(f"cwd {cwd!r} is not an existing directory")
    return os.path.normpath(cwd)


def validate_title(title: Any, cwd: str) -> str:
    if title is None:
        return os.path.basename(cwd) or cwd
    if not isinstance(title, str):
        raise BadRequest("title must be a string")
    title = " ".join(title.split())
    if len(title) > MAX_TITLE:
        raise BadRequest(f"title is longer than {MAX_TITLE} characters")
    return title or os.path.basename(cwd) or cwd


class SessionManager:
    """Every session of this daemon, in creation order."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._env = dict(os.environ if env is None else env)
        self.sessions: dict[str, Session] = {}
        self.hosts: dict[str, AgentHost] = {}
        self._reaper: asyncio.Task[None] | None = None
        # agent stops in flight; shielded so cancelling their caller cannot leave an agent running
        self._host_stops: set[asyncio.Task[None]] = set()
        self._closing = False
        self._agent: AgentCommand | None = None
        self.persist: Persistence | None = None
        self.orphans: OrphanGuard | None = None

    def load(self) -> None:
        """Open the store, sweep agents a dead daemon left, and restore every session.

        Raises :class:`qwen_daemon.sessions.store.StoreError` when the database cannot be used.
        Needs a running loop (restored sessions emit their recovery events).
        """
        paths = self.settings.paths
        self.orphans = OrphanGuard(paths.agent_groups_file)
        self.orphans.sweep()
        store = Store(paths.database)
        self.persist = Persistence(store)
        for record in store.sessions():
            self._restore(record)
        self.persist.flush()

    def _restore(self, record: SessionRecord) -> None:
        assert self.persist is not None
        try:
            host = self._host_for(record.cwd)
        except AgentFailed:
            host = None
        history = self.persist.history(record.id, self.settings.event_history)
        if host is None:
            log.warning("session %s: no agent available; it is listed but cannot run", record.id)
            return
        session = Session(
            record.cwd,
            record.title,
            host,
            self.settings.event_history,
            self.persist,
            session_id=record.id,
            history=history,
        )
        session.created_at, session.updated_at = record.created_at, record.updated_at
        session.agent_session_id, session.mode = record.agent_session_id, record.mode
        session.state, session.failure, session.closed_at = record.state, record.failure, record.closed_at  # type: ignore[assignment]
        interrupted = _open_turn(history)
        session.recover(interrupted, self.persist.store.permissions(record.id, "pending"))
        self.sessions[session.id] = session

    # --- agent --------------------------------------------------------------------------------

    def agent_command(self) -> AgentCommand:
        """The resolved agent command (looked up once); raises AgentNotFound."""
        if self._agent is None:
            self._agent = resolve_agent(self.settings.agent_cmd)
        return self._agent

    def _host_for(self, cwd: str) -> AgentHost:
        key = os.path.realpath(cwd)
        host = self.hosts.get(key)
        if host is None:
            try:
                agent = self.agent_command()
            except AgentNotFound as exc:
                raise AgentFailed(str(exc)) from None
            slug = re.sub(r"[^A-Za-z0-9]+", "-", os.path.basename(key)).strip("-")[:40] or "root"
            digest = hashlib.sha256(key.encode()).hexdigest()[:8]
            host = AgentHost(
                agent.argv,
                key,
                self.settings.paths.agent_log_dir / f"{slug}-{digest}.log",
                env={**self._env, **agent.env},
                on_spawn=self.orphans.add if self.orphans else None,
                on_gone=self.orphans.discard if self.orphans else None,
            )
            self.hosts[key] = host
        return host

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start background housekeeping (the idle reaper). Needs a running loop."""
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")

    async def _reap_forever(self) -> None:
        shortest = min(self.settings.idle_timeout, self.settings.agent_idle_timeout)
        period = max(0.05, min(30.0, shortest / 4))
        while True:
            await asyncio.sleep(period)
            await self.reap_idle()
            await self.sleep_idle_agents()

    async def sleep_idle_agents(self) -> list[AgentHost]:
        """Stop agents nobody has used or watched for ``agent_idle_timeout``; their sessions stay."""
        now = asyncio.get_running_loop().time()
        sleepy = []
        for host in list(self.hosts.values()):
            mine = [s for s in self.sessions.values() if s.host is host]
            if not host.running or any(s.busy or s.state == "starting" for s in mine):
                continue
            if any(s.events.subscriber_count for s in mine):
                continue
            if all(now - s.last_activity >= self.settings.agent_idle_timeout for s in mine):
                sleepy.append(host)
        for host in sleepy:
            log.info("agent for %s idle for %.0f s: stopping it", host.cwd, self.settings.agent_idle_timeout)
            await asyncio.shield(self._stop_host(host))
        return sleepy

    async def reap_idle(self) -> list[str]:
        """Close sessions idle longer than the timeout; returns their ids."""
        now = asyncio.get_running_loop().time()
        stale = [
            s
            for s in self.sessions.values()
            if s.state == "idle"
            and s.events.subscriber_count == 0
            and now - s.last_activity >= self.settings.idle_timeout
        ]
        for session in stale:
            await session.close(reason="idle timeout")
            await self._release_host(session)
        return [s.id for s in stale]

    async def shutdown(self) -> None:
        """Close every session (cancelling turns), then stop every agent. Idempotent."""
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        sessions = [s for s in self.sessions.values() if s.state != "closed"]
        if self.persist is not None:  # durable: sessions carry on after the restart
            await asyncio.gather(*(s.suspend() for s in sessions), return_exceptions=True)
        else:
            await asyncio.gather(
                *(s.close(reason="daemon stopping") for s in sessions), return_exceptions=True
            )
        hosts = list(self.hosts.values())
        self.hosts.clear()
        stops = [self._stop_host(h) for h in hosts] + list(self._host_stops)
        await asyncio.gather(*stops, return_exceptions=True)
        if self.orphans is not None:
            self.orphans.close()
        if self.persist is not None:
            self.persist.store.close()
            self.persist = None

    # --- sessions -----------------------------------------------------------------------------

    @property
    def open_count(self) -> int:
        return sum(1 for s in self.sessions.values() if s.state in OPEN_STATES)

    async def create(self, cwd: Any, title: Any = None) -> Session:
        """Create a session and its agent session. Raises AgentFailed after recording why."""
        if self._closing:
            raise ShuttingDown("the daemon is stopping")
        path = validate_cwd(cwd)
        name = validate_title(title, path)
        if self.open_count >= self.settings.max_sessions:
            raise LimitReached(f"at most {self.settings.max_sessions} sessions may be open; close one first")
        host = self._host_for(path)
        session = Session(path, name, host, self.settings.event_history, self.persist)
        self.sessions[session.id] = session
        try:
            await session.start()
        except AgentFailed as exc:
            await self._release_host(session)
            raise AgentFailed(exc.message, session_id=session.id) from None
        return session

    def list(self) -> list[Session]:
        return list(self.sessions.values())

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise SessionNotFound(f"no session {session_id}")
        return session

    async def delete(self, session_id: str) -> None:
        """Cancel and close the session and forget it."""
        session = self.get(session_id)
        await session.close(reason="deleted")
        self.sessions.pop(session_id, None)
        if self.persist is not None:
            self.persist.delete(session_id)
        await self._release_host(session)

    async def prune(self, older_than_days: float | None = None) -> builtins.list[str]:
        """Delete closed sessions closed more than ``retention_days`` ago; returns their ids."""
        days = self.settings.retention_days if older_than_days is None else older_than_days
        cutoff = time.time() - days * 86400
        doomed = [
            s.id
            for s in self.sessions.values()
            if s.state == "closed" and s.closed_at is not None and s.closed_at < cutoff
        ]
        for session_id in doomed:
            await self.delete(session_id)
        return doomed

    async def _release_host(self, session: Session) -> None:
        """Stop a workspace's agent once no open session uses it."""
        host = session.host
        if any(s.host is host and s.state in OPEN_STATES for s in self.sessions.values()):
            return
        for key, value in list(self.hosts.items()):
            if value is host:
                del self.hosts[key]
        await asyncio.shield(self._stop_host(host))

    def _stop_host(self, host: AgentHost) -> asyncio.Task[None]:
        task = asyncio.ensure_future(host.stop())
        self._host_stops.add(task)
        task.add_done_callback(self._host_stops.discard)
        return task


def _open_turn(history: list[Any]) -> str | None:
    """The prompt id of a turn that started but never ended (the daemon died during it)."""
    for event in reversed(history):
        if event.type == "turn_ended":
            return None
        if event.type == "turn_started":
            return str(event.data.get("prompt_id"))
    return None

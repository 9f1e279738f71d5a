"""The session manager: creates, finds, closes and reaps sessions; owns the agent hosts.

One :class:`AgentHost` serves every session whose workspace (``cwd``, resolved to its real path)
is the same; it starts with the first session there and stops when the last one closes.

Idle timeout: a session in ``idle`` state with no event and no attached client for
``settings.idle_timeout`` seconds is closed, which frees its agent session. Closed sessions stay
listed with their history until deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from qwen_daemon.agents.host import AgentHost
from qwen_daemon.agents.registry import AgentCommand, AgentNotFound, resolve_agent
from qwen_daemon.config import Settings
from qwen_daemon.errors import AgentFailed, BadRequest, LimitReached, SessionNotFound, ShuttingDown
from qwen_daemon.sessions.session import Session

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
            )
            self.hosts[key] = host
        return host

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start background housekeeping (the idle reaper). Needs a running loop."""
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")

    async def _reap_forever(self) -> None:
        period = max(0.05, min(30.0, self.settings.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            await self.reap_idle()

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
        await asyncio.gather(*(s.close(reason="daemon stopping") for s in sessions), return_exceptions=True)
        hosts = list(self.hosts.values())
        self.hosts.clear()
        stops = [self._stop_host(h) for h in hosts] + list(self._host_stops)
        await asyncio.gather(*stops, return_exceptions=True)

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
        session = Session(path, name, host, max_events=self.settings.event_history)
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
        await self._release_host(session)

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

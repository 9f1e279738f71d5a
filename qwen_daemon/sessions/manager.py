"""The session manager: creates, finds, closes and reaps sessions; owns the agent hosts.

One :class:`AgentHost` serves every session whose workspace (``cwd``, resolved to its real path)
is the same; it starts with the first session there and stops when the last one closes.

No timer closes a session: it stays until deleted (archiving only hides it from the default
list). Idle agents are put to sleep and unused spares stopped by ``reaping.py``; a failed (or, in
an old database, closed) session can be reopened (``lifecycle.py``). Closed sessions stay listed
with their history until deleted, or pruned ``retention_days`` after closing.

Named agents: hosts are keyed by (agent name, workspace), so a workspace can run Qwen Code and,
say, ``claude-code-acp`` side by side; each session records the name of its agent.

Warm spares (``spare_agents``, default 1): when the last session of a workspace closes, its agent
is kept running as a spare for the next session there instead of being stopped, and at start the
most recently used workspaces get one, so a new session there does not wait for the agent to
boot (about 1 s for Qwen Code). At most ``spare_agents`` spares live at once (oldest stopped
first); ``reaping.py`` stops a spare unused for ``agent_idle_timeout``, and every spare at once
when the machine runs short of memory.

Durability (after :meth:`SessionManager.load`): sessions, events and permission requests live in
the SQLite store; a daemon stop suspends sessions instead of closing them, so after any restart
every session is listed again with its history and carries on.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import hashlib
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from qwen_daemon.agents.host import AgentHost
from qwen_daemon.agents.orphans import OrphanGuard
from qwen_daemon.agents.registry import AgentCommand, AgentNotFound, resolve_spec
from qwen_daemon.config import Settings
from qwen_daemon.contract.modes import Mode
from qwen_daemon.errors import (
    AgentFailed,
    AgentUnavailable,
    BadRequest,
    LimitReached,
    SessionNotFound,
    ShuttingDown,
)
from qwen_daemon.sessions import lifecycle, reaping
from qwen_daemon.sessions.events import Event
from qwen_daemon.sessions.lifecycle import validate_title
from qwen_daemon.sessions.persistence import Persistence
from qwen_daemon.sessions.session import Session, mode_ids, require_offered
from qwen_daemon.sessions.store import SessionRecord, Store

log = logging.getLogger(__name__)

#: events of a restored session kept in memory at start; older ones are read from the store
RESTORED_EVENTS = 100
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


class SessionManager:
    """Every session of this daemon, in creation order."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._env = dict(os.environ if env is None else env)
        self.sessions: dict[str, Session] = {}
        self.hosts: dict[tuple[str, str], AgentHost] = {}
        #: warm spare agents with no session yet, by (agent, workspace), least recently used first
        self.spares: OrderedDict[tuple[str, str], AgentHost] = OrderedDict()
        self.spare_since: dict[AgentHost, float] = {}
        #: the modes each agent last advertised (from session/new), for GET /api/agents
        self.agent_modes: dict[str, list[Mode]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        # agent stops in flight; shielded so cancelling their caller cannot leave an agent running
        self._host_stops: set[asyncio.Task[None]] = set()
        self._closing = False
        self._creating: set[str] = set()  # ids of sessions whose create() awaits their agent
        self._agents: dict[str, AgentCommand] = {}
        self._recent: list[tuple[str, str]] = []  # (agent, cwd) of stored sessions, newest first
        self.persist: Persistence | None = None
        self.orphans: OrphanGuard | None = None
        #: told of every committed event of every session (the push notifier); set before load()
        self.on_event: Callable[[Session, Event], None] | None = None

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
        records = store.sessions()
        for record in records:
            self._restore(record)
        self.persist.flush()
        self._recent = [
            (self.sessions[r.id].agent, self.sessions[r.id].cwd)
            for r in sorted(records, key=lambda r: r.updated_at, reverse=True)
            if r.id in self.sessions
        ]

    def _restore(self, record: SessionRecord) -> None:
        assert self.persist is not None
        agent, unavailable = self._restored_agent(record.agent)
        host = None
        if unavailable is None:
            try:
                host = self._host_for(agent, record.cwd, take_spare=False)
            except AgentFailed as exc:  # its named agent is gone (uninstalled, not on PATH)
                unavailable = exc.message
        if host is None:
            host = AgentHost((), record.cwd, self.settings.paths.agent_log_dir / "unavailable.log")
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
        session.state, session.failure, session.closed_at = record.state, record.failure, record.closed_at  # type: ignore[assignment]
        session.archived, session.modes = record.archived, record.modes
        if record.modes and not self.agent_modes.get(agent):  # for GET /api/agents before any start
            self.agent_modes[agent] = list(record.modes["available"])
        interrupted = _open_turn(self.persist.last_turn_event(record.id))
        lifecycle.recover(session, interrupted, self.persist.store.permissions(record.id, "pending"))
        if unavailable is not None and session.state != "closed":
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

    # --- agent --------------------------------------------------------------------------------

    def agent_command(self, name: str | None = None) -> AgentCommand:
        """The resolved command of a named agent (looked up once); raises AgentNotFound."""
        name = name or self.settings.default_agent
        if name not in self._agents:
            try:
                spec = self.settings.agent_spec(name)
            except KeyError:
                raise AgentNotFound(
                    f"no agent named {name!r} (known: {', '.join(self.settings.agent_names())})"
                ) from None
            self._agents[name] = resolve_spec(spec)
        return self._agents[name]

    def _host_for(self, agent: str, cwd: str, *, take_spare: bool = True) -> AgentHost:
        key = workspace_key(agent, cwd)
        host = self.hosts.get(key)
        if host is None and take_spare:
            host = self.spares.pop(key, None)
            if host is not None:
                self.spare_since.pop(host, None)
                if not (host.running or host.starting):
                    host = None  # it died while waiting; a fresh one starts below
                else:
                    log.info("using the warm spare agent pid=%s for %s", host.pid, key[1])
        if host is None:
            host = self._new_host(agent, key[1])
        self.hosts[key] = host
        return host

    def _new_host(self, agent: str, path: str) -> AgentHost:
        try:
            command = self.agent_command(agent)
        except AgentNotFound as exc:
            raise AgentFailed(str(exc)) from None
        slug = re.sub(r"[^A-Za-z0-9]+", "-", os.path.basename(path)).strip("-")[:40] or "root"
        digest = hashlib.sha256(f"{agent}\0{path}".encode()).hexdigest()[:8]
        name = slug if agent == self.settings.default_agent else f"{agent}-{slug}"
        host = AgentHost(
            command.argv,
            path,
            self.settings.paths.agent_log_dir / f"{name}-{digest}.log",
            # the marker lets a later start prove the agent's group is ours before it kills it
            env={**self._env, **command.env, **(self.orphans.agent_env if self.orphans else {})},
            on_spawn=self.orphans.add if self.orphans else None,
            on_gone=self.orphans.discard if self.orphans else None,
            qwen_code=command.qwen_code,
        )
        host.keep_spare_session = self.settings.spare_agents > 0
        return host

    # --- warm spares --------------------------------------------------------------------------

    def _keep_as_spare(self, agent: str, host: AgentHost) -> bool:
        """Keep a released, running agent warm for the next session in its workspace."""
        if self._closing or not host.running:
            return False
        return self._add_spare(agent, host)

    def _add_spare(self, agent: str, host: AgentHost) -> bool:
        if self.settings.spare_agents <= 0 or reaping.memory_is_short():
            return False
        key = (agent, host.cwd)
        self.spares[key] = host
        self.spares.move_to_end(key)
        self.spare_since[host] = asyncio.get_running_loop().time()
        while len(self.spares) > self.settings.spare_agents:
            _key, oldest = self.spares.popitem(last=False)
            self.spare_since.pop(oldest, None)
            self.stop_host(oldest)
        return True

    async def warm(self, agent: str | None, cwd: Any) -> AgentHost:
        """Start a spare agent for a workspace (no-op when one already runs there)."""
        name = agent or self.settings.default_agent
        key = workspace_key(name, validate_cwd(cwd))
        host = self.hosts.get(key) or self.spares.get(key)
        if host is None:
            host = self._new_host(name, key[1])
            if not self._add_spare(name, host):
                return host
        try:
            await host.ensure_started()
        except AgentFailed:
            if host in (self.hosts.get(key), self.spares.get(key)):
                raise
            return host  # a newer spare displaced it while it started: nothing is warm, nothing broke
        host.prepare_spare_session(key[1])
        return host

    async def warm_recent(self) -> None:
        """At start: a spare for each of the most recently used workspaces with no open session."""
        for agent, cwd in self._recent_workspaces():
            try:
                await self.warm(agent, cwd)
            except (AgentFailed, BadRequest) as exc:
                log.info("no warm spare for %s: %s", cwd, exc)

    def _recent_workspaces(self) -> builtins.list[tuple[str, str]]:
        """Up to ``spare_agents`` distinct (agent, workspace) pairs, most recently used first."""
        found: dict[tuple[str, str], str] = {}
        for agent, cwd in self._recent:
            if len(found) >= self.settings.spare_agents:
                break
            if os.path.isdir(cwd):
                found.setdefault(workspace_key(agent, cwd), cwd)
        return [(agent, cwd) for (agent, _key), cwd in found.items()]

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start background housekeeping (idle agents sleep, spares stop). Needs a running loop."""
        if self._reaper is None:
            self._reaper = asyncio.create_task(reaping.reap_forever(self), name="session-reaper")
        if self._warming is None and self._recent and self.settings.spare_agents > 0:
            # after start-up is reported: a spare must never delay the daemon being ready
            self._warming = asyncio.create_task(self.warm_recent(), name="warm-spares")

    async def shutdown(self) -> None:
        """Close every session (cancelling turns), then stop every agent. Idempotent."""
        self._closing = True
        for session_id in self._creating:  # never confirmed to their clients, who get ShuttingDown
            self.sessions.pop(session_id, None)
            if self.persist is not None:
                self.persist.delete(session_id)
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._warming
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reaper
            self._reaper = None
        sessions = [s for s in self.sessions.values() if s.state != "closed"]
        if self.persist is not None:  # durable: sessions carry on after the restart
            await asyncio.gather(*(s.suspend() for s in sessions), return_exceptions=True)
        else:
            await asyncio.gather(
                *(s.close(reason="daemon stopping") for s in sessions), return_exceptions=True
            )
        hosts = list(self.hosts.values()) + list(self.spares.values())
        self.hosts.clear()
        self.spares.clear()
        stops = [self.stop_host(h) for h in hosts] + list(self._host_stops)
        await asyncio.gather(*stops, return_exceptions=True)
        if self.orphans is not None:
            self.orphans.close()
        if self.persist is not None:
            self.persist.close()
            self.persist = None

    # --- sessions -----------------------------------------------------------------------------

    @property
    def storage_failure(self) -> str | None:
        """Why the session database cannot be written now (None: it can); see persistence.py."""
        return self.persist.failure if self.persist is not None else None

    def _require_writable(self) -> None:
        if self.persist is not None:
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

    async def create(self, cwd: Any, title: Any = None, agent: Any = None, mode: Any = None) -> Session:
        """Create a session (with the named agent, in ``mode``). Raises AgentFailed after recording why."""
        if self._closing:
            raise ShuttingDown("the daemon is stopping")
        self._require_writable()
        path = validate_cwd(cwd)
        name = validate_title(title, path)
        self._check_limit()
        if agent is not None and (not isinstance(agent, str) or agent not in self.settings.agent_names()):
            raise BadRequest(
                f"unknown agent {agent!r}; choose one of: {', '.join(self.settings.agent_names())}"
            )
        if mode is not None and (not isinstance(mode, str) or not mode):
            raise BadRequest("mode must be a non-empty string (a mode id the agent offers)")
        agent_name = agent or self.settings.default_agent
        known = mode_ids(self.agent_modes.get(agent_name, []))
        if mode is not None and known:  # refuse before starting anything
            require_offered(mode, known)
        host = self._host_for(agent_name, path)
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
            host = self._host_for(session.agent, session.cwd)
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
        if self.persist is not None:
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
            if s.state == "closed" and s.closed_at is not None and s.closed_at < cutoff
        ]
        for session_id in doomed:
            await self.delete(session_id)
        return doomed

    async def release_host(self, session: Session) -> None:
        """Stop a workspace's agent once no open session uses it."""
        host = session.host
        if any(s.host is host and s.state in OPEN_STATES for s in self.sessions.values()):
            return
        for key, value in list(self.hosts.items()):
            if value is host:
                del self.hosts[key]
        if not self._keep_as_spare(session.agent, host):
            await asyncio.shield(self.stop_host(host))

    def stop_host(self, host: AgentHost, *, retire: bool = True) -> asyncio.Task[None]:
        """Stop an agent; unless its sessions may restart it, for good (see AgentHost.retire)."""
        task = asyncio.ensure_future(host.retire() if retire else host.stop())
        self._host_stops.add(task)
        task.add_done_callback(self._host_stops.discard)
        return task


def workspace_key(agent: str, cwd: str) -> tuple[str, str]:
    """Agent hosts are shared per (agent name, real path of the workspace)."""
    return agent, os.path.realpath(cwd)


def _open_turn(last: Event | None) -> str | None:
    """The prompt id of a turn that started but never ended (the daemon died during it)."""
    if last is None or last.type != "turn_started":
        return None
    return str(last.data.get("prompt_id"))

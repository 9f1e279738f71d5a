"""The agent pool: every agent process of one daemon, its warm spares, and letting go of them.

Why a module of its own: the session manager used to keep the agent hosts and spares in its own
dicts, and ``sessions/reaping.py`` edited those dicts from outside (and imported the manager back,
a cycle). Now this pool alone owns them; the manager asks it for a host, hands a host back, and
reads them through read-only views. It knows nothing of sessions: whether a host's sessions may
let it sleep is a question it asks through the ``idle_since`` callback the manager gives it.

Hosts: one :class:`AgentHost` serves every session whose workspace (``cwd``, resolved to its real
path) and agent name are the same, so a workspace can run Qwen Code and, say,
``claude-code-acp`` side by side. It starts with the first session there.

Warm spares (``spare_agents``, default 1): when the last session of a workspace lets its agent go,
the agent is kept running as a spare for the next session there instead of being stopped, and at
start the most recently used workspaces get one, so a new session there does not wait for the
agent to boot (about 1 s for Qwen Code). At most ``spare_agents`` spares live at once (oldest
stopped first).

Letting go (the reaper, :meth:`AgentPool.reap_forever`), never of sessions: a session stays until
the user deletes (or archives) it, because the whole point is to walk away for hours and come
back to it. What an idle session costs is its agent process, and that is what goes to sleep:

- an agent whose sessions have no running turn and no attached client for
  ``agent_idle_timeout`` seconds is stopped; its sessions stay ``idle`` and the next prompt
  starts it again and restores the agent's own session;
- a spare unused for ``agent_idle_timeout`` is stopped, and every spare at once when the machine
  has less than :data:`SPARE_MIN_AVAILABLE_MIB` of memory available (``psutil``, so macOS gets
  the same check as Linux).

Each agent or spare is judged just before it is let go, never from a list made earlier: letting
one go awaits (an agent takes a moment to stop), and a prompt, a client or a new session may
reach another meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from qwen_daemon.agents.host import AgentHost
from qwen_daemon.agents.orphans import OrphanGuard
from qwen_daemon.agents.registry import AgentCommand, AgentNotFound, resolve_spec
from qwen_daemon.config import Settings
from qwen_daemon.errors import AgentFailed, BadRequest

log = logging.getLogger(__name__)

#: Below this much available memory warm spares are stopped and none are started.
SPARE_MIN_AVAILABLE_MIB = 1024

#: (agent name, real path of the workspace): what one agent host serves
WorkspaceKey = tuple[str, str]


def validate_cwd(cwd: Any) -> str:
    """A session's workspace must be an existing absolute directory."""
    if not isinstance(cwd, str) or not cwd:
        raise BadRequest("cwd must be a non-empty string (an absolute directory path)")
    if "\x00" in cwd or not os.path.isabs(cwd):
        raise BadRequest(f"cwd must be an absolute path, got {cwd!r}")
    if not os.path.isdir(cwd):
        raise BadRequest(f"cwd {cwd!r} is not an existing directory")
    return os.path.normpath(cwd)


def workspace_key(agent: str, cwd: str) -> WorkspaceKey:
    """Agent hosts are shared per (agent name, real path of the workspace)."""
    return agent, os.path.realpath(cwd)


def memory_is_short() -> bool:
    """Whether the machine has less than :data:`SPARE_MIN_AVAILABLE_MIB` of memory available."""
    try:
        import psutil  # here, not at import: ~8 ms that start → ready need not pay

        available = psutil.virtual_memory().available
    except (OSError, RuntimeError):  # an unreadable /proc or an unsupported platform: never short
        return False
    return available < SPARE_MIN_AVAILABLE_MIB * 1024 * 1024


def _never_idle(_host: AgentHost) -> float | None:
    return None


class AgentPool:
    """The agent hosts of one daemon, by (agent, workspace), and its warm spares."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._env = dict(os.environ if env is None else env)
        self._hosts: dict[WorkspaceKey, AgentHost] = {}
        #: warm spare agents with no session yet, least recently used first
        self._spares: OrderedDict[WorkspaceKey, AgentHost] = OrderedDict()
        self._spare_since: dict[AgentHost, float] = {}
        self._agents: dict[str, AgentCommand] = {}
        # agent stops in flight; shielded so cancelling their caller cannot leave an agent running
        self._host_stops: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._closing = False
        #: records every agent's process group, so a later start can sweep those a dead daemon
        #: left (set by :meth:`sweep_orphans`)
        self.orphans: OrphanGuard | None = None
        #: since when (event-loop time) a host's users have neither worked nor watched; None while
        #: they do. The session manager sets it: the pool knows nothing of sessions.
        self.idle_since: Callable[[AgentHost], float | None] = _never_idle

    # --- views --------------------------------------------------------------------------------

    @property
    def hosts(self) -> Mapping[WorkspaceKey, AgentHost]:
        """The hosts serving sessions now (read-only: only the pool changes it)."""
        return MappingProxyType(self._hosts)

    @property
    def spares(self) -> Mapping[WorkspaceKey, AgentHost]:
        """The warm spares, least recently used first (read-only: only the pool changes it)."""
        return MappingProxyType(self._spares)

    @property
    def warming(self) -> asyncio.Task[None] | None:
        """The start-up task warming recent workspaces (None when there was nothing to warm)."""
        return self._warming

    # --- agents -------------------------------------------------------------------------------

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

    def sweep_orphans(self) -> None:
        """Kill the agents a dead daemon left behind, and record ours from now on."""
        self.orphans = OrphanGuard(self.settings.paths.agent_groups_file)
        self.orphans.sweep()

    def host_for(self, agent: str, cwd: str, *, take_spare: bool = True) -> AgentHost:
        """The host serving ``agent`` in workspace ``cwd``: the one in use, else the workspace's
        spare (``take_spare``), else a new one (not started). Raises AgentFailed for an unknown
        agent."""
        key = workspace_key(agent, cwd)
        host = self._hosts.get(key)
        if host is None and take_spare:
            host = self._spares.pop(key, None)
            if host is not None:
                self._spare_since.pop(host, None)
                if not (host.running or host.starting):
                    host = None  # it died while waiting; a fresh one starts below
                else:
                    log.info("using the warm spare agent pid=%s for %s", host.pid, key[1])
        if host is None:
            host = self._new_host(agent, key[1])
        self._hosts[key] = host
        return host

    def stand_in(self, cwd: str) -> AgentHost:
        """A host that runs nothing, for a session whose agent is not available."""
        return AgentHost((), cwd, self.settings.paths.agent_log_dir / "unavailable.log")

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

    async def release(self, agent: str, host: AgentHost) -> None:
        """No open session uses ``host`` any more: keep it as its workspace's spare, or stop it."""
        for key, value in list(self._hosts.items()):
            if value is host:
                del self._hosts[key]
        if self._closing or not host.running or not self._add_spare(agent, host):
            await asyncio.shield(self.stop_host(host))

    def stop_host(self, host: AgentHost, *, retire: bool = True) -> asyncio.Task[None]:
        """Stop an agent; unless its sessions may restart it, for good (see AgentHost.retire)."""
        task = asyncio.ensure_future(host.retire() if retire else host.stop())
        self._host_stops.add(task)
        task.add_done_callback(self._host_stops.discard)
        return task

    # --- warm spares --------------------------------------------------------------------------

    def _add_spare(self, agent: str, host: AgentHost) -> bool:
        if self.settings.spare_agents <= 0 or memory_is_short():
            return False
        key = (agent, host.cwd)
        self._spares[key] = host
        self._spares.move_to_end(key)
        self._spare_since[host] = asyncio.get_running_loop().time()
        while len(self._spares) > self.settings.spare_agents:
            _key, oldest = self._spares.popitem(last=False)
            self._spare_since.pop(oldest, None)
            self.stop_host(oldest)
        return True

    async def warm(self, agent: str | None, cwd: Any) -> AgentHost:
        """Start a spare agent for a workspace (no-op when one already runs there)."""
        name = agent or self.settings.default_agent
        key = workspace_key(name, validate_cwd(cwd))
        host = self._hosts.get(key) or self._spares.get(key)
        if host is None:
            host = self._new_host(name, key[1])
            if not self._add_spare(name, host):
                return host
        try:
            await host.ensure_started()
        except AgentFailed:
            if host in (self._hosts.get(key), self._spares.get(key)):
                raise
            return host  # a newer spare displaced it while it started: nothing is warm, nothing broke
        host.prepare_spare_session(key[1])
        return host

    async def _warm_recent(self, recent: list[tuple[str, str]]) -> None:
        for agent, cwd in self._recent_workspaces(recent):
            try:
                await self.warm(agent, cwd)
            except (AgentFailed, BadRequest) as exc:
                log.info("no warm spare for %s: %s", cwd, exc)

    def _recent_workspaces(self, recent: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Up to ``spare_agents`` distinct (agent, workspace) pairs, most recently used first."""
        found: dict[WorkspaceKey, str] = {}
        for agent, cwd in recent:
            if len(found) >= self.settings.spare_agents:
                break
            if os.path.isdir(cwd):
                found.setdefault(workspace_key(agent, cwd), cwd)
        return [(agent, cwd) for (agent, _key), cwd in found.items()]

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, recent: list[tuple[str, str]]) -> None:
        """Start the reaper, and warm a spare for each of the most recently used ``recent``
        (agent, workspace) pairs (newest first). Needs a running loop."""
        if self._reaper is None:
            self._reaper = asyncio.create_task(self.reap_forever(), name="agent-reaper")
        if self._warming is None and recent and self.settings.spare_agents > 0:
            # after start-up is reported: a spare must never delay the daemon being ready
            self._warming = asyncio.create_task(self._warm_recent(recent), name="warm-spares")

    async def stop_housekeeping(self) -> None:
        """The daemon stops: no more spares are kept or warmed, and the reaper ends."""
        self._closing = True
        for task in (self._warming, self._reaper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._reaper = None

    async def shutdown(self) -> None:
        """Stop every agent, spares included, and wait for every stop in flight. Idempotent."""
        await self.stop_housekeeping()
        hosts = list(self._hosts.values()) + list(self._spares.values())
        self._hosts.clear()
        self._spares.clear()
        self._spare_since.clear()
        stops = [self.stop_host(h) for h in hosts] + list(self._host_stops)
        await asyncio.gather(*stops, return_exceptions=True)
        if self.orphans is not None:
            self.orphans.close()

    # --- letting go ---------------------------------------------------------------------------

    async def reap_forever(self) -> None:
        """The housekeeping task: every few seconds (a quarter of ``agent_idle_timeout``)."""
        period = max(0.05, min(30.0, self.settings.agent_idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            try:
                await self.sleep_idle_agents()
                await self.reap_spares()
            except Exception:  # a bug here must not end reaping for the daemon's lifetime
                log.exception("putting idle agents to sleep failed; trying again later")

    def _may_sleep(self, host: AgentHost, now: float) -> bool:
        """Nobody used or watched the agent for ``agent_idle_timeout`` and it has no turn to run."""
        if not host.running:
            return False
        since = self.idle_since(host)
        return since is not None and now - since >= self.settings.agent_idle_timeout

    async def sleep_idle_agents(self) -> list[AgentHost]:
        """Stop agents nobody has used or watched for ``agent_idle_timeout``; their sessions stay."""
        loop = asyncio.get_running_loop()
        slept = []
        for host in list(self._hosts.values()):
            if host not in self._hosts.values() or not self._may_sleep(host, loop.time()):
                continue
            log.info("agent for %s idle for %.0f s: stopping it", host.cwd, self.settings.agent_idle_timeout)
            await asyncio.shield(self.stop_host(host, retire=False))  # its sessions restart it
            slept.append(host)
        return slept

    async def reap_spares(self) -> None:
        """Stop spares unused for ``agent_idle_timeout``, and all of them when memory is short."""
        short = memory_is_short()
        loop = asyncio.get_running_loop()
        for key, host in list(self._spares.items()):
            if self._spares.get(key) is not host:
                continue  # taken by a session (or replaced) while an earlier spare stopped
            idle_for = loop.time() - self._spare_since.get(host, loop.time())
            if short or idle_for >= self.settings.agent_idle_timeout:
                del self._spares[key]
                self._spare_since.pop(host, None)
                log.info("stopping the spare agent for %s (%s)", key[1], "memory" if short else "unused")
                await asyncio.shield(self.stop_host(host))

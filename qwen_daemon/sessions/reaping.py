"""Letting go of what nobody uses: idle agents and unused warm spares, never sessions.

Sessions are not reaped: one stays until the user deletes (or archives) it, because the whole
point is to walk away for hours and come back to it (issue 13). What an idle session costs is
its agent process, and that is what goes to sleep.

Agents sleep: an agent with no running turn and no attached client for
``settings.agent_idle_timeout`` seconds is stopped; its sessions stay ``idle`` and the next prompt
starts it again and restores the agent's own session.

Spares: one unused for ``agent_idle_timeout`` is stopped, and every spare at once when the machine
has less than ``SPARE_MIN_AVAILABLE_MIB`` of memory available.

Each agent or spare is judged just before it is let go, never from a list made earlier:
letting one go awaits (an agent takes a moment to stop), and a prompt, a client or a new session
may reach another meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qwen_daemon.agents.host import AgentHost
    from qwen_daemon.sessions.manager import SessionManager

log = logging.getLogger(__name__)

#: Below this much available memory (MemAvailable) warm spares are stopped and none are started.
SPARE_MIN_AVAILABLE_MIB = 1024


async def reap_forever(manager: SessionManager) -> None:
    """The manager's housekeeping task: every few seconds (a quarter of ``agent_idle_timeout``)."""
    period = max(0.05, min(30.0, manager.settings.agent_idle_timeout / 4))
    while True:
        await asyncio.sleep(period)
        try:
            await sleep_idle_agents(manager)
            await reap_spares(manager)
        except Exception:  # a bug here must not end reaping for the daemon's lifetime
            log.exception("putting idle agents to sleep failed; trying again later")


def _may_sleep(manager: SessionManager, host: AgentHost, now: float) -> bool:
    """Nobody used or watched the agent for ``agent_idle_timeout`` and it has no turn to run."""
    mine = [s for s in manager.sessions.values() if s.host is host]
    if not host.running or any(s.busy or s.state == "starting" for s in mine):
        return False
    if any(s.events.subscriber_count for s in mine):
        return False
    return all(now - s.last_activity >= manager.settings.agent_idle_timeout for s in mine)


async def sleep_idle_agents(manager: SessionManager) -> list[AgentHost]:
    """Stop agents nobody has used or watched for ``agent_idle_timeout``; their sessions stay."""
    loop = asyncio.get_running_loop()
    slept = []
    for host in list(manager.hosts.values()):
        if host not in manager.hosts.values() or not _may_sleep(manager, host, loop.time()):
            continue
        log.info("agent for %s idle for %.0f s: stopping it", host.cwd, manager.settings.agent_idle_timeout)
        await asyncio.shield(manager.stop_host(host, retire=False))  # its sessions restart it
        slept.append(host)
    return slept


async def reap_spares(manager: SessionManager) -> None:
    """Stop spares unused for ``agent_idle_timeout``, and all of them when memory is short."""
    short = memory_is_short()
    loop = asyncio.get_running_loop()
    for key, host in list(manager.spares.items()):
        if manager.spares.get(key) is not host:
            continue  # taken by a session (or replaced) while an earlier spare stopped
        idle_for = loop.time() - manager.spare_since.get(host, loop.time())
        if short or idle_for >= manager.settings.agent_idle_timeout:
            del manager.spares[key]
            manager.spare_since.pop(host, None)
            log.info("stopping the spare agent for %s (%s)", key[1], "memory" if short else "unused")
            await asyncio.shield(manager.stop_host(host))


def memory_is_short() -> bool:
    """Whether the machine has less than SPARE_MIN_AVAILABLE_MIB available (Linux; else never)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) < SPARE_MIN_AVAILABLE_MIB * 1024
    except (OSError, ValueError):
        pass
    return False

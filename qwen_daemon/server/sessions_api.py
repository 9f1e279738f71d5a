"""HTTP handlers for sessions: create, list, inspect, edit, reopen, delete, prompt, cancel,
permissions, events.

Handlers only validate input and translate; every rule lives in the session manager and the
session, and every failure is a domain error that ``base.py`` turns into a JSON error body.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from qwen_daemon.contract import bodies
from qwen_daemon.errors import BadRequest
from qwen_daemon.server.base import BaseHandler
from qwen_daemon.sessions import lifecycle

if TYPE_CHECKING:
    from qwen_daemon.contract.responses import (
        AgentInfo,
        AgentList,
        PermissionAnswered,
        PromptAccepted,
        Warming,
    )

_ID = r"([A-Za-z0-9_-]{1,64})"


def parse_after(raw: str | None) -> int:
    """The ``after`` query parameter: a non-negative whole number (default 0)."""
    if raw is None or raw == "":
        return 0
    if not re.fullmatch(r"[0-9]{1,18}", raw):  # not isdigit(): "²" is a digit that int() refuses
        raise BadRequest(f"after must be a non-negative whole number, got {raw!r}")
    return int(raw)


def archived_filter(raw: str | None) -> bool:
    """``?archived=``: ``true`` lists the archived sessions, ``false`` (the default) the others."""
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise BadRequest(f"archived must be true or false, got {raw!r}")


class SessionsHandler(BaseHandler):
    def get(self) -> None:
        archived = archived_filter(self.get_query_argument("archived", None))
        listed = [s.summary() for s in self.manager.list() if s.archived == archived]
        self.write_json({"sessions": listed})

    async def post(self) -> None:
        body = self.body(bodies.CreateSession)
        session = await self.manager.create(
            body["cwd"], body.get("title"), body.get("agent"), body.get("mode")
        )
        self.set_header("Location", f"/api/sessions/{session.id}")
        self.write_json(session.detail(), status=201)


class SessionHandler(BaseHandler):
    def get(self, session_id: str) -> None:
        self.write_json(self.manager.get(session_id).detail())

    async def delete(self, session_id: str) -> None:
        await self.manager.delete(session_id)
        self.set_status(204)
        self.finish()

    def patch(self, session_id: str) -> None:
        """Rename and/or (un)archive: ``{title?, archived?}``."""
        session = self.manager.get(session_id)
        lifecycle.edit(session, self.body(bodies.EditSession))
        self.write_json(session.detail())


class ReopenHandler(BaseHandler):
    """Bring a failed (or closed) session back to ``idle``; the next prompt restarts its agent."""

    async def post(self, session_id: str) -> None:
        session = await self.manager.reopen(session_id)
        self.write_json(session.detail())


class PromptHandler(BaseHandler):
    def post(self, session_id: str) -> None:
        session = self.manager.get(session_id)
        prompt_id = session.prompt(self.body(bodies.Prompt)["text"])
        accepted: PromptAccepted = {"prompt_id": prompt_id}
        self.write_json(accepted, status=202)


class CancelHandler(BaseHandler):
    async def post(self, session_id: str) -> None:
        await self.manager.get(session_id).cancel()
        self.write_json({"status": "cancelling"}, status=202)


class PermissionHandler(BaseHandler):
    def post(self, session_id: str, request_id: str) -> None:
        session = self.manager.get(session_id)
        answer = self.body(bodies.PermissionAnswer)
        session.answer_permission(request_id, answer["option_id"], answer.get("answers"))
        answered: PermissionAnswered = {"request_id": request_id, "option_id": answer["option_id"]}
        self.write_json(answered)


class ModeHandler(BaseHandler):
    """Switch a session's mode to one its agent offers (listed in the session's ``modes``)."""

    async def post(self, session_id: str) -> None:
        session = self.manager.get(session_id)
        await session.set_mode(self.body(bodies.SetMode)["mode_id"])
        self.write_json(session.detail())


class AgentsHandler(BaseHandler):
    """The named agents a session can be created with, and what is known of their modes."""

    def get(self) -> None:
        manager, pool = self.manager, self.context.agents
        settings = manager.settings
        agents: list[AgentInfo] = []
        for name in settings.agent_names():
            spec = settings.agent_spec(name)
            agents.append(
                {
                    "name": name,
                    "default": name == settings.default_agent,
                    "command": list(spec.command) if spec.command else None,
                    # advertised by the agent when a session starts; empty until then
                    "modes": manager.agent_modes.get(name, []),
                    "running": sorted(cwd for agent, cwd in pool.hosts if agent == name),
                    "spares": sorted(cwd for agent, cwd in pool.spares if agent == name),
                }
            )
        # how many workspaces keep a warm spare: 0 tells a client not to ask for one
        spares = settings.spare_agents
        listed: AgentList = {
            "default_agent": settings.default_agent,
            "spare_agents": spares,
            "agents": agents,
        }
        self.write_json(listed)


class WarmHandler(BaseHandler):
    """Start a spare agent for a workspace ahead of a session (e.g. when a user picks a folder)."""

    async def post(self, name: str) -> None:
        cwd = self.body(bodies.Warm)["cwd"]
        self.manager.require_agent(name)
        host = await self.context.agents.warm(name, cwd)
        pid = host.pid if host.running else None  # None: nothing is kept warm (spares off, displaced)
        warming: Warming = {"agent": name, "cwd": host.cwd, "pid": pid}
        self.write_json(warming, status=202)


class EventsHandler(BaseHandler):
    def get(self, session_id: str) -> None:
        session = self.manager.get(session_id)
        events = session.events.since(parse_after(self.get_query_argument("after", None)))
        # events are serialized once, when they happen; the page is stitched from that text
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(
            '{"events":['
            + ",".join(e.json for e in events)
            + f'],"last_seq":{session.events.last_seq},"first_seq":{session.events.first_seq}}}'
        )


class PruneHandler(BaseHandler):
    """Remove closed sessions older than the retention time (or ``older_than_days``)."""

    async def post(self) -> None:
        days = self.body(bodies.Prune, optional=True).get("older_than_days")
        pruned = await self.manager.prune(None if days is None else float(days))
        self.write_json({"pruned": pruned})


routes: list[Any] = [
    (r"/api/sessions", SessionsHandler),
    (r"/api/sessions/prune", PruneHandler),
    (rf"/api/sessions/{_ID}", SessionHandler),
    (rf"/api/sessions/{_ID}/prompt", PromptHandler),
    (rf"/api/sessions/{_ID}/cancel", CancelHandler),
    (rf"/api/sessions/{_ID}/permissions/{_ID}", PermissionHandler),
    (rf"/api/sessions/{_ID}/events", EventsHandler),
    (rf"/api/sessions/{_ID}/mode", ModeHandler),
    (rf"/api/sessions/{_ID}/reopen", ReopenHandler),
    (r"/api/agents", AgentsHandler),
    (rf"/api/agents/{_ID}/warm", WarmHandler),
]

"""HTTP handlers for sessions: create, list, inspect, edit, reopen, delete, prompt, cancel,
permissions, events.

Handlers only validate input and translate; every rule lives in the session manager and the
session, and every failure is a domain error that ``base.py`` turns into a JSON error body.
"""

from __future__ import annotations

import re
from typing import Any

from qwen_daemon.errors import BadRequest
from qwen_daemon.server.base import BaseHandler
from qwen_daemon.sessions import lifecycle

MAX_PROMPT_CHARS = 100_000
_ID = r"([A-Za-z0-9_-]{1,64})"
#: older than this many days (about 2,700 years) means nothing; a bound keeps float() from overflowing
MAX_PRUNE_DAYS = 1_000_000


def parse_after(raw: str | None) -> int:
    """The ``after`` query parameter: a non-negative whole number (default 0)."""
    if raw is None or raw == "":
        return 0
    if not re.fullmatch(r"[0-9]{1,18}", raw):  # not isdigit(): "²" is a digit that int() refuses
        raise BadRequest(f"after must be a non-negative whole number, got {raw!r}")
    return int(raw)


def required_str(body: dict[str, Any], name: str, *, max_len: int = 1000) -> str:
    value = body.get(name)
    if value is None:
        raise BadRequest(f"missing field {name!r}")
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string")
    if len(value) > max_len:
        raise BadRequest(f"field {name!r} is longer than {max_len} characters")
    return value


def prompt_text(body: dict[str, Any]) -> str:
    text = required_str(body, "text", max_len=MAX_PROMPT_CHARS)
    if not text.strip():
        raise BadRequest("field 'text' must not be empty")
    return text


def permission_answer(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """``{option_id, answers?}``: answers map a question index to a label or free text (a list of
    them for a multi-select). Only their form is checked here; the session checks them against
    the request's questions (qwen_daemon.agents.questions) before anything reaches the agent."""
    option_id = required_str(body, "option_id", max_len=200)
    answers = body.get("answers")
    if answers is None:
        return option_id, None
    if not isinstance(answers, dict):
        raise BadRequest('field \'answers\' must be an object keyed by question index, e.g. {"0": "SQLite"}')
    for key, value in answers.items():
        if not isinstance(value, str) and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise BadRequest(
                f"answers: the answer to question {key!r} must be a string "
                "(a list of strings for a multi-select)"
            )
    return option_id, answers


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
        body = self.json_body()
        unknown = set(body) - {"cwd", "title", "agent", "mode"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        if "cwd" not in body:
            raise BadRequest("missing field 'cwd'")
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
        lifecycle.edit(session, self.json_body())
        self.write_json(session.detail())


class ReopenHandler(BaseHandler):
    """Bring a failed (or closed) session back to ``idle``; the next prompt restarts its agent."""

    async def post(self, session_id: str) -> None:
        session = await self.manager.reopen(session_id)
        self.write_json(session.detail())


class PromptHandler(BaseHandler):
    def post(self, session_id: str) -> None:
        session = self.manager.get(session_id)
        prompt_id = session.prompt(prompt_text(self.json_body()))
        self.write_json({"prompt_id": prompt_id}, status=202)


class CancelHandler(BaseHandler):
    async def post(self, session_id: str) -> None:
        await self.manager.get(session_id).cancel()
        self.write_json({"status": "cancelling"}, status=202)


class PermissionHandler(BaseHandler):
    def post(self, session_id: str, request_id: str) -> None:
        session = self.manager.get(session_id)
        option_id, answers = permission_answer(self.json_body())
        session.answer_permission(request_id, option_id, answers)
        self.write_json({"request_id": request_id, "option_id": option_id})


class ModeHandler(BaseHandler):
    """Switch a session's mode to one its agent offers (listed in the session's ``modes``)."""

    async def post(self, session_id: str) -> None:
        session = self.manager.get(session_id)
        await session.set_mode(required_str(self.json_body(), "mode_id", max_len=200))
        self.write_json(session.detail())


class AgentsHandler(BaseHandler):
    """The named agents a session can be created with, and what is known of their modes."""

    def get(self) -> None:
        manager, pool = self.manager, self.context.agents
        settings = manager.settings
        agents = []
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
        self.write_json({"default_agent": settings.default_agent, "spare_agents": spares, "agents": agents})


class WarmHandler(BaseHandler):
    """Start a spare agent for a workspace ahead of a session (e.g. when a user picks a folder)."""

    async def post(self, name: str) -> None:
        body = self.json_body()
        if name not in self.manager.settings.agent_names():
            raise BadRequest(f"unknown agent {name!r}")
        host = await self.context.agents.warm(name, body.get("cwd"))
        pid = host.pid if host.running else None  # None: nothing is kept warm (spares off, displaced)
        self.write_json({"agent": name, "cwd": host.cwd, "pid": pid}, status=202)


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
        body = self.json_body() if self.request_body.strip() else {}
        days = body.get("older_than_days")
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int | float) or not 0 <= days <= MAX_PRUNE_DAYS
        ):
            raise BadRequest(f"older_than_days must be a number from 0 to {MAX_PRUNE_DAYS}")
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

#!/usr/bin/env python3
"""A scripted fake ACP agent that mimics Qwen Code's ``--acp`` behaviour, for tests.

Run it as ``python tests/fake_agent.py``; it speaks ACP (newline-delimited JSON-RPC) on
stdin/stdout and logs to stderr (first line: ``fake-agent: started pid=N``).

The text of each ``session/prompt`` is a script, one command per line (blank lines skipped):

``say <text>``               agent_message_chunk updates, split at spaces (streamed, 2+ chunks)
``think <text>``             one agent_thought_chunk
``md <json string>``         the decoded string (it may hold newlines: Markdown) as agent_message_chunk
                             updates of at most 16 characters each
``stream <N> [<delay_ms>]``  N agent_message_chunk updates ``"chunk <i>\\n"`` (i = 1..N)
``tool <kind> <title...>``   tool_call (pending) -> tool_call_update in_progress -> completed
``permission <title...>``    a write_file permission request exactly as Qwen Code sends it (options
                             proceed_always "Allow All Edits" / proceed_once "Allow" / cancel
                             "Reject"), titled <title>; a proceed_* choice completes the tool, with
                             no in_progress update first, carrying Qwen's recorded diff
                             (``{type: diff, path: <cwd>/notes.txt, oldText: "", newText:
                             "hello\n"}``) and says ``allowed <optionId>``; proceed_always first
                             switches the mode to auto-edit (current_mode_update plus
                             qwen/notify/session/mode-update, as Qwen does)
``question <text | json>``   ask_user_question as Qwen Code asks it: the questions in
                             ``toolCall._meta.qwenQuestions`` (options proceed_once "Submit" /
                             cancel). <text> is one single-select question (Yes / No); a JSON
                             ``{"questions": [...]}`` gives Qwen's own question objects. Completes
                             the tool with Qwen's wording of the answers and says
                             ``answers: <json>`` (the response's top-level ``answers``)
``plan-exit <text | json>``  exit_plan_mode's plan approval (four options, the plan as content and
                             rawInput.plan; a JSON string may hold newlines); an allow switches the
                             mode as Qwen does and says ``allowed <optionId>``
``shell-permission <cmd>``   run_shell_command's permission request (proceed_always_project /
                             proceed_always_user / proceed_once / cancel); says ``allowed <optionId>``
``plan <a>;<b>;<c>``         plan update (entries pending, priority medium)
``sleep <ms>``               wait (a session/cancel interrupts it)
``wait``                     block until session/cancel
``crash``                    flush and ``os._exit(3)`` mid-turn
``error <message>``          the prompt request fails with JSON-RPC error -32603 ``<message>``
``big <kib>``                one available_commands_update line of about <kib> KiB
``mode <id>``                current_mode_update
``stderr <text>``            writes text to stderr
``usage``                    an agent_message_chunk with empty text (Qwen ends replies with one)
``notify <method> [<json>]`` a raw non-standard notification (e.g. qwen/notify/session/mode-update)
``request <method> [<json>]`` a raw request to the client; says ``request <method>: <result|error>``
anything else                agent_message_chunk ``echo: <line>``

The permission requests are copies of what real Qwen Code sent, recorded in
``tests/fixtures/qwen_permissions.json`` (see ``fake_agent_asks.py``). Rejecting any of them
(``cancel``, or a ``cancelled`` outcome) fails the tool as Qwen does ("Tool ... was canceled by the
user.") and ends the turn at once with stopReason ``end_turn``, the rest of the script unrun: real
Qwen Code ends a rejected turn that way, not with ``cancelled``.

After the script the turn ends with stopReason ``end_turn``. A ``session/cancel`` (or, like Qwen,
a second ``session/prompt`` on the busy session) interrupts the running turn at once, answers it
with stopReason ``cancelled`` and abandons any pending permission request. A malformed line
(``sleep soon``) fails the prompt with -32602. ``session/load`` replays the history as
user_message_chunk / agent_message_chunk updates and, like Qwen, resets the mode to ``default``.

Environment switches:
``FAKE_AGENT_EXIT_AT_START=1``   exit with status 7 before reading anything
``FAKE_AGENT_AUTH_REQUIRED=1``   session/new fails with -32000 "Authentication required"
``FAKE_AGENT_IGNORE_SIGTERM=1``  ignore SIGTERM and stdin EOF (only SIGKILL stops it)
``FAKE_AGENT_SPAWN_CHILD=1``     spawn ``sleep 300`` in the same process group at start
``FAKE_AGENT_INIT_GATE=<path>``  answer ``initialize`` only once that file exists (a slow start)
``FAKE_AGENT_HISTORY_DIR=<dir>`` persist session histories there, so ``session/load`` also works
                                 in a later process (as Qwen does after a restart)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import acp
import fake_agent_asks as asks
from acp.helpers import (
    plan_entry,
    start_tool_call,
    text_block,
    tool_content,
    update_agent_message_text,
    update_agent_thought_text,
    update_available_commands,
    update_current_mode,
    update_plan,
    update_tool_call,
    update_user_message_text,
)
from acp.schema import (
    AgentCapabilities,
    AuthenticateResponse,
    AuthMethodAgent,
    AvailableCommand,
    Implementation,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PromptResponse,
    SessionMode,
    SessionModeState,
    SetSessionModeResponse,
    StopReason,
    ToolKind,
)

MODES = {"default": "Default", "plan": "Plan"}
TOOL_KINDS = {"read", "edit", "delete", "move", "search", "execute", "think", "fetch", "switch_mode", "other"}
# modes the agent switches to on its own (an edit's "Allow All Edits"); set_mode takes them back
SELF_MODES = {"auto-edit"}


def log(text: str) -> None:
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def session_not_found(session_id: str) -> acp.RequestError:
    return acp.RequestError(-32002, "Session not found", {"sessionId": session_id})


class ToolRejected(Exception):
    """The user rejected a permission: the turn ends now, with stopReason ``end_turn`` as Qwen's."""


@dataclass
class Session:
    id: str
    cwd: str
    mode: str = "default"
    history: list[tuple[str, str]] = field(default_factory=list)  # ("user" | "agent", text)
    turn: asyncio.Task[StopReason] | None = None


class FakeAgent:
    """Implements the subset of ``acp.interfaces.Agent`` that Qwen Code answers.

    It deliberately does not subclass the ``Agent`` Protocol: the Protocol's stub bodies would
    make unimplemented methods (session/list, session/set_config_option, ...) answer ``null``
    instead of "method not found".
    """

    def __init__(self) -> None:
        self._client: acp.Client | None = None
        self._sessions: dict[str, Session] = {}
        self._ids = itertools.count(1)
        self._tool_ids = itertools.count(1)
        self._auth_required = env_flag("FAKE_AGENT_AUTH_REQUIRED")
        history_dir = os.environ.get("FAKE_AGENT_HISTORY_DIR")
        self._history_dir = Path(history_dir) if history_dir else None

    # ----- ACP plumbing -------------------------------------------------------------------
    def on_connect(self, conn: acp.Client) -> None:
        self._client = conn

    @property
    def client(self) -> acp.Client:
        assert self._client is not None
        return self._client

    async def raw_request(self, method: str, params: dict[str, Any]) -> Any:
        # AgentSideConnection only offers typed requests (whose response models drop unknown
        # fields such as Qwen's top-level "answers") or "_"-prefixed ext requests, so reach
        # for the underlying JSON-RPC connection.
        return await cast(Any, self.client)._conn.send_request(method, params)

    async def raw_notify(self, method: str, params: dict[str, Any]) -> None:
        await cast(Any, self.client)._conn.send_notification(method, params)

    async def send(self, session_id: str, update: Any) -> None:
        await self.client.session_update(session_id=session_id, update=update)

    def _session(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise session_not_found(session_id)
        return session

    def _modes(self, session: Session) -> SessionModeState:
        available = [SessionMode(id=mode_id, name=name) for mode_id, name in MODES.items()]
        return SessionModeState(current_mode_id=session.mode, available_modes=available)

    # ----- requests -----------------------------------------------------------------------
    async def initialize(self, protocol_version: int, **_: Any) -> InitializeResponse:
        gate = os.environ.get("FAKE_AGENT_INIT_GATE")
        while gate and not os.path.exists(gate):  # noqa: ASYNC110 - another process makes the file
            await asyncio.sleep(0.01)
        return InitializeResponse(
            protocol_version=1,
            agent_capabilities=AgentCapabilities(load_session=True),
            auth_methods=[AuthMethodAgent(id="openai", name="Use OpenAI API key")],
            agent_info=Implementation(name="fake-agent", title="Fake Agent", version="0.1.0"),
        )

    async def authenticate(self, method_id: str, **_: Any) -> AuthenticateResponse:
        self._auth_required = False
        return AuthenticateResponse()

    async def new_session(self, cwd: str, **_: Any) -> NewSessionResponse:
        if self._auth_required:
            raise acp.RequestError.auth_required()
        session = Session(id=f"fake-{next(self._ids)}-{os.getpid()}", cwd=cwd)
        self._sessions[session.id] = session
        return NewSessionResponse(session_id=session.id, modes=self._modes(session))

    async def load_session(self, cwd: str, session_id: str, **_: Any) -> LoadSessionResponse:
        session = self._sessions.get(session_id)
        if session is None:
            session = self._read_history(session_id, cwd)
            self._sessions[session_id] = session
        await self._stop_turn(session)
        session.mode = "default"  # like Qwen, a loaded session does not keep its mode
        for role, text in session.history:
            make = update_user_message_text if role == "user" else update_agent_message_text
            await self.send(session_id, make(text))
        return LoadSessionResponse(modes=self._modes(session))

    async def set_session_mode(self, session_id: str, mode_id: str, **_: Any) -> SetSessionModeResponse:
        session = self._session(session_id)
        if mode_id not in MODES and mode_id not in SELF_MODES:
            raise acp.RequestError.invalid_params({"details": f"unknown mode {mode_id!r}"})
        session.mode = mode_id
        await self.send(session_id, update_current_mode(mode_id))
        return SetSessionModeResponse()

    async def prompt(self, session_id: str, prompt: list[Any], **_: Any) -> PromptResponse:
        session = self._session(session_id)
        await self._stop_turn(session)  # Qwen: a second prompt cancels the running turn
        text = "\n".join(block.text for block in prompt if getattr(block, "type", None) == "text")
        session.history.append(("user", text))
        turn = asyncio.create_task(self._run_script(session, text))
        session.turn = turn
        try:
            await asyncio.wait([turn])
        except asyncio.CancelledError:
            turn.cancel()
            raise
        finally:
            if session.turn is turn:
                session.turn = None
            self._write_history(session)
        if turn.cancelled():
            return PromptResponse(stop_reason="cancelled")
        return PromptResponse(stop_reason=turn.result())

    async def cancel(self, session_id: str, **_: Any) -> None:
        session = self._sessions.get(session_id)
        if session is not None and session.turn is not None:
            session.turn.cancel()

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise acp.RequestError.method_not_found(f"_{method}")

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    async def _stop_turn(self, session: Session) -> None:
        turn = session.turn
        if turn is not None and not turn.done():
            turn.cancel()
            await asyncio.wait([turn])

    # ----- history persistence (only with FAKE_AGENT_HISTORY_DIR) ---------------------------
    def _history_path(self, session_id: str) -> Path | None:
        if self._history_dir is None or not re.fullmatch(r"[\w.-]+", session_id):
            return None
        return self._history_dir / f"{session_id}.json"

    def _write_history(self, session: Session) -> None:
        path = self._history_path(session.id)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"cwd": session.cwd, "history": session.history}))

    def _read_history(self, session_id: str, cwd: str) -> Session:
        path = self._history_path(session_id)
        if path is None or not path.is_file():
            raise session_not_found(session_id)
        data = json.loads(path.read_text())
        return Session(id=session_id, cwd=cwd, history=[(r, t) for r, t in data["history"]])

    # ----- the script interpreter ---------------------------------------------------------
    async def _run_script(self, session: Session, script: str) -> StopReason:
        said: list[str] = []
        try:
            for raw_line in script.splitlines():
                line = raw_line.strip()
                if not line:
                    continue
                try:
                    await self._run_command(session, line, said)
                except ValueError as exc:  # a malformed script line, e.g. "sleep soon"
                    raise acp.RequestError.invalid_params({"line": line, "details": str(exc)}) from exc
        except ToolRejected:
            return "end_turn"
        finally:
            if said:
                session.history.append(("agent", "".join(said)))
        return "end_turn"

    async def _say(self, session: Session, text: str, said: list[str]) -> None:
        said.append(text)
        await self.send(session.id, update_agent_message_text(text))

    async def _run_command(self, session: Session, line: str, said: list[str]) -> None:
        command, _, arg = line.partition(" ")
        arg = arg.strip()
        sid = session.id
        if command == "say":
            for piece in re.split(r"(?<= )(?=\S)", arg):
                await self._say(session, piece, said)
        elif command == "md":
            text = json.loads(arg)
            if not isinstance(text, str):
                raise ValueError("md needs a JSON string")
            for start in range(0, len(text), 16):
                await self._say(session, text[start : start + 16], said)
        elif command == "think":
            await self.send(sid, update_agent_thought_text(arg))
        elif command == "stream":
            count, _, delay = arg.partition(" ")
            for i in range(1, int(count) + 1):
                if i > 1 and delay:
                    await asyncio.sleep(int(delay) / 1000)
                await self._say(session, f"chunk {i}\n", said)
        elif command == "tool":
            kind, _, title = arg.partition(" ")
            await self._tool(sid, kind, title or kind)
        elif command == "permission":
            await self._permission(session, arg, said)
        elif command == "question":
            await self._question(session, arg, said)
        elif command == "plan-exit":
            await self._plan_exit(session, arg, said)
        elif command == "shell-permission":
            await self._shell(session, arg, said)
        elif command == "plan":
            entries = [plan_entry(item.strip()) for item in arg.split(";") if item.strip()]
            await self.send(sid, update_plan(entries))
        elif command == "sleep":
            await asyncio.sleep(int(arg) / 1000)
        elif command == "wait":
            await asyncio.get_running_loop().create_future()
        elif command == "crash":
            log("fake-agent: crashing")
            sys.stdout.flush()
            os._exit(3)
        elif command == "error":
            raise acp.RequestError(-32603, arg or "scripted error", {"details": arg})
        elif command == "big":
            await self._big(sid, int(arg))
        elif command == "mode":
            session.mode = arg
            await self.send(sid, update_current_mode(arg))
        elif command == "stderr":
            log(arg)
        elif command == "usage":
            await self.send(sid, update_agent_message_text(""))
        elif command == "notify":
            method, _, params = arg.partition(" ")
            await self.raw_notify(method, json.loads(params) if params else {"sessionId": sid})
        elif command == "request":
            method, _, params = arg.partition(" ")
            try:
                result = await self.raw_request(method, json.loads(params) if params else {"sessionId": sid})
                await self._say(session, f"request {method}: result {json.dumps(result)}", said)
            except acp.RequestError as exc:
                await self._say(session, f"request {method}: error {exc.code} {exc}", said)
        else:
            await self._say(session, f"echo: {line}", said)

    async def _tool(self, sid: str, kind: str, title: str) -> None:
        call_id = f"call-{next(self._tool_ids)}"
        tool_kind = cast(ToolKind, kind if kind in TOOL_KINDS else "other")
        await self.send(sid, start_tool_call(call_id, title, kind=tool_kind, status="pending"))
        await self.send(sid, update_tool_call(call_id, status="in_progress"))
        output = tool_content(text_block(f"{kind} done: {title}"))
        await self.send(sid, update_tool_call(call_id, status="completed", content=[output]))

    async def send_raw(self, sid: str, update: dict[str, Any]) -> None:
        await self.raw_notify("session/update", {"sessionId": sid, "update": update})

    def _recorded(self, name: str, session: Session) -> asks.Recorded:
        return asks.Recorded(name, session.id, f"call-{next(self._tool_ids)}", session.cwd)

    async def _ask(
        self, session: Session, recorded: asks.Recorded, request: dict[str, Any]
    ) -> dict[str, Any]:
        """Send a recorded request; the raw response for an allow, else the tool fails: ToolRejected."""
        raw = await self.raw_request("session/request_permission", request)
        response = raw if isinstance(raw, dict) else {}
        outcome = response.get("outcome") or {}
        if outcome.get("outcome") == "selected" and outcome.get("optionId") not in (None, "cancel"):
            return response
        await self.send_raw(session.id, recorded.rejection())
        raise ToolRejected

    async def _switch_mode(self, session: Session, recorded: asks.Recorded, mode_id: str | None) -> None:
        if mode_id is None or mode_id == session.mode:
            return
        session.mode = mode_id
        update, notification = recorded.mode_change(mode_id)
        await self.send_raw(session.id, update)
        await self.raw_notify(asks.MODE_NOTIFICATION, notification)

    async def _permission(self, session: Session, title: str, said: list[str]) -> None:
        recorded, title = self._recorded("write", session), title or "edit"
        await self.send_raw(session.id, asks.titled(recorded.before(), title))
        response = await self._ask(session, recorded, asks.titled(recorded.request(), title))
        option_id = response["outcome"]["optionId"]
        await self._switch_mode(session, recorded, asks.EDIT_MODES.get(option_id))
        await self.send_raw(session.id, recorded.completion())
        await self._say(session, f"allowed {option_id}", said)

    async def _question(self, session: Session, spec: str, said: list[str]) -> None:
        recorded, questions = self._recorded("question", session), asks.raw_questions(spec)
        await self.send_raw(session.id, recorded.before())
        response = await self._ask(session, recorded, asks.question_request(recorded, questions))
        await self.send_raw(session.id, asks.answers_result(recorded, questions, response.get("answers")))
        answers = json.dumps(response.get("answers"), sort_keys=True)
        await self._say(session, f"answers: {answers}", said)

    async def _plan_exit(self, session: Session, spec: str, said: list[str]) -> None:
        plan = json.loads(spec) if spec.startswith('"') else spec
        if not isinstance(plan, str) or not plan:
            raise ValueError("plan-exit needs the plan's text")
        recorded = self._recorded("plan_exit", session)
        await self.send_raw(session.id, recorded.before())
        response = await self._ask(session, recorded, asks.plan_request(recorded, plan))
        option_id = response["outcome"]["optionId"]
        await self._switch_mode(session, recorded, asks.PLAN_EXIT_MODES.get(option_id))
        await self.send_raw(session.id, asks.plan_completion(recorded, plan))
        await self._say(session, f"allowed {option_id}", said)

    async def _shell(self, session: Session, command: str, said: list[str]) -> None:
        if not command:
            raise ValueError("shell-permission needs a command")
        recorded = self._recorded("shell", session)
        subs = asks.shell_subs(recorded, command)
        await self.send_raw(session.id, recorded.before())
        response = await self._ask(session, recorded, asks.fill(recorded.request(), subs))
        await self.send_raw(session.id, asks.fill(recorded.completion(), subs))
        await self._say(session, f"allowed {response['outcome']['optionId']}", said)

    async def _big(self, sid: str, kib: int) -> None:
        pad = "x" * 1000
        commands = [AvailableCommand(name=f"cmd{i}", description=pad) for i in range(max(kib, 1))]
        await self.send(sid, update_available_commands(commands))


async def serve() -> None:
    await acp.run_agent(cast(acp.Agent, FakeAgent()))
    if env_flag("FAKE_AGENT_IGNORE_SIGTERM"):
        log("fake-agent: stdin closed, ignoring it")
        await asyncio.get_running_loop().create_future()
    log("fake-agent: stdin closed, exiting")


def main() -> None:
    if env_flag("FAKE_AGENT_EXIT_AT_START"):
        log("fake-agent: exiting at start (FAKE_AGENT_EXIT_AT_START)")
        os._exit(7)
    log(f"fake-agent: started pid={os.getpid()}")
    if env_flag("FAKE_AGENT_IGNORE_SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if env_flag("FAKE_AGENT_SPAWN_CHILD"):
        child = subprocess.Popen(
            ["sleep", "300"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        log(f"fake-agent: child pid={child.pid}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()

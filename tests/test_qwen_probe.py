"""Probe: the real, pinned Qwen Code over ACP against the fake OpenAI server.

Why: the daemon's design rests on measured facts about Qwen Code (how it authenticates, what
it streams, which permission options it sends, how it stops). This test keeps those facts
true for the pinned version, end to end, with no network: if an upgrade changes one of them,
this fails before the daemon does.

The tests are ``async def`` on pytest-asyncio's loop, the fake server on the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import acp
import pytest
from acp import RequestError, schema
from acp.client.connection import ClientSideConnection

from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, serving_fake_openai
from tests.support.qwen import (
    CLI_OVERRIDE_ENV,
    QWEN_VERSION,
    find_node,
    find_pinned_qwen_cli,
    isolated_env,
    prepare_qwen_home,
    qwen_command,
)

T = TypeVar("T")
STEP_TIMEOUT = 30.0
STDOUT_LIMIT = 50 * 1024 * 1024  # one available_commands_update line can be ~570 KB
EDIT_OPTION_IDS = ["proceed_always", "proceed_once", "cancel"]
# Qwen Code's extension methods, sent without ACP's "_" prefix.
VENDOR_PREFIXES = ("qwen/", "craft/")

CLI = find_pinned_qwen_cli()
pytestmark = [pytest.mark.qwen, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _pinned_qwen_installed() -> None:
    """`make test` installs the pin, so its absence is a failure, never a silent skip."""
    if CLI is None:
        pytest.fail(
            f"Qwen Code {QWEN_VERSION} is not installed (run `make install` or set ${CLI_OVERRIDE_ENV})"
        )
    if find_node() is None:
        pytest.fail("node is not on PATH")


@dataclass
class ProbeClient:
    """An ACP client that records everything and answers permissions from a script."""

    answers: deque[str] = field(default_factory=deque)
    updates: list[tuple[float, Any]] = field(default_factory=list)
    permissions: list[tuple[schema.ToolCallUpdate, list[schema.PermissionOption]]] = field(
        default_factory=list
    )
    ext_calls: list[tuple[str, str]] = field(default_factory=list)
    forbidden_calls: list[str] = field(default_factory=list)

    async def request_permission(
        self,
        session_id: str,
        tool_call: schema.ToolCallUpdate,
        options: list[schema.PermissionOption],
        **kwargs: Any,
    ) -> schema.RequestPermissionResponse:
        self.permissions.append((tool_call, options))
        if not self.answers:
            self.forbidden_calls.append("unexpected session/request_permission")
            return schema.RequestPermissionResponse(outcome=schema.DeniedOutcome(outcome="cancelled"))
        option_id = self.answers.popleft()
        return schema.RequestPermissionResponse(
            outcome=schema.AllowedOutcome(outcome="selected", option_id=option_id)
        )

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append((time.monotonic(), update))

    # We advertise neither fs nor terminal capabilities: the agent must not call these.
    async def write_text_file(self, session_id: str, path: str, content: str, **kwargs: Any) -> None:
        self.forbidden_calls.append(f"fs/write_text_file {path}")
        raise _method_not_found("fs/write_text_file")

    async def read_text_file(self, session_id: str, path: str, **kwargs: Any) -> schema.ReadTextFileResponse:
        self.forbidden_calls.append(f"fs/read_text_file {path}")
        raise _method_not_found("fs/read_text_file")

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        # e.g. craft/drainMidTurnQueue: -32601 makes Qwen Code stop asking for this session.
        self.ext_calls.append(("request", method))
        raise _method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        self.ext_calls.append(("notification", method))

    def texts_since(self, start: int) -> list[str]:
        """Non-empty agent_message_chunk texts received after update number ``start``."""
        return [
            update.content.text
            for _, update in self.updates[start:]
            if isinstance(update, schema.AgentMessageChunk)
            and isinstance(update.content, schema.TextContentBlock)
            and update.content.text
        ]

    def first_chunk_after(self, start: int) -> float | None:
        for stamp, update in self.updates[start:]:
            content = update.content if isinstance(update, schema.AgentMessageChunk) else None
            if isinstance(content, schema.TextContentBlock) and content.text:
                return stamp
        return None

    def tool_updates_since(self, start: int) -> list[schema.ToolCallStart | schema.ToolCallProgress]:
        kinds = (schema.ToolCallStart, schema.ToolCallProgress)
        return [u for _, u in self.updates[start:] if isinstance(u, kinds)]


def _method_not_found(method: str) -> RequestError:
    return RequestError.method_not_found(method)


def _route_vendor_methods(conn: ClientSideConnection, client: ProbeClient) -> None:
    """Hand Qwen Code's un-prefixed vendor methods to the client's ext_* handlers.

    ACP reserves names starting with "_" for extensions, and the Python SDK only routes those
    to ``ext_method``/``ext_notification``. Qwen Code sends ``qwen/notify/...`` and
    ``craft/...`` without the underscore, so the SDK would log every such notification as an
    unhandled error. There is no public hook for this, hence the wrapped private handler; the
    assert makes an SDK upgrade that moves it fail loudly instead of going quiet.
    """
    inner = conn._conn
    router = inner._handler
    assert callable(router), "acp SDK internals changed: ClientSideConnection._conn._handler"

    async def handler(method: str, params: Any | None, is_notification: bool) -> Any:
        if isinstance(method, str) and method.startswith(VENDOR_PREFIXES):
            payload = params if isinstance(params, dict) else {}
            if is_notification:
                await client.ext_notification(method, payload)
                return None
            return await client.ext_method(method, payload)
        return await router(method, params, is_notification)

    inner._handler = handler


@dataclass
class Agent:
    proc: asyncio.subprocess.Process
    conn: ClientSideConnection
    client: ProbeClient
    started: float
    stderr_path: Path

    def stderr_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace")[-4000:]
        return ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.asynccontextmanager
async def spawn_agent(cli: Path, env: dict[str, str], cwd: Path, stderr_path: Path) -> AsyncIterator[Agent]:
    """Start the agent in its own process group; on exit, stop it by closing stdin.

    Closing stdin is the graceful stop the daemon will use; the body asserts it worked
    (``stop_agent``). Whatever happens, the group is SIGKILLed at the end so a failing test
    never leaves node processes behind.
    """
    started = time.monotonic()
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *qwen_command(cli),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=str(cwd),
            start_new_session=True,
            limit=STDOUT_LIMIT,
        )
    assert proc.stdin is not None and proc.stdout is not None
    client = ProbeClient()
    # The SDK routes optional client methods (terminals, elicitation) by presence, so a
    # partial client is supported even though it does not satisfy the full Protocol type.
    conn = acp.connect_to_agent(cast(acp.Client, client), proc.stdin, proc.stdout)
    _route_vendor_methods(conn, client)
    agent = Agent(proc, conn, client, started, stderr_path)
    try:
        yield agent
    finally:
        if _group_alive(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        await conn.close()


async def stop_agent(agent: Agent) -> float:
    """Close stdin, then require the whole process group to be gone; return seconds taken."""
    assert agent.proc.stdin is not None
    begin = time.monotonic()
    agent.proc.stdin.close()
    code = await asyncio.wait_for(agent.proc.wait(), 10)
    for _ in range(250):  # up to 5 s for stragglers (git, ps children) to go
        if not _group_alive(agent.proc.pid):
            break
        await asyncio.sleep(0.02)
    assert not _group_alive(agent.proc.pid), "agent's process group outlived stdin EOF"
    assert code == 0, f"agent exited {code}: {agent.stderr_tail()}"
    return time.monotonic() - begin


async def step(awaitable: Awaitable[T], what: str, agent: Agent) -> T:
    """Await one protocol step with a timeout that names the step and shows agent stderr."""
    try:
        return await asyncio.wait_for(awaitable, STEP_TIMEOUT)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}; agent stderr:\n{agent.stderr_tail()}")


async def initialize(agent: Agent) -> schema.InitializeResponse:
    return await step(
        agent.conn.initialize(
            protocol_version=1,
            client_capabilities=schema.ClientCapabilities(),  # no fs, no terminal
            client_info=schema.Implementation(name="qwen-daemon-probe", version="0"),
        ),
        "initialize",
        agent,
    )


async def prompt(agent: Agent, session_id: str, text: str) -> schema.PromptResponse:
    block = schema.TextContentBlock(type="text", text=text)
    return await step(agent.conn.prompt(session_id=session_id, prompt=[block]), f"prompt {text!r}", agent)


def _no_logged_problems(caplog: pytest.LogCaptureFixture) -> None:
    """The SDK reports protocol trouble (unknown methods, handler errors) only by logging."""
    problems = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == []


async def test_session_new_without_credentials_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No settings and no OPENAI_* env: session/new must fail with a message a user can act on."""
    assert CLI is not None
    home, workspace = tmp_path / "home", tmp_path / "ws"
    workspace.mkdir()
    env = isolated_env(home)

    async def run() -> None:
        async with spawn_agent(CLI, env, workspace, tmp_path / "stderr.txt") as agent:
            await initialize(agent)
            with pytest.raises(RequestError) as info:
                await step(agent.conn.new_session(cwd=str(workspace)), "session/new", agent)
            assert info.value.code == -32000
            assert "Authentication required" in str(info.value)
            await stop_agent(agent)

    await run()
    _no_logged_problems(caplog)


def _check_tools_schema(fake: FakeOpenAI) -> None:
    """The write_file tool and argument names the fake scripts must match what the agent offers."""
    main = fake.main_requests
    assert main, "the agent made no chat request"
    tools = {t["function"]["name"]: t["function"] for t in main[0]["tools"]}
    for name in (fake_openai.WRITE_FILE_TOOL, "edit", "read_file", "run_shell_command", "todo_write"):
        assert name in tools, f"{name} missing from {sorted(tools)}"
    params = tools[fake_openai.WRITE_FILE_TOOL]["parameters"]
    assert params["required"] == [fake_openai.WRITE_FILE_PATH_ARG, fake_openai.WRITE_FILE_CONTENT_ARG]
    assert main[0]["stream"] is True
    assert main[0]["stream_options"] == {"include_usage": True}


async def test_prompt_stream_and_permissioned_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Text streams as chunks; write_file asks permission; proceed_once writes, cancel does not."""
    assert CLI is not None
    home, workspace = tmp_path / "home", tmp_path / "ws"
    workspace.mkdir()
    allowed, rejected = workspace / "allowed.txt", workspace / "rejected.txt"
    timings: dict[str, float] = {}
    ext_calls: list[tuple[str, str]] = []

    async with serving_fake_openai() as fake:
        env = prepare_qwen_home(home, fake.base_url)

        async def run() -> None:
            async with spawn_agent(CLI, env, workspace, tmp_path / "stderr.txt") as agent:
                client = agent.client
                init = await initialize(agent)
                timings["initialize"] = time.monotonic() - agent.started
                assert init.protocol_version == 1
                assert init.agent_info is not None and init.agent_info.version == QWEN_VERSION
                assert [m.id for m in init.auth_methods or []] == ["openai"]

                session = await step(agent.conn.new_session(cwd=str(workspace)), "session/new", agent)
                timings["session_new"] = time.monotonic() - agent.started
                sid = session.session_id
                assert session.modes is not None and session.modes.current_mode_id == "default"
                modes = [m.id for m in session.modes.available_modes]
                assert modes == ["plan", "default", "auto-edit", "auto", "yolo"]

                # 1. Plain text, streamed in pieces.
                fake.queue(fake_openai.text("Hello from the fake model", pieces=3))
                mark, begin = len(client.updates), time.monotonic()
                reply = await prompt(agent, sid, "say hello")
                first = client.first_chunk_after(mark)
                assert first is not None
                timings["first_chunk_first_prompt"] = first - begin
                assert reply.stop_reason == "end_turn"
                chunks = client.texts_since(mark)
                assert "".join(chunks) == "Hello from the fake model"
                assert len(chunks) >= 2, chunks

                # 2. Once warm, the first chunk comes much sooner.
                fake.queue("Second reply")
                mark, begin = len(client.updates), time.monotonic()
                reply = await prompt(agent, sid, "again")
                first = client.first_chunk_after(mark)
                assert first is not None
                timings["first_chunk_later_prompt"] = first - begin
                assert "".join(client.texts_since(mark)) == "Second reply"

                # 3. write_file, allowed once.
                fake.queue(fake_openai.write_file(str(allowed), "allowed\n"), "Wrote it.")
                client.answers.append("proceed_once")
                mark = len(client.updates)
                reply = await prompt(agent, sid, "write allowed.txt")
                assert reply.stop_reason == "end_turn"
                assert len(client.permissions) == 1
                tool_call, options = client.permissions[0]
                assert [o.option_id for o in options] == EDIT_OPTION_IDS
                assert [o.kind for o in options] == ["allow_always", "allow_once", "reject_once"]
                assert tool_call.kind == "edit"
                assert tool_call.raw_input == {"file_path": str(allowed), "content": "allowed\n"}
                assert allowed.read_text() == "allowed\n"
                statuses = [u.status for u in client.tool_updates_since(mark) if u.status]
                assert statuses[0] == "pending" and statuses[-1] == "completed", statuses
                assert "".join(client.texts_since(mark)) == "Wrote it."

                # 4. write_file, rejected: nothing written, the turn ends without asking the
                # model again (its scripted follow-up stays queued).
                fake.queue(fake_openai.write_file(str(rejected), "rejected\n"), "must not be asked for")
                client.answers.append("cancel")
                mark = len(client.updates)
                requests_before = len(fake.requests)
                reply = await prompt(agent, sid, "write rejected.txt")
                assert reply.stop_reason == "end_turn"
                assert len(client.permissions) == 2
                assert [o.option_id for o in client.permissions[1][1]] == EDIT_OPTION_IDS
                assert not rejected.exists()
                statuses = [u.status for u in client.tool_updates_since(mark) if u.status]
                assert statuses[-1] == "failed", statuses
                assert len(fake.requests) == requests_before + 1
                assert fake.pending_turns == 1

                assert client.forbidden_calls == []
                assert not client.answers
                timings["stop"] = await stop_agent(agent)
                ext_calls.extend(client.ext_calls)

        await run()
        _check_tools_schema(fake)
        # The settings from prepare_qwen_home switch every hidden LLM call off.
        assert fake.side_requests == []
        assert len(fake.main_requests) == 5
        assert fake.other_requests == []
    _no_logged_problems(caplog)
    print("qwen probe timings (s): " + ", ".join(f"{k}={v:.3f}" for k, v in timings.items()))
    print(f"qwen probe vendor calls: {ext_calls}")

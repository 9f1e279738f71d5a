"""A harness that drives tests/fake_agent.py as a real subprocess through the ACP client SDK.

Shared by the fake agent's own tests (test_fake_agent.py, test_fake_agent_asks.py): the client
side of the conversation, recorded so a test can assert on exactly what the fake sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import acp
from acp.connection import StreamEvent
from acp.schema import ClientCapabilities, Implementation, PromptResponse

FAKE_AGENT = Path(__file__).parent.parent / "fake_agent.py"
LINE_LIMIT = 64 * 1024 * 1024  # Qwen can send ~570 KB lines: never read agent stdout with 64 KiB
DEADLINE = 10.0

Responder = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def select(option_id: str) -> dict[str, Any]:
    return {"outcome": {"outcome": "selected", "optionId": option_id}}


class RecordingClient:
    """An ACP client that records every update and answers permission requests via `responder`."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, Any]] = []
        self.permission_requests: list[dict[str, Any]] = []
        self.responder: Responder = lambda request: select("proceed_once")
        self.changed = asyncio.Condition()

    async def _touch(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), DEADLINE)

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append((session_id, update))
        await self._touch()

    async def request_permission(
        self, session_id: str, tool_call: Any, options: list[Any], **kwargs: Any
    ) -> dict[str, Any]:
        request = {"sessionId": session_id, "toolCall": tool_call, "options": options, "meta": kwargs}
        self.permission_requests.append(request)
        await self._touch()
        return await self.responder(request)  # a dict: sent as is, extra fields included

    def kinds(self, session_id: str) -> list[str]:
        return [u.session_update for sid, u in self.updates if sid == session_id]

    def text(self, session_id: str, kind: str = "agent_message_chunk") -> str:
        return "".join(
            u.content.text for sid, u in self.updates if sid == session_id and u.session_update == kind
        )


class Harness:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.client = RecordingClient()
        self.raw: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.stderr_changed = asyncio.Condition()
        # RecordingClient implements only part of the Client protocol on purpose (see fake_agent.FakeAgent).
        client = cast(acp.Client, self.client)
        self.conn = acp.connect_to_agent(client, proc.stdin, proc.stdout, observers=[self._observe])
        self._stderr_task = asyncio.create_task(self._read_stderr())

    def _observe(self, event: StreamEvent) -> None:
        if event.direction == "incoming":
            self.raw.append(event.message)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr.append(line.decode().rstrip("\n"))
            async with self.stderr_changed:
                self.stderr_changed.notify_all()

    async def stderr_line(self, pattern: str) -> re.Match[str]:
        def find() -> re.Match[str] | None:
            return next((m for line in self.stderr if (m := re.fullmatch(pattern, line))), None)

        async with self.stderr_changed:
            await asyncio.wait_for(self.stderr_changed.wait_for(lambda: find() is not None), DEADLINE)
        match = find()
        assert match is not None
        return match

    async def start(self) -> str:
        await self.conn.initialize(
            protocol_version=1,
            client_capabilities=ClientCapabilities(),
            client_info=Implementation(name="test", version="0"),
        )
        return await self.new_session()

    async def new_session(self) -> str:
        response = await self.conn.new_session(cwd=str(Path.cwd()), mcp_servers=[])
        return response.session_id

    async def prompt(self, session_id: str, script: str) -> PromptResponse:
        prompt = self.conn.prompt(session_id=session_id, prompt=[acp.text_block(script)])
        return await asyncio.wait_for(prompt, DEADLINE)

    async def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        if not self.proc.stdin.is_closing():
            self.proc.stdin.close()
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.wait_closed()

    async def shutdown(self) -> None:
        await self.conn.close()
        await self.close_stdin()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        await self._stderr_task


@contextlib.asynccontextmanager
async def fake_agent(**env: str) -> AsyncIterator[Harness]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(FAKE_AGENT),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
        limit=LINE_LIMIT,
        start_new_session=True,
    )
    harness = Harness(proc)
    try:
        yield harness
    finally:
        await harness.shutdown()

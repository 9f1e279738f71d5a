"""The SDK boundary's contract with the pinned ``agent-client-protocol``.

``qwen_daemon/agents/connection.py`` overrides one private method of the SDK's Connection,
``_process_message``, so that ``session/update`` notifications (nearly all the relay's traffic) are
delivered inline rather than each wrapped in a task. If an SDK release renames that method, changes
its signature or stops calling it once per incoming message, the override silently stops working:
updates would still arrive, through the slow path, and nothing else would fail. These tests drive a
real SDK Connection over a real socket pair, with the agent's side written as raw NDJSON lines, and
fail in each of those cases.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib.metadata
import inspect
import json
import socket
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from qwen_daemon.agents.connection import open_relay_connection, relay_connection_class, request_error

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_the_installed_sdk_is_the_pinned_one() -> None:
    """The contract below is checked against the version the package pins, not another."""
    deps = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    (pin,) = [Requirement(d) for d in deps if Requirement(d).name == "agent-client-protocol"]
    installed = importlib.metadata.version("agent-client-protocol")
    assert pin.specifier.contains(installed), (pin, installed)


def test_the_overridden_method_keeps_its_name_and_signature() -> None:
    from acp.connection import Connection

    assert "_process_message" in vars(Connection), "the SDK no longer defines Connection._process_message"
    params = list(inspect.signature(Connection._process_message).parameters)
    assert params == ["self", "message"], params
    assert not inspect.iscoroutinefunction(Connection._process_message)  # called without await
    relay = relay_connection_class()
    assert issubclass(relay, Connection) and "_process_message" in vars(relay)


@dataclass
class Wire:
    """The daemon's end (an SDK connection) and the agent's end (raw NDJSON) of one socket pair."""

    agent_reader: asyncio.StreamReader
    agent_writer: asyncio.StreamWriter
    conn: Any
    updates: list[tuple[Any, asyncio.Task[Any] | None]] = field(default_factory=list)
    handled: list[tuple[str, Any, bool]] = field(default_factory=list)

    def send(self, *messages: dict[str, Any]) -> None:
        """Write messages as the agent would: one JSON object per line, all in one write."""
        self.agent_writer.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    async def receive(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.agent_reader.readline(), 5)
        message: dict[str, Any] = json.loads(line)
        return message


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    agent_reader, agent_writer = await asyncio.open_connection(sock=theirs)
    updates: list[tuple[Any, asyncio.Task[Any] | None]] = []
    handled: list[tuple[str, Any, bool]] = []

    async def handler(method: str, params: Any, is_notification: bool) -> Any:
        handled.append((method, params, is_notification))
        if method == "session/request_permission":
            return {"outcome": {"outcome": "selected", "optionId": "proceed_once"}}
        if not is_notification:
            raise request_error().method_not_found(method)
        return None

    def on_update(params: Any) -> None:
        updates.append((params, asyncio.current_task()))

    conn = open_relay_connection(handler, on_update, writer, reader)
    try:
        yield Wire(agent_reader, agent_writer, conn, updates, handled)
    finally:
        await conn.close()
        for end in (writer, agent_writer):
            end.close()
            with contextlib.suppress(OSError):
                await end.wait_closed()


def _update(n: int) -> dict[str, Any]:
    params = {"sessionId": "s1", "update": {"sessionUpdate": "agent_message_chunk", "n": n}}
    return {"jsonrpc": "2.0", "method": "session/update", "params": params}


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_updates_arrive_inline_and_in_order(wire: Wire) -> None:
    """Every update reaches ``on_update`` in the order sent, all from the one receive task (a task
    per notification would show as as many tasks), and none goes through the SDK's handler."""
    other = {"jsonrpc": "2.0", "method": "session/other", "params": {"sessionId": "s1"}}
    wire.send(*[_update(n) for n in range(100)], other, *[_update(n) for n in range(100, 200)])
    await _until(lambda: len(wire.updates) == 200 and wire.handled)
    assert [params["update"]["n"] for params, _ in wire.updates] == list(range(200))
    tasks = {id(task) for _, task in wire.updates}
    assert len(tasks) == 1, f"updates were delivered from {len(tasks)} tasks, not inline"
    assert wire.handled == [("session/other", {"sessionId": "s1"}, True)]  # the rest: the SDK's way


async def test_an_update_is_delivered_before_process_message_returns(wire: Wire) -> None:
    """Inline means synchronous: the update has reached ``on_update`` when the override returns
    (a task would only have been scheduled), while a request from the agent still gets its task
    and its answer written back by the SDK."""
    wire.conn._process_message(_update(0))
    assert [params["update"]["n"] for params, _ in wire.updates] == [0]
    request = {"jsonrpc": "2.0", "id": 7, "method": "session/request_permission"}
    wire.send(_update(1), {**request, "params": {"sessionId": "s1"}})
    answer = await wire.receive()
    assert answer == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"outcome": {"outcome": "selected", "optionId": "proceed_once"}},
    }
    assert [params["update"]["n"] for params, _ in wire.updates] == [0, 1]
    assert wire.handled == [("session/request_permission", {"sessionId": "s1"}, False)]


async def test_requests_and_their_errors_still_go_through_the_sdk(wire: Wire) -> None:
    """Our requests get their responses (and the SDK's error type) as before the override."""
    pending = asyncio.ensure_future(wire.conn.send_request("initialize", {"protocolVersion": 1}))
    sent = await wire.receive()
    assert sent["method"] == "initialize" and sent["params"] == {"protocolVersion": 1}
    wire.send(_update(1), {"jsonrpc": "2.0", "id": sent["id"], "result": {"agentInfo": {"name": "x"}}})
    assert await asyncio.wait_for(pending, 5) == {"agentInfo": {"name": "x"}}
    assert [params["update"]["n"] for params, _ in wire.updates] == [1]

    failing = asyncio.ensure_future(wire.conn.send_request("session/new", {}))
    sent = await wire.receive()
    error = {"code": -32000, "message": "Authentication required"}
    wire.send({"jsonrpc": "2.0", "id": sent["id"], "error": error})
    with pytest.raises(request_error()) as caught:
        await asyncio.wait_for(failing, 5)
    assert caught.value.code == -32000 and "Authentication required" in str(caught.value)

    wire.send({"jsonrpc": "2.0", "id": 9, "method": "fs/unknown", "params": {}})
    answer = await wire.receive()
    assert answer["id"] == 9 and answer["error"]["code"] == -32601  # method not found


def test_only_the_boundary_module_imports_the_sdk() -> None:
    """Everything else reaches the SDK through ``agents/connection.py``, so an SDK upgrade is
    adapted (and checked, above) in one place."""
    package = Path(__file__).resolve().parent.parent / "qwen_daemon"
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name == "acp" or name.startswith("acp.") for name in names):
                importers.add(path.relative_to(package).as_posix())
    assert importers == {"agents/connection.py"}

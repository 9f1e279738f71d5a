"""A fake OpenAI-compatible chat-completions server for tests.

Why it exists: the daemon's tests drive a real Qwen Code agent, and that agent needs an LLM.
Pointing it at this server on 127.0.0.1 keeps the tests offline and deterministic (every
reply is scripted), and lets a test see exactly what the agent sent (``requests``).

Scripting model: a FIFO of *turns*. Each chat-completions request of the agent loop (it
carries a ``tools`` array) consumes one turn, or gets ``DEFAULT_REPLY`` when the queue is
empty. The agent's hidden side calls (session titles, classifiers, suggestions, tool-batch
summaries, memory extraction) get ``side_reply`` and never consume the queue, so a test's
script does not depend on which side calls a given Qwen Code version happens to make; see
``is_side_request`` for how they are told apart.

Two ways to run it:

* in-process on the current asyncio/Tornado loop: ``async with serving_fake_openai() as fake``
  (or ``FakeOpenAI.start()`` / ``await FakeOpenAI.stop()``);
* from synchronous tests: ``with running_fake_openai() as fake``, which runs its own loop in
  a background thread. All public state is guarded by a lock, so either thread may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.web
from tornado.testing import bind_unused_port

from tests.support.loop_thread import LoopThread

DEFAULT_MODEL = "fake-model"
DEFAULT_REPLY = "OK"
DEFAULT_SIDE_REPLY = "Fake reply"

# Names Qwen Code 0.24.4 uses in the `tools` array it sends (read from real requests).
WRITE_FILE_TOOL = "write_file"
WRITE_FILE_PATH_ARG = "file_path"
WRITE_FILE_CONTENT_ARG = "content"


def _new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class TextTurn:
    """A plain assistant reply, streamed as ``pieces`` deltas ``delay`` seconds apart."""

    text: str
    pieces: int = 3
    delay: float = 0.0


@dataclass(frozen=True)
class ToolCall:
    """One function call the fake model asks the agent to run."""

    name: str
    arguments: dict[str, Any]
    call_id: str = field(default_factory=_new_call_id)


@dataclass(frozen=True)
class ToolCallTurn:
    """A reply that asks for tool calls (finish_reason "tool_calls"), optionally after text."""

    calls: tuple[ToolCall, ...]
    text: str = ""
    delay: float = 0.0


@dataclass(frozen=True)
class ErrorTurn:
    """An HTTP error reply. Note the agent may retry 429/5xx, consuming further turns."""

    status: int
    message: str = "scripted error"


Turn = TextTurn | ToolCallTurn | ErrorTurn


def text(reply: str, *, pieces: int = 3, delay: float = 0.0) -> TextTurn:
    """Build a text turn."""
    return TextTurn(reply, pieces=pieces, delay=delay)


def tool_call(
    name: str, arguments: dict[str, Any], *, call_id: str | None = None, delay: float = 0.0
) -> ToolCallTurn:
    """Build a turn with a single tool call."""
    call = ToolCall(name, arguments, call_id or _new_call_id())
    return ToolCallTurn((call,), delay=delay)


def write_file(file_path: str, content: str, *, call_id: str | None = None) -> ToolCallTurn:
    """Build a turn asking Qwen Code to write ``content`` to ``file_path`` (absolute path)."""
    args = {WRITE_FILE_PATH_ARG: file_path, WRITE_FILE_CONTENT_ARG: content}
    return tool_call(WRITE_FILE_TOOL, args, call_id=call_id)


# Qwen Code 0.24.4 side calls that DO carry a `tools` array, so "no tools" alone misses them:
# follow-up suggestions fork the main request (same tools, to share the prompt cache) and
# end with this user text; the managed-memory extraction and "dream" agents have their own tools.
_SIDE_USER_PREFIXES = ("[SUGGESTION MODE",)
_SIDE_SYSTEM_MARKERS = ("managed memory extraction subagent", "performing a managed memory dream")


def _text_of(message: Any) -> str:
    """The text of a chat message whose content is a string or a list of parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def is_side_request(body: dict[str, Any]) -> bool:
    """True for a hidden side call rather than a step of the agent loop the test scripts.

    A side call has no ``tools``, or is one of the known tool-carrying side calls above. The
    tests' settings switch those features off; recognising them anyway keeps a forgotten
    setting from silently eating a scripted turn.
    """
    if not body.get("tools"):
        return True
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return False
    system = _text_of(messages[0]) if messages[0].get("role") == "system" else ""
    if any(marker in system for marker in _SIDE_SYSTEM_MARKERS):
        return True
    last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    return _text_of(last_user).lstrip().startswith(_SIDE_USER_PREFIXES)


def _split(value: str, pieces: int) -> list[str]:
    """Cut ``value`` into at most ``pieces`` non-empty parts (at least one, maybe empty)."""
    if not value:
        return [""]
    pieces = max(1, min(pieces, len(value)))
    size = -(-len(value) // pieces)
    return [value[i : i + size] for i in range(0, len(value), size)]


def _deltas(turn: TextTurn | ToolCallTurn) -> list[dict[str, Any]]:
    """The ``delta`` objects OpenAI would stream for ``turn``, first one carrying the role."""
    out: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    pieces = turn.pieces if isinstance(turn, TextTurn) else 2
    if turn.text:
        out.extend({"content": part} for part in _split(turn.text, pieces))
    if isinstance(turn, ToolCallTurn):
        for index, call in enumerate(turn.calls):
            out.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call.call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            for part in _split(json.dumps(call.arguments), 3):
                out.append({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
    return out


def _message(turn: TextTurn | ToolCallTurn) -> dict[str, Any]:
    """The complete assistant message for a non-streaming reply."""
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if isinstance(turn, ToolCallTurn):
        message["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in turn.calls
        ]
    return message


def _usage(body: dict[str, Any], turn: TextTurn | ToolCallTurn) -> dict[str, int]:
    """Rough token counts (4 characters a token): agents show them, tests only need them sane."""
    prompt = max(1, len(json.dumps(body.get("messages", []))) // 4)
    produced = turn.text
    if isinstance(turn, ToolCallTurn):
        produced += "".join(json.dumps(c.arguments) for c in turn.calls)
    completion = max(1, len(produced) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class FakeOpenAI:
    """The server's scripted state; every public method is safe to call from any thread."""

    def __init__(self, *, model: str = DEFAULT_MODEL) -> None:
        self.model = model
        self.side_reply = DEFAULT_SIDE_REPLY
        self.default_reply = DEFAULT_REPLY
        # Replaceable by a test that needs another split between main and side requests.
        self.is_side: Callable[[dict[str, Any]], bool] = is_side_request
        self._cond = threading.Condition()
        self._turns: deque[Turn] = deque()
        self._requests: list[dict[str, Any]] = []
        self._other: list[tuple[str, str]] = []
        self._aborted = 0
        self._server: tornado.httpserver.HTTPServer | None = None
        self.port = 0

    # -- scripting -------------------------------------------------------------------------
    def queue(self, *turns: Turn | str) -> None:
        """Append turns to the FIFO; a bare string is a text turn."""
        with self._cond:
            for turn in turns:
                self._turns.append(TextTurn(turn) if isinstance(turn, str) else turn)

    def queue_text(self, reply: str, *, pieces: int = 3, delay: float = 0.0) -> None:
        self.queue(text(reply, pieces=pieces, delay=delay))

    def queue_tool_call(self, name: str, arguments: dict[str, Any], *, call_id: str | None = None) -> None:
        self.queue(tool_call(name, arguments, call_id=call_id))

    @property
    def pending_turns(self) -> int:
        """How many scripted turns have not been consumed yet."""
        with self._cond:
            return len(self._turns)

    # -- observations ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The OpenAI base URL to hand to the agent (ends in /v1)."""
        if not self.port:
            raise RuntimeError("fake OpenAI server is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of every chat-completions JSON body received, in order."""
        with self._cond:
            return list(self._requests)

    @property
    def main_requests(self) -> list[dict[str, Any]]:
        """Requests of the agent loop, the ones that consume scripted turns."""
        return [r for r in self.requests if not self.is_side(r)]

    @property
    def side_requests(self) -> list[dict[str, Any]]:
        """Hidden side calls: titles, classifiers, suggestions, summaries, memory."""
        return [r for r in self.requests if self.is_side(r)]

    @property
    def other_requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request that was not a chat completion (models, 404s)."""
        with self._cond:
            return list(self._other)

    @property
    def aborted_streams(self) -> int:
        """How many streamed replies the agent hung up on (e.g. after session/cancel)."""
        with self._cond:
            return self._aborted

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` chat requests arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"got {len(self._requests)} of {count} requests")
                self._cond.wait(remaining)
            return list(self._requests)

    # -- used by the handlers (loop thread) ------------------------------------------------
    # public: the request handlers below are separate classes that record through these
    def take_turn(self, body: dict[str, Any]) -> Turn:
        with self._cond:
            self._requests.append(body)
            self._cond.notify_all()
            if self.is_side(body):
                return TextTurn(self.side_reply, pieces=1)
            if self._turns:
                return self._turns.popleft()
            return TextTurn(self.default_reply, pieces=1)

    def note_other(self, method: str, path: str) -> None:
        with self._cond:
            self._other.append((method, path))

    def note_abort(self) -> None:
        with self._cond:
            self._aborted += 1

    # -- lifecycle -------------------------------------------------------------------------
    def make_app(self) -> tornado.web.Application:
        """The Tornado application, for tests that want to mount it themselves."""
        return tornado.web.Application(
            [
                (r"/v1/chat/completions", _ChatCompletions, {"fake": self}),
                (r"/v1/models", _Models, {"fake": self}),
                (r".*", _NotFound, {"fake": self}),
            ],
            # Scripted 4xx/5xx replies are expected: keep them out of WARNING logs that tests
            # may assert to be empty.
            log_function=_log_request,
        )

    def start(self) -> None:
        """Listen on an unused 127.0.0.1 port; call from the thread running the target loop."""
        if self._server is not None:
            raise RuntimeError("already started")
        sock, port = bind_unused_port()
        self._server = tornado.httpserver.HTTPServer(self.make_app())
        self._server.add_sockets([sock])
        self.port = port

    async def stop(self) -> None:
        """Stop listening and drop open connections (on the loop the server runs on)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            await server.close_all_connections()


_log = logging.getLogger(__name__)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    request = handler.request
    _log.debug("%d %s %s", handler.get_status(), request.method, request.uri)


class _Base(tornado.web.RequestHandler):
    fake: FakeOpenAI

    def initialize(self, fake: FakeOpenAI) -> None:
        self.fake = fake

    def _json(self, payload: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))


class _Models(_Base):
    def get(self) -> None:
        self.fake.note_other("GET", self.request.path)
        model = {"id": self.fake.model, "object": "model", "created": 0, "owned_by": "fake"}
        self._json({"object": "list", "data": [model]})


class _NotFound(_Base):
    def prepare(self) -> None:
        self.fake.note_other(self.request.method or "?", self.request.path)
        self._json({"error": {"message": f"no route {self.request.path}", "type": "not_found"}}, 404)


class _ChatCompletions(_Base):
    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            self._json({"error": {"message": "body is not JSON", "type": "invalid_request_error"}}, 400)
            return
        if not isinstance(body, dict):
            self._json({"error": {"message": "body is not an object", "type": "invalid_request_error"}}, 400)
            return
        turn = self.fake.take_turn(body)
        if isinstance(turn, ErrorTurn):
            error = {"message": turn.message, "type": "scripted_error", "code": turn.status}
            self._json({"error": error}, turn.status)
            return
        ident = "chatcmpl-" + uuid.uuid4().hex[:20]
        created = int(time.time())
        model = str(body.get("model") or self.fake.model)
        finish = "tool_calls" if isinstance(turn, ToolCallTurn) else "stop"
        usage = _usage(body, turn)
        if not body.get("stream"):
            choice = {"index": 0, "message": _message(turn), "finish_reason": finish}
            self._json(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                }
            )
            return
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        chunks: list[dict[str, Any]] = [
            {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in _deltas(turn)
        ]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if include_usage:
            chunks.append({**base, "choices": [], "usage": usage})
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        try:
            for index, chunk in enumerate(chunks):
                if index and turn.delay:
                    await asyncio.sleep(turn.delay)
                self.write(f"data: {json.dumps(chunk)}\n\n")
                await self.flush()
            self.write("data: [DONE]\n\n")
            await self.finish()
        except tornado.iostream.StreamClosedError:
            self.fake.note_abort()


@contextlib.asynccontextmanager
async def serving_fake_openai(*, model: str = DEFAULT_MODEL) -> AsyncIterator[FakeOpenAI]:
    """Run the fake server on the current (already running) loop for the ``async with`` body."""
    fake = FakeOpenAI(model=model)
    fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@contextlib.contextmanager
def running_fake_openai(*, model: str = DEFAULT_MODEL, timeout: float = 10.0) -> Iterator[FakeOpenAI]:
    """Run the fake server in a background thread with its own loop (for synchronous tests).

    The thread (:class:`tests.support.loop_thread.LoopThread`) runs ``asyncio.run``, so the
    loop, its tasks and the listening socket are all closed before the ``with`` block exits:
    nothing leaks into the next test.
    """
    served = LoopThread(lambda: serving_fake_openai(model=model), "fake-openai")
    fake = served.start(timeout)
    try:
        yield fake
    finally:
        served.stop(timeout)

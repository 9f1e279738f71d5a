"""Fuzzing: thousands of generated requests and WebSocket frames, and the daemon shrugs.

Every answer must be a 4xx/2xx with a JSON body (an ``error`` object on 4xx), never a 5xx; nothing
may be logged as an uncaught exception; and the daemon must still be healthy and working after.

WebSockets are fuzzed at two levels: messages (JSON or not, text or binary, too deep, too long),
each answered in order by an ack or an error frame on a connection that stays open; and raw frames
no client library would send (reserved opcodes and bits, unmasked, fragments out of order, text
that is not UTF-8, lengths beyond the cap), each answered or closed promptly, leaving nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import logging
import os
import re
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen_daemon.runtime import Daemon
from qwen_daemon.server.openapi import document
from tests.support.daemon import DaemonThread, fake_settings, frames_in
from tests.support.probe import poll

pytestmark = pytest.mark.timeout(300)

#: valid JSON that is not valid text or number for us: lone surrogates, a number no float can hold
ODD = st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud800", 10**400, -(10**400)])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40) | ODD,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        *("cwd", "title", "text", "option_id", "answers", "older_than_days", "type", "id"),
        *("endpoint", "keys", "expirationTime", "name", "subscription_id"),
    ]
)
#: a push subscription (``PushSubscription.toJSON()``) with some parts good and others hostile, so
#: the checks past the first one are reached too
_POINT = base64.urlsafe_b64encode(
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
).rstrip(b"=")
SUBSCRIPTION = st.fixed_dictionaries(
    {
        "endpoint": st.sampled_from(
            [
                "https://push.invalid/x",
                "http://127.0.0.1:9/x",
                "https://[::1",
                "https://h:99999/",
                "https://",
            ]
        )
        | JSON,
        "keys": st.fixed_dictionaries(
            {"p256dh": st.just(_POINT.decode()) | JSON, "auth": st.just("A" * 22) | JSON}
        )
        | JSON,
    },
    optional={"expirationTime": JSON | st.sampled_from([1e308, -0.0, 2**53])},
)
BODY = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(FIELDS, JSON, max_size=4).map(lambda v: json.dumps(v).encode()),
    SUBSCRIPTION.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.just(b""),
    st.sampled_from([1_000, 100_000]).map(lambda depth: b"[" * depth + b"]" * depth),
)
SEGMENT = st.one_of(
    st.just("{sid}"),
    st.text(alphabet="abcXYZ019_-.%~", min_size=1, max_size=12),
    st.sampled_from(["..", "%2e%2e", "x" * 80, "%00", "ws", "events", "prompt"]),
)
#: every route the OpenAPI document lists (new ones are fuzzed without being added here), with the
#: session's id, an unknown request id, or an unknown id for any other parameter
_PARAMS = {"session_id": "{sid}", "request_id": "{rid}"}
ROUTES = sorted(
    re.sub(r"\{([a-z_]+)\}", lambda m: _PARAMS.get(m[1], "{other}"), path) for path in document()["paths"]
)
PATH = st.one_of(
    st.sampled_from(ROUTES),
    st.lists(SEGMENT, min_size=1, max_size=5).map(lambda parts: "/api/" + "/".join(parts)),
)
QUERY = st.one_of(
    st.just(""),
    st.sampled_from(
        [
            "?after=",
            "?after=-1",
            "?after=99999999999999999999",
            "?after=3",
            "?after=%C2%B2",
            "?after=%EF%BC%93",
        ]
    ),
)
METHOD = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"])
CTYPE = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "application/vnd+json"]
)


class ErrorRecorder(logging.Handler):
    """Keeps every error (a 500 is logged as one) and every traceback, whatever its level."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str, ErrorRecorder]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "ws").mkdir()
    recorder = ErrorRecorder()
    logging.getLogger().addHandler(recorder)
    try:
        with DaemonThread(fake_settings(tmp, paths=_paths(tmp), max_sessions=50)) as served:
            daemon = served.daemon
            status, created = request(
                daemon, "POST", "/api/sessions", json.dumps({"cwd": str(tmp / "ws")}).encode()
            )
            assert status == 201, created
            yield daemon, created["id"], recorder
    finally:
        logging.getLogger().removeHandler(recorder)


def _paths(tmp: Path) -> Any:
    from qwen_daemon.config import Paths

    return Paths(tmp / "config", tmp / "state", tmp / "log", tmp / "run")


def request(
    daemon: Daemon, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    headers = {"Authorization": f"Bearer {daemon.token}"}
    if ctype:
        headers["Content-Type"] = ctype
    try:
        conn.request(method, path, body=body if method not in ("GET", "HEAD") else None, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, (json.loads(raw) if raw and method != "HEAD" else None)


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(method=METHOD, path=PATH, query=QUERY, body=BODY, ctype=CTYPE)
def test_http_fuzz_never_500(
    target: tuple[Daemon, str, ErrorRecorder], method: str, path: str, query: str, body: bytes, ctype: str
) -> None:
    daemon, sid, recorder = target
    path = path.replace("{sid}", sid).replace("{rid}", "nope").replace("{other}", "nope")
    if path.endswith(("/api/stop", "/api/token/rotate")) or (
        method == "DELETE" and path == f"/api/sessions/{sid}"
    ):
        return  # the only ways to make the next requests meaningless, tested elsewhere
    status, payload = request(daemon, method, path + query, body, ctype)
    assert status < 500, (method, path, status, payload)
    if status >= 400 and method != "HEAD":
        assert set(payload) == {"error"} and {"code", "message"} <= set(payload["error"]), payload
    assert not recorder.records, recorder.records[0].getMessage()


FRAME = st.one_of(
    st.dictionaries(
        st.sampled_from(["type", "text", "id", "request_id", "option_id", "answers", "mode_id", "visible"]),
        JSON,
        max_size=5,
    ),
    st.fixed_dictionaries(
        # the connection's own frames, and commands (REST only: unknown frames here) among others
        {"type": st.sampled_from(["prompt", "cancel", "permission", "mode", "ping", "visibility", "bogus"])},
        optional={
            "visible": JSON,
            "text": st.text(max_size=30),
            "id": JSON,
            "request_id": st.text(max_size=10),
            "option_id": JSON,
            "mode_id": JSON,
        },
    ),
    JSON,
).map(json.dumps) | st.text(max_size=60)
#: frames no well-behaved client sends: not JSON, not text, not UTF-8, too deep, too long
HOSTILE_BYTES = st.one_of(
    st.binary(max_size=200),
    FRAME.map(lambda text: text.encode("utf-8", "surrogatepass")),  # the same, as binary frames
    FRAME.map(lambda text: text.encode("utf-16", "surrogatepass")),  # json.loads detects UTF-16 in bytes
)
HOSTILE = HOSTILE_BYTES | st.sampled_from(
    [
        "[" * 100_000 + "]" * 100_000,
        '{"type": "ping", "id": ' + "[" * 5000 + "]" * 5000 + "}",
        "\ufeff{}",
        "NaN",
        '{"type": "ping", "id": Infinity}',
        '{"type": "ping", "id": 1' + "0" * 5000 + "}",  # beyond Python's int-from-text limit
        '{"type": "ping", "id": "' + "i" * 500_000 + '"}',
        '{"type": "prompt", "text": "' + "t" * 100_001 + '"}',
        '{"type": "ping"} {"type": "ping"}',
        '{"type": "ping", "type": "cancel"}',
        "\x00",
        "",
    ]
)


#: the id of the ping that ends each run (no generated frame carries it)
LAST = "last-9f2c7a"


def _last_seq(daemon: Daemon, sid: str) -> int:
    """Where a new client starts, so it is not sent the events of every earlier example again."""
    status, session = request(daemon, "GET", f"/api/sessions/{sid}")
    assert status == 200, session
    return int(session["last_seq"])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(frames=st.lists(FRAME | HOSTILE, min_size=20, max_size=40))
async def test_websocket_fuzz_keeps_the_connection_and_the_daemon(
    target: tuple[Daemon, str, ErrorRecorder], frames: list[str | bytes]
) -> None:
    """Every frame, JSON or not, text or binary, gets exactly one answer (an ack or an error
    frame), in order, and the connection stays open."""
    daemon, sid, recorder = target

    async def run() -> None:
        request = tornado.httpclient.HTTPRequest(
            f"ws://127.0.0.1:{daemon.port}/api/sessions/{sid}/ws?after={_last_seq(daemon, sid)}",
            headers={"Authorization": f"Bearer {daemon.token}"},
        )
        conn = await tornado.websocket.websocket_connect(request)
        try:
            for frame in frames:
                await conn.write_message(frame, binary=isinstance(frame, bytes))
            await conn.write_message(json.dumps({"type": "ping", "id": LAST}))
            answers, done = 0, False
            while not done:  # every frame is answered and the connection stays open
                message = await asyncio.wait_for(conn.read_message(), 30)
                assert message is not None, "the daemon closed the connection"
                for reply in frames_in(message):  # replies of one loop turn share a message
                    assert not done, f"a frame after the last answer: {reply}"
                    if "seq" in reply or reply.get("type") == "hello":
                        continue  # the greeting, or an event of a prompt another test sent over HTTP
                    assert reply.get("type") in ("ack", "error"), reply
                    assert reply["type"] == "ack" or {"code", "message"} <= set(reply["error"]), reply
                    answers += 1
                    done = reply.get("id") == LAST and reply.get("type") == "ack"
            assert answers == len(frames) + 1
        finally:
            conn.close()
            while await asyncio.wait_for(conn.read_message(), 10) is not None:
                pass

    await run()
    assert not recorder.records, recorder.records[0].getMessage()


# --- the WebSocket protocol itself: frames a library would never send ----------------------------


@dataclass(frozen=True)
class RawFrame:
    """One client frame as bytes on the wire, any header bit and length allowed (RFC 6455 5.2)."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0
    masked: bool = True
    #: a declared length instead of the payload's (only ever larger than the frame cap)
    length: int | None = None

    def wire(self) -> bytes:
        size = len(self.payload) if self.length is None else self.length
        first = (0x80 if self.fin else 0) | self.rsv << 4 | self.opcode
        mask_bit = 0x80 if self.masked else 0
        if size < 126:
            head = struct.pack("!BB", first, mask_bit | size)
        elif size <= 0xFFFF:
            head = struct.pack("!BBH", first, mask_bit | 126, size)
        else:
            head = struct.pack("!BBQ", first, mask_bit | 127, size)
        if not self.masked:
            return head + self.payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(self.payload))


def _text(frame: str) -> RawFrame:
    return RawFrame(0x1, frame.encode("utf-8", "surrogatepass"))


def _fragments(text: str, cut: int, ping: bool) -> list[RawFrame]:
    """One message in two fragments, a ping between them if asked (control frames may be)."""
    data = text.encode("utf-8", "surrogatepass")
    middle = [RawFrame(0x9, b"between")] if ping else []
    return [RawFrame(0x1, data[:cut], fin=False), *middle, RawFrame(0x0, data[cut:])]


#: each draw is a few frames in a row; a run sends a list of draws
RAW = st.one_of(
    # well-formed messages: text, and binary of any bytes
    FRAME.map(lambda f: [_text(f)]),
    HOSTILE_BYTES.map(lambda b: [RawFrame(0x2, b)]),
    st.builds(_fragments, FRAME, st.integers(0, 8), st.booleans()),
    # any opcode (3-7 and 11-15 are reserved), any header bits, any payload
    st.builds(
        RawFrame,
        opcode=st.integers(0, 15),
        payload=st.binary(max_size=300) | HOSTILE_BYTES,
        fin=st.booleans(),
        rsv=st.integers(0, 7),
        masked=st.booleans(),
    ).map(lambda f: [f]),
    # text that is not UTF-8; a close with a reason that is not; pings and pongs of any size
    st.binary(min_size=1, max_size=50).map(lambda b: [RawFrame(0x1, b"\xff" + b)]),
    st.builds(
        lambda code, why: [RawFrame(0x8, struct.pack("!H", code) + why)],
        st.integers(0, 65535),
        st.binary(max_size=60),
    ),
    st.builds(RawFrame, opcode=st.sampled_from([0x9, 0xA]), payload=st.binary(max_size=200)).map(
        lambda f: [f]
    ),
    # a continuation of nothing, or a fragment never finished
    st.builds(RawFrame, opcode=st.just(0x0), payload=st.binary(max_size=20), fin=st.booleans()).map(
        lambda f: [f]
    ),
    FRAME.map(lambda f: [RawFrame(0x1, f.encode("utf-8", "surrogatepass")[:3], fin=False)]),
    # a frame announcing more than the daemon ever takes (1 MiB): refused before it is read
    st.sampled_from([2**20 + 1, 2**32, 2**63 - 1]).map(lambda n: [RawFrame(0x2, b"", length=n)]),
)


class _Wire:
    """A raw WebSocket client connection: bytes out, whole frames in (30 s per read at most)."""

    def __init__(self, daemon: Daemon, sid: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /api/sessions/{sid}/ws?after={_last_seq(daemon, sid)} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{daemon.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {daemon.token}\r\n\r\n"
            ).encode()
        )
        self.pending = b""
        while b"\r\n\r\n" not in self.pending:
            assert self._fill(), "closed during the handshake"
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:200]

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        self.pending += chunk
        return bool(chunk)

    def send(self, data: bytes) -> None:
        # the daemon may have closed it already: a clean close, which the reader sees
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def read_exactly(self, count: int) -> bytes | None:
        while len(self.pending) < count:
            if not self._fill():
                return None
        data, self.pending = self.pending[:count], self.pending[count:]
        return data


def _next_server_frame(sock: _Wire) -> tuple[int, bytes] | None:
    """(opcode, payload) of the next frame the daemon sends; None once it has closed."""
    head = sock.read_exactly(2)
    if head is None:
        return None
    size = head[1] & 0x7F
    if size >= 126:
        extended = sock.read_exactly(2 if size == 126 else 8)
        if extended is None:
            return None
        size = int.from_bytes(extended, "big")
    payload = sock.read_exactly(size)
    return None if payload is None else (head[0] & 0x0F, payload)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(draws=st.lists(RAW, min_size=1, max_size=6))
def test_websocket_protocol_fuzz_answers_or_closes_cleanly(
    target: tuple[Daemon, str, ErrorRecorder], draws: list[list[RawFrame]]
) -> None:
    """Whatever arrives on the wire, the daemon answers (an ack or an error frame) or closes the
    connection (with a close frame, or by dropping it), promptly; it logs no error or traceback,
    ``/health`` answers after each connection, and the connection leaves no subscriber behind."""
    daemon, sid, recorder = target
    wire = _Wire(daemon, sid)
    last = _text(json.dumps({"type": "ping", "id": LAST}))
    with wire.sock:
        wire.send(b"".join(frame.wire() for draw in [*draws, [last]] for frame in draw))
        done = False
        while not done:  # bounded: every read has a 30 s timeout, and the daemon sends finitely many
            frame = _next_server_frame(wire)
            if frame is None or frame[0] == 0x8:
                break  # closed, or closing
            opcode, payload = frame
            if opcode == 0x1:
                for reply in frames_in(payload):  # one message: the daemon's frames of a loop turn
                    assert not done, f"a frame after the last answer: {reply}"
                    done = reply.get("id") == LAST and reply.get("type") == "ack"
                    assert done or "seq" in reply or reply.get("type") in ("hello", "ack", "error"), reply
            else:
                assert opcode == 0xA, opcode  # a pong for a ping
    assert request(daemon, "GET", "/health")[0] == 200
    session = daemon.manager.get(sid)  # and the connection left nothing behind
    poll(lambda: not daemon.websockets and not session.events.subscriber_count, 10, "the socket to go")
    assert not recorder.records, recorder.records[0].getMessage()


def test_daemon_still_healthy_and_working_after_fuzzing(target: tuple[Daemon, str, ErrorRecorder]) -> None:
    daemon, _sid, recorder = target
    status, health = request(daemon, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    cwd = str(daemon.settings.paths.state_dir.parent / "ws")
    status, created = request(daemon, "POST", "/api/sessions", json.dumps({"cwd": cwd}).encode())
    assert status == 201, created
    status, _ = request(
        daemon, "POST", f"/api/sessions/{created['id']}/prompt", b'{"text": "say still here"}'
    )
    assert status == 202
    assert not recorder.records

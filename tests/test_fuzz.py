"""Fuzzing: thousands of generated requests and WebSocket frames, and the daemon shrugs.

Every answer must be a 4xx/2xx with a JSON body (an ``error`` object on 4xx), never a 5xx; nothing
may be logged as an uncaught exception; and the daemon must still be healthy and working after.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen_daemon.server.app import Daemon
from tests.support.daemon import ThreadedDaemon, fake_settings

pytestmark = pytest.mark.timeout(300)

#: valid JSON that is not valid text or number for us: lone surrogates, a number no float can hold
ODD = st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud800", 10**400, -(10**400)])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40) | ODD,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["cwd", "title", "text", "option_id", "answers", "older_than_days", "type", "id"])
BODY = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(FIELDS, JSON, max_size=4).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.just(b""),
    st.sampled_from([1_000, 100_000]).map(lambda depth: b"[" * depth + b"]" * depth),
)
SEGMENT = st.one_of(
    st.just("{sid}"),
    st.text(alphabet="abcXYZ019_-.%~", min_size=1, max_size=12),
    st.sampled_from(["..", "%2e%2e", "x" * 80, "%00", "ws", "events", "prompt"]),
)
PATH = st.one_of(
    st.sampled_from(
        [
            "/api/sessions",
            "/api/sessions/prune",
            "/api/sessions/{sid}",
            "/api/sessions/{sid}/prompt",
            "/api/sessions/{sid}/cancel",
            "/api/sessions/{sid}/events",
            "/api/sessions/{sid}/permissions/{rid}",
            "/api/openapi.json",
            "/health",
        ]
    ),
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
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str, ErrorRecorder]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "ws").mkdir()
    recorder = ErrorRecorder()
    logging.getLogger().addHandler(recorder)
    try:
        with ThreadedDaemon(fake_settings(tmp, paths=_paths(tmp), max_sessions=50)) as daemon:
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
    path = path.replace("{sid}", sid).replace("{rid}", "nope")
    if path.endswith("/api/stop") or (method == "DELETE" and path == f"/api/sessions/{sid}"):
        return  # the only ways to make the next requests meaningless, tested elsewhere
    status, payload = request(daemon, method, path + query, body, ctype)
    assert status < 500, (method, path, status, payload)
    if status >= 400 and method != "HEAD":
        assert set(payload) == {"error"} and {"code", "message"} <= set(payload["error"]), payload
    assert not recorder.records, recorder.records[0].getMessage()


FRAME = st.one_of(
    st.dictionaries(
        st.sampled_from(["type", "text", "id", "request_id", "option_id", "answers"]), JSON, max_size=5
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["prompt", "cancel", "permission", "ping", "bogus"])},
        optional={
            "text": st.text(max_size=30),
            "id": JSON,
            "request_id": st.text(max_size=10),
            "option_id": JSON,
        },
    ),
    JSON,
).map(json.dumps) | st.text(max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(frames=st.lists(FRAME, min_size=20, max_size=40))
def test_websocket_fuzz_keeps_the_connection_and_the_daemon(
    target: tuple[Daemon, str, ErrorRecorder], frames: list[str]
) -> None:
    daemon, sid, recorder = target

    async def run() -> None:
        request = tornado.httpclient.HTTPRequest(
            f"ws://127.0.0.1:{daemon.port}/api/sessions/{sid}/ws?after=0",
            headers={"Authorization": f"Bearer {daemon.token}"},
        )
        conn = await tornado.websocket.websocket_connect(request)
        try:
            for frame in frames:
                await conn.write_message(frame)
            await conn.write_message(json.dumps({"type": "ping", "id": "last"}))
            while True:  # every frame is answered and the connection stays open
                message = await asyncio.wait_for(conn.read_message(), 30)
                assert message is not None, "the daemon closed the connection"
                reply = json.loads(message)
                if reply.get("id") == "last" and reply.get("type") == "ack":
                    break
            await conn.write_message(json.dumps({"type": "cancel"}))
        finally:
            conn.close()
            while await asyncio.wait_for(conn.read_message(), 10) is not None:
                pass

    asyncio.run(run())
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

#!/usr/bin/env python3
"""A bench-only ACP agent: stdlib, starts in milliseconds, streams timestamped chunks on demand.

Why: the relay benchmarks must measure the daemon, not an LLM or Node. Every chunk it writes
carries ``_meta.t`` = ``time.time_ns()`` taken just before the write, so a client on the same
machine can compute agent-write → client-receive latency from its own clock.

Prompt text (one command):

``pace <N> <interval_ms>``  N agent_message_chunk updates, one every interval (one pacing thread
                           serves every paced turn, so 50 turns due at once are written one
                           right after another, each stamped just before its own write, not 50
                           threads queueing for the interpreter lock between stamp and write)
``burst <N>``              N chunks as fast as the pipe takes them (written in batches of 100)
anything else              one chunk ``ok``

It advertises two modes (``default`` and ``plan``) and honours ``session/set_mode``.
"""

from __future__ import annotations

import heapq
import itertools
import json
import sys
import threading
import time
from typing import Any

_out_lock = threading.Lock()
_sessions: dict[str, str] = {}  # session id → mode id
#: paced turns: (due time, tie-breaker, session id, chunks left, interval, prompt request id)
_paced: list[tuple[float, int, str, int, float, Any]] = []
_paced_cv = threading.Condition()
_order = itertools.count()
MODES = [{"id": "default", "name": "Default"}, {"id": "plan", "name": "Plan"}]


def _write(lines: list[str]) -> None:
    with _out_lock:
        sys.stdout.write("".join(lines))
        sys.stdout.flush()


def _line(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":")) + "\n"


def _chunk(session_id: str, text: str) -> str:
    update = {
        "sessionUpdate": "agent_message_chunk",
        "content": {"type": "text", "text": text},
        "_meta": {"t": time.time_ns()},
    }
    return _line(
        {"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": session_id, "update": update}}
    )


def _pacer() -> None:
    """Write every paced turn's chunks at their due times, oldest due first."""
    while True:
        with _paced_cv:
            while not _paced:
                _paced_cv.wait()
            delay = _paced[0][0] - time.monotonic()
            if delay > 0:
                _paced_cv.wait(delay)
                continue
            due, _, session_id, left, interval, request_id = heapq.heappop(_paced)
        _write([_chunk(session_id, "x")])
        if left > 1:
            with _paced_cv:
                heapq.heappush(
                    _paced, (due + interval, next(_order), session_id, left - 1, interval, request_id)
                )
        else:
            _end_turn(request_id)


def _end_turn(request_id: Any) -> None:
    _write([_line({"jsonrpc": "2.0", "id": request_id, "result": {"stopReason": "end_turn"}})])


def _turn(request_id: Any, session_id: str, text: str) -> None:
    words = text.split()
    if len(words) == 3 and words[0] == "pace" and int(words[1]) > 0:
        with _paced_cv:
            entry = (time.monotonic(), next(_order), session_id, int(words[1]), float(words[2]) / 1000.0)
            heapq.heappush(_paced, (*entry, request_id))
            _paced_cv.notify()
        return
    if len(words) == 2 and words[0] == "burst":
        remaining = int(words[1])
        while remaining > 0:
            batch = min(100, remaining)
            _write([_chunk(session_id, "x") for _ in range(batch)])
            remaining -= batch
    else:
        _write([_chunk(session_id, "ok")])
    _end_turn(request_id)


def _answer(request_id: Any, result: dict[str, Any]) -> None:
    _write([_line({"jsonrpc": "2.0", "id": request_id, "result": result})])


def main() -> None:
    threading.Thread(target=_pacer, daemon=True).start()
    count = 0
    for raw in sys.stdin:
        message = json.loads(raw)
        method, request_id = message.get("method"), message.get("id")
        params = message.get("params") or {}
        if request_id is None or method is None:
            continue  # notifications (cancel) and responses
        if method == "initialize":
            _answer(
                request_id, {"protocolVersion": 1, "agentCapabilities": {}, "agentInfo": {"name": "bench"}}
            )
        elif method == "session/new":
            count += 1
            session_id = f"bench-{count}"
            _sessions[session_id] = "default"
            _answer(
                request_id,
                {"sessionId": session_id, "modes": {"currentModeId": "default", "availableModes": MODES}},
            )
        elif method == "session/set_mode":
            _sessions[params.get("sessionId", "")] = params.get("modeId", "default")
            _answer(request_id, {})
        elif method == "session/prompt":
            text = "".join(b.get("text", "") for b in params.get("prompt", []) if isinstance(b, dict))
            args = (request_id, params.get("sessionId", ""), text)
            threading.Thread(target=_turn, args=args, daemon=True).start()
        else:
            _write(
                [_line({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": method}})]
            )


if __name__ == "__main__":
    main()

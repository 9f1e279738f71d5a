"""Push latency: from the agent's permission request to the push service holding the decrypted push.

Starts a standalone daemon (scripted fake agent, ``push_insecure_endpoints`` on) and, in this
process, the tests' loopback push service (tests/support/push_service.py), which checks the VAPID
JWT and decrypts every push exactly as in CI. One subscription; then ``--runs`` times: a prompt
whose agent asks for permission, the push awaited, the request denied, the turn awaited.

Measured per run: from the daemon's timestamp on the ``permission_request`` event (taken as the
agent's request arrives, millisecond resolution, this machine's clock) to the push service's
receipt of the decrypted push; and, end to end on one clock, from sending the prompt to the
receipt. The first push of a daemon also imports pywebpush (~0.25 s): a test push warms it up
first and is reported on its own.

    .venv/bin/python bench/push_latency.py [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import json
import sys
import time
from typing import Any

import tornado.httpclient
from common import (
    ROOT,
    isolated_home,
    load_average,
    median,
    percentile,
    start_our_daemon,
    stop_our_daemon,
    table,
)

from tests.support.push_service import PushService, push_service

FAKE_AGENT = str(ROOT / "tests" / "fake_agent.py")


def event_time(ts: str) -> float:
    """``2026-12-07T12:41:30.123Z`` → seconds since the epoch."""
    whole, _, ms = ts.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + int(ms or 0) / 1000


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.http = tornado.httpclient.AsyncHTTPClient(force_instance=True)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        reply = await self.http.fetch(
            self.url + path,
            method=method,
            body=data,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        return json.loads(reply.body) if reply.body else None

    async def wait_state(self, sid: str, state: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            detail: dict[str, Any] = await self.call("GET", f"/api/sessions/{sid}")
            if detail["state"] == state:
                return detail
            await asyncio.sleep(0.002)
        raise RuntimeError(f"session {sid} never became {state}")


async def wait_for(push: PushService, kind: str, count: int) -> Any:
    deadline = time.monotonic() + 30
    while True:
        found = [r for r in push.received if r.payload["kind"] == kind]
        if len(found) >= count:
            return found[count - 1]
        if time.monotonic() > deadline:
            raise RuntimeError(f"push {count} of kind {kind} never arrived (errors: {push.errors})")
        await asyncio.sleep(0.0005)


async def measure(url: str, token: str, workspace: str, runs: int) -> dict[str, Any]:
    client = Client(url, token)
    key = (await client.call("GET", "/api/push/key"))["public_key"]
    async with push_service(lambda: key) as push:
        await client.call("POST", "/api/push/subscriptions", push.subscribe("bench"))
        began = time.perf_counter()
        await client.call("POST", "/api/push/test")
        cold = (await wait_for(push, "test", 1)).at - began
        sid = (await client.call("POST", "/api/sessions", {"cwd": workspace}))["id"]
        from_request: list[float] = []
        from_prompt: list[float] = []
        for run in range(1, runs + 1):
            sent = time.perf_counter()
            await client.call("POST", f"/api/sessions/{sid}/prompt", {"text": "permission Write notes.txt"})
            received = await wait_for(push, "permission", run)
            events = (await client.call("GET", f"/api/sessions/{sid}/events"))["events"]
            asked = next(e for e in events if e.get("request_id") == received.payload["request_id"])
            from_request.append((received.wall - event_time(asked["ts"])) * 1000)
            from_prompt.append((received.at - sent) * 1000)
            rid = received.payload["request_id"]
            await client.call("POST", f"/api/sessions/{sid}/permissions/{rid}", {"option_id": "cancel"})
            await wait_for(push, "turn_ended", run)
            await client.wait_state(sid, "idle")
        assert not push.errors, push.errors
    client.http.close()

    def figures(values: list[float]) -> list[float]:
        return [round(median(values), 1), round(percentile(values, 90), 1), round(max(values), 1)]

    return {
        "runs": runs,
        "request_to_push_ms": figures(from_request),
        "prompt_to_push_ms": figures(from_prompt),
        "first_push_ms": round(cold * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with isolated_home() as home:
        env = {"QWEN_DAEMON_PUSH_INSECURE_ENDPOINTS": "1"}
        daemon = start_our_daemon(home, "--agent-cmd", f"{sys.executable} {FAKE_AGENT}", env=env)
        try:
            result = asyncio.run(measure(daemon.url, daemon.token, str(home.workspace("push")), args.runs))
        finally:
            stop_our_daemon(home, daemon)
    rows = [
        ["agent's request → push received", *result["request_to_push_ms"]],
        ["prompt sent → push received", *result["prompt_to_push_ms"]],
    ]
    print(table(["over " + str(result["runs"]) + " runs (ms)", "p50", "p90", "max"], rows))
    print(
        f"first push of the daemon (imports pywebpush): {result['first_push_ms']} ms; "
        f"VAPID-signed, aes128gcm, checked and decrypted by the loopback push service; "
        f"load average {load_average():.2f}"
    )


if __name__ == "__main__":
    main()

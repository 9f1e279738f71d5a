"""Lock-out attempt (issue 14, finding 1): ``/health`` latency with and without 2,000 slow sockets.

Starts a standalone daemon (scripted fake agent: this is about connections, not agents), measures
``GET /health`` and an authenticated ``GET /api/sessions`` on a fresh connection each time (as
the CLI does), first on a quiet daemon, then while ``tests/support/attack.py`` — a separate
process — keeps 2,000 token-less sockets dribbling request heads and bodies and reopens at once
whatever the daemon closes. Prints p50/p95/max per phase and the attacker's counters.

    .venv/bin/python bench/lockout.py [--sockets 2000] [--seconds 20] [--kinds head,body,public]
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
from typing import Any

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

FAKE_AGENT = str(ROOT / "tests" / "fake_agent.py")
#: what a probe may take before it counts as refused (the CLI's health probe gives up after 2 s)
PROBE_TIMEOUT = 5.0
#: seconds between two probe pairs
PROBE_PAUSE = 0.05


def probe(port: int, path: str, token: str | None) -> float | None:
    """Seconds for one request on a new connection, or None when it failed or timed out."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        reply = conn.getresponse()
        reply.read()
        if reply.status != 200:
            return None
    except OSError:
        return None
    finally:
        conn.close()
    return time.perf_counter() - began


def phase(port: int, token: str, seconds: float) -> dict[str, Any]:
    """Probe pairs at a steady pace for ``seconds``, so the attacker gets the same time in every run."""
    health: list[float] = []
    api: list[float] = []
    failed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(PROBE_PAUSE)
        for path, use_token, into in (("/health", None, health), ("/api/sessions", token, api)):
            took = probe(port, path, use_token)
            if took is None:
                failed += 1
            else:
                into.append(took * 1000)
    return {
        "health_p50_ms": round(median(health), 1),
        "health_p95_ms": round(percentile(health, 95), 1),
        "health_max_ms": round(max(health, default=float("nan")), 1),
        "api_p50_ms": round(median(api), 1),
        "api_max_ms": round(max(api, default=float("nan")), 1),
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--kinds", default="head,body,public", help="the attacker's socket kinds")
    args = parser.parse_args()
    with isolated_home() as home:
        daemon = start_our_daemon(home, "--agent-cmd", f"{sys.executable} {FAKE_AGENT}")
        port = int(daemon.url.rsplit(":", 1)[1])
        try:
            quiet = phase(port, daemon.token, args.seconds)
            attacker = subprocess.Popen(
                [sys.executable, "-m", "tests.support.attack", "--port", str(port),
                 "--sockets", str(args.sockets), "--seconds", "600", "--kinds", args.kinds],
                cwd=ROOT, env=home.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert attacker.stdin is not None and attacker.stdout is not None
            ready = attacker.stdout.readline().strip()
            if ready != "ready":
                raise RuntimeError(f"the attacker did not start: {ready!r}")
            began = time.monotonic()
            attacked = phase(port, daemon.token, args.seconds)
            attack_seconds = time.monotonic() - began
            attacker.stdin.close()
            counters = json.loads(attacker.stdout.read().strip().splitlines()[-1])
            attacker.wait(30)
        finally:
            stop_our_daemon(home, daemon)
    rows = [[name, *figures.values()] for name, figures in (("quiet", quiet), ("under attack", attacked))]
    print(table(["phase", *quiet.keys()], rows))
    rate = counters["opened"] / attack_seconds
    print(f"attacker ({args.sockets} sockets, {args.kinds}): {json.dumps(counters)}, {rate:.0f} opens/s")
    print(
        f"each phase {args.seconds:.0f} s of probe pairs every {PROBE_PAUSE * 1000:.0f} ms on fresh "
        f"connections; load average {load_average():.2f}"
    )


if __name__ == "__main__":
    main()

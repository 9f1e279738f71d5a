"""Start → ready and idle memory: ``qwen-daemon start`` vs upstream ``qwen serve``, side by side.

Ours: wall time of the ``qwen-daemon start`` command (it returns once the daemon listens) and
until ``/health`` answers, then the RSS of the standalone daemon process after it settles.
``qwen serve``: time from spawn until ``/health`` answers, then its own RSS and that of its whole
process tree (it pre-starts one ``qwen --acp`` child for its primary workspace).

    .venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from common import (
    Home,
    isolated_home,
    load_average,
    median,
    qwen_serve,
    rss_kib,
    save_results,
    settle,
    start_our_daemon,
    stop_our_daemon,
    table,
    tree_rss_kib,
)

from qwen_daemon.sessions.store import SessionRecord, Store
from tests.support.fake_openai import running_fake_openai

SETTLE = 2.0
#: The floor under any Tornado daemon's start: an interpreter that imports what ours must serve with
#: (asyncio and Tornado's server, WebSocket and web modules) and exits, without running any of it.
FLOOR = "import asyncio, tornado.httpserver, tornado.web, tornado.websocket, os; os._exit(0)"
BARE = "import os; os._exit(0)"


def spawn_ms(code: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return (time.perf_counter() - began) * 1000


def measure(runs: int) -> dict[str, float]:
    ours_start, ours_health, ours_rss, serve_ready, serve_rss, serve_tree = [], [], [], [], [], []
    floor, bare = [], []
    with running_fake_openai() as fake:
        for _ in range(runs):
            bare.append(spawn_ms(BARE))
            floor.append(spawn_ms(FLOOR))
            with isolated_home(fake.base_url) as home:
                daemon = start_our_daemon(home)
                time.sleep(SETTLE)
                ours_rss.append(rss_kib(daemon.pid) / 1024)
                stop_our_daemon(home, daemon)
                ours_start.append(daemon.start_seconds * 1000)
                ours_health.append(daemon.health_seconds * 1000)
            with isolated_home(fake.base_url) as home, qwen_serve(home, home.workspace("a")) as serve:
                time.sleep(SETTLE)
                serve_ready.append(serve.ready_seconds * 1000)
                serve_rss.append(rss_kib(serve.proc.pid) / 1024)
                serve_tree.append(tree_rss_kib(serve.proc.pid) / 1024)
    return {
        "ours_start_ms": median(ours_start),
        "ours_health_ms": median(ours_health),
        "ours_idle_rss_mib": median(ours_rss),
        "serve_ready_ms": median(serve_ready),
        "serve_idle_rss_mib": median(serve_rss),
        "serve_idle_tree_rss_mib": median(serve_tree),
        "python_ms": median(bare),
        "python_tornado_ms": median(floor),
        "runs": runs,
    }


#: a heavy user's history: 50 sessions of 10,000 events each (~190 MB with the daemon's schema)
BIG_SESSIONS, BIG_EVENTS = 50, 10_000


def fill_database(home: Home) -> float:
    """Store BIG_SESSIONS sessions of BIG_EVENTS events each through the daemon's Store;
    returns the file's size (MiB)."""
    path = home.root / "s" / "qwen-daemon" / "sessions.db"
    store = Store(path)
    text = "x" * 200
    for n in range(BIG_SESSIONS):
        sid = f"big-{n:02d}"
        stamp = "2026-01-01T00:00:00.000Z"
        record = SessionRecord(sid, "/w", sid, "qwen", None, None, "idle", None, stamp, stamp, None)
        store.save_session(record)
        for seq in range(1, BIG_EVENTS + 1):  # turns of 100 events: started, 98 chunks, ended
            kind = {1: "turn_started", 0: "turn_ended"}.get(seq % 100, "agent_message_chunk")
            payload = json.dumps({"seq": seq, "type": kind, "ts": stamp, "text": text})
            store.add_event(sid, seq, kind, stamp, payload)
        store.flush()
    store.close()
    return path.stat().st_size / 2**20


def measure_big(runs: int) -> dict[str, float]:
    """Start → ready over a big database: after an unclean stop (the quick check reads every
    page) and after a clean one (the file is as the stop left it: no check)."""
    unclean, clean = [], []
    with isolated_home() as home:
        size = fill_database(home)
        marker = home.root / "s" / "qwen-daemon" / "sessions.db.clean"
        for _ in range(runs):
            marker.unlink(missing_ok=True)  # what a kill -9 leaves: no marker
            daemon = start_our_daemon(home)
            stop_our_daemon(home, daemon)
            unclean.append(daemon.health_seconds * 1000)
            daemon = start_our_daemon(home)
            stop_our_daemon(home, daemon)
            clean.append(daemon.health_seconds * 1000)
    return {"db_mib": size, "unclean_ms": median(unclean), "clean_ms": median(clean), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    idle = settle()
    load = load_average()
    r: dict[str, Any] = measure(runs)
    r["cpu_idle_before"] = round(idle, 2)
    print(
        f"start → ready and idle RSS, medians of {runs} runs "
        f"(CPU {idle:.0%} idle before; load average {load:.1f} on 2 cores)"
    )
    print(
        table(
            ["", "qwen-daemon", "qwen serve", "ratio", "target"],
            [
                [
                    "start → ready (ms)",
                    f"{r['ours_start_ms']:.0f} (/health {r['ours_health_ms']:.0f})",
                    f"{r['serve_ready_ms']:.0f}",
                    f"{r['serve_ready_ms'] / r['ours_health_ms']:.1f}x faster",
                    "≤ 150",
                ],
                [
                    "idle RSS (MiB)",
                    f"{r['ours_idle_rss_mib']:.1f}",
                    f"{r['serve_idle_rss_mib']:.0f} (+ child: {r['serve_idle_tree_rss_mib']:.0f})",
                    f"{r['serve_idle_rss_mib'] / r['ours_idle_rss_mib']:.1f}x smaller",
                    "≤ 35",
                ],
            ],
        )
    )
    print(
        f"floor: the interpreter alone {r['python_ms']:.0f} ms; "
        f"importing asyncio + Tornado's server modules {r['python_tornado_ms']:.0f} ms"
    )
    big = measure_big(3)
    r["big_database"] = big
    print(
        f"start → /health over {BIG_SESSIONS * BIG_EVENTS:,} stored events ({big['db_mib']:.0f} MiB), "
        f"medians of {big['runs']}: after a clean stop {big['clean_ms']:.0f} ms; "
        f"after an unclean one (quick check) {big['unclean_ms']:.0f} ms"
    )
    save_results("startup", r)


if __name__ == "__main__":
    main()

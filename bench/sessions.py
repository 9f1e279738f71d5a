"""New-session latency (cold, warm, warm spare) and memory per session count, with the real Qwen Code.

Both daemons run the same pinned Qwen Code against the same fake OpenAI-compatible server.

- cold: the first session in a workspace with no agent running (the agent boots);
- warm: another session in a workspace whose agent is up (a second after the first);
- spare (ours): the workspace's last session was closed, its agent kept warm as a spare;
- memory: daemon + every agent process, with 1, 10 and 50 sessions in one workspace.

``qwen serve`` is started with a primary workspace and one secondary per run (secondaries start
their ``qwen --acp`` child on demand, which is the cold case); a warm session there is
``POST /session`` with ``sessionScope: "thread"`` (the default scope re-attaches to one session).

    .venv/bin/python bench/sessions.py [--runs 3]
"""

from __future__ import annotations

import argparse
import time
import urllib.error

from common import (
    Home,
    OurDaemon,
    http_json,
    isolated_home,
    load_average,
    median,
    qwen_serve,
    save_results,
    start_our_daemon,
    stop_our_daemon,
    table,
    tree_rss_kib,
)

from tests.support.fake_openai import running_fake_openai

COUNTS = (1, 10, 50)
#: a user does not open two sessions within the same second: both daemons get this pause first
PAUSE = 1.0


def timed(call: object) -> float:
    began = time.perf_counter()
    call()  # type: ignore[operator]
    return (time.perf_counter() - began) * 1000


def ours_latency(home: Home, runs: int) -> dict[str, float]:
    daemon = start_our_daemon(home)
    cold, warm, spare = [], [], []
    try:

        def create(ws: str) -> str:
            return str(http_json("POST", daemon.url + "/api/sessions", {"cwd": ws}, daemon.token)["id"])

        for i in range(runs):
            ws = str(home.workspace(f"ours{i}"))
            ids: list[str] = []
            cold.append(timed(lambda ws=ws, ids=ids: ids.append(create(ws))))
            time.sleep(PAUSE)
            warm.append(timed(lambda ws=ws, ids=ids: ids.append(create(ws))))
            for sid in ids:
                http_json("DELETE", f"{daemon.url}/api/sessions/{sid}", token=daemon.token)
            time.sleep(PAUSE)
            spare.append(timed(lambda ws=ws: create(ws)))
    finally:
        stop_our_daemon(home, daemon)
    return {"cold_ms": median(cold), "warm_ms": median(warm), "spare_ms": median(spare)}


def post_until_accepted(url: str, body: dict[str, str]) -> None:
    """``qwen serve`` answers 503 while a workspace runtime is still starting: that wait counts."""
    for _ in range(600):
        try:
            http_json("POST", url, body)
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise
            time.sleep(0.05)
    raise RuntimeError("qwen serve kept answering 503")


def serve_latency(home: Home, runs: int) -> dict[str, float]:
    secondaries = [home.workspace(f"serve{i}") for i in range(runs)]
    cold, warm = [], []
    with qwen_serve(home, home.workspace("primary"), *secondaries) as serve:
        for ws in secondaries:
            body = {"cwd": str(ws), "sessionScope": "thread"}
            cold.append(timed(lambda body=body: post_until_accepted(serve.url + "/session", body)))
            time.sleep(PAUSE)
            warm.append(timed(lambda body=body: post_until_accepted(serve.url + "/session", body)))
    return {"cold_ms": median(cold), "warm_ms": median(warm)}


def ours_memory(home: Home) -> dict[str, float]:
    daemon: OurDaemon = start_our_daemon(home, "--max-sessions", "60")
    ws = str(home.workspace("mem"))
    out = {}
    try:
        made = 0
        for count in COUNTS:
            while made < count:
                http_json("POST", daemon.url + "/api/sessions", {"cwd": ws}, daemon.token)
                made += 1
            time.sleep(1.0)
            out[str(count)] = tree_rss_kib(daemon.pid) / 1024
    finally:
        stop_our_daemon(home, daemon)
    return out


def serve_memory(home: Home) -> dict[str, float]:
    ws = home.workspace("mem")
    out = {}
    with qwen_serve(home, ws) as serve:
        made = 0
        for count in COUNTS:
            while made < count:
                post_until_accepted(serve.url + "/session", {"cwd": str(ws), "sessionScope": "thread"})
                made += 1
            time.sleep(1.0)
            out[str(count)] = tree_rss_kib(serve.proc.pid) / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    load = load_average()
    with running_fake_openai() as fake:
        with isolated_home(fake.base_url) as home:
            ours = ours_latency(home, runs)
        print("ours:", ours, flush=True)
        with isolated_home(fake.base_url) as home:
            serve = serve_latency(home, runs)
        with isolated_home(fake.base_url) as home:
            ours_mem = ours_memory(home)
        with isolated_home(fake.base_url) as home:
            serve_mem = serve_memory(home)
    print(f"new session → ready, real Qwen Code, medians of {runs} (load average {load:.1f} on 2 cores)")
    print(
        table(
            ["", "qwen-daemon (ms)", "qwen serve (ms)", "ratio", "target"],
            [
                [
                    "cold workspace",
                    f"{ours['cold_ms']:.0f}",
                    f"{serve['cold_ms']:.0f}",
                    f"{serve['cold_ms'] / ours['cold_ms']:.1f}x",
                    "",
                ],
                [
                    "warm workspace",
                    f"{ours['warm_ms']:.0f}",
                    f"{serve['warm_ms']:.0f}",
                    f"{serve['warm_ms'] / ours['warm_ms']:.1f}x",
                    "≤ 100",
                ],
                ["warm spare (last session closed)", f"{ours['spare_ms']:.0f}", "n/a", "", "≤ 100"],
            ],
        )
    )
    print("memory, daemon + agents, sessions in one workspace (MiB)")
    print(
        table(
            ["sessions", "qwen-daemon", "qwen serve", "ratio"],
            [
                [
                    n,
                    f"{ours_mem[str(n)]:.0f}",
                    f"{serve_mem[str(n)]:.0f}",
                    f"{serve_mem[str(n)] / ours_mem[str(n)]:.2f}x",
                ]
                for n in COUNTS
            ],
        )
    )
    save_results(
        "sessions", {"ours": ours, "serve": serve, "ours_memory_mib": ours_mem, "serve_memory_mib": serve_mem}
    )


if __name__ == "__main__":
    main()

"""Relay overhead, throughput and replay: the daemon's own cost, isolated with a stdlib bench agent.

``bench/bench_agent.py`` stamps every chunk with ``time.time_ns()`` just before writing it; one
WebSocket client per session (in this process, same clock) records receipt time minus that stamp.
So a figure covers: agent pipe → ACP parse → event (serialized once) → SQLite commit (one
transaction per loop turn) → publish → WebSocket frame → client. Receipt is taken twice: when
the frame reached the client's socket (the kernel's receive timestamp: the daemon's cost, which
the targets are about) and when this process got round to reading it (that plus the client's own
queueing behind the other connections it serves on the same two cores).

- latency: S sessions in one workspace each stream ``pace`` chunks (p50/p99 over all chunks);
- throughput: S sessions each ``burst`` chunks as fast as possible; aggregate events/s received;
- replay: a session holding 10,000 events; time from WebSocket connect (``after=0``) to the last.

    .venv/bin/python bench/relay.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from common import (
    BENCH_AGENT,
    Home,
    OurDaemon,
    http_json,
    isolated_home,
    load_average,
    median,
    percentile,
    save_results,
    settle,
    start_our_daemon,
    stop_our_daemon,
    table,
)
from wsclient import RawWebSocket


async def connect(daemon: OurDaemon, sid: str, after: int) -> RawWebSocket:
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
    return await RawWebSocket.connect(host, int(port), f"/api/sessions/{sid}/ws?after={after}", daemon.token)


def stamp_of(frame: bytes) -> int:
    """The agent's ``_meta.t`` inside an agent_message_chunk frame, without parsing all of it."""
    at = frame.find(b'"t":', frame.find(b'"meta"'))
    end = at + 4
    while frame[end : end + 1].isdigit():
        end += 1
    return int(frame[at + 4 : end])


async def watch(daemon: OurDaemon, sid: str) -> RawWebSocket:
    """A live-only WebSocket on the session, past its greeting."""
    conn = await connect(daemon, sid, after=10**9)
    hello = (await conn.frames())[0]
    assert b'"hello"' in hello, hello
    return conn


class Latencies:
    """Per chunk, agent write → arrival at the client's socket, and → read by this client (ms)."""

    def __init__(self) -> None:
        self.socket: list[float] = []
        self.read: list[float] = []
        self.read_ns: list[int] = []


async def run_turns(daemon: OurDaemon, sids: list[str], command: str, lat: Latencies) -> None:
    """Connect a client to every session first (streams are watched by clients already there),
    then prompt them all at once; collect chunk latencies until every turn ends."""
    conns = await asyncio.gather(*(watch(daemon, sid) for sid in sids))
    turns = (run_turn(daemon, sid, conn, command, lat) for sid, conn in zip(sids, conns, strict=True))
    await asyncio.gather(*turns)


async def prompt(daemon: OurDaemon, sid: str, text: str) -> None:
    """``POST /api/sessions/{sid}/prompt`` (the one command surface), off this loop: the client's
    sockets keep their kernel receive timestamps meanwhile."""
    url = f"{daemon.url}/api/sessions/{sid}/prompt"
    await asyncio.to_thread(http_json, "POST", url, {"text": text}, daemon.token)


async def run_turn(daemon: OurDaemon, sid: str, conn: RawWebSocket, command: str, lat: Latencies) -> int:
    """Prompt over REST; collect chunk latencies from the WebSocket until the turn ends."""
    await prompt(daemon, sid, command)
    count = 0
    while True:
        frames = await asyncio.wait_for(conn.frames(), 120)
        for frame in frames:
            if b'"type":"agent_message_chunk"' in frame:
                sent = stamp_of(frame)
                lat.socket.append((conn.kernel_ns - sent) / 1e6)
                lat.read.append((conn.read_ns - sent) / 1e6)
                lat.read_ns.append(conn.read_ns)
                count += 1
            elif b'"type":"turn_ended"' in frame:
                conn.close()
                return count


def create_sessions(daemon: OurDaemon, cwd: str, count: int) -> list[str]:
    url = daemon.url + "/api/sessions"
    return [http_json("POST", url, {"cwd": cwd}, daemon.token)["id"] for _ in range(count)]


async def latency(
    daemon: OurDaemon, sids: list[str], chunks: int, interval_ms: int, runs: int = 3
) -> dict[str, Any]:
    """p50 and p99 of each of ``runs`` turns, then the median of each: one disk stall on this shared
    VM moves a single run's tail a lot (the range is kept to show it)."""
    p50s, p99s, read_p50s, read_p99s, events = [], [], [], [], 0
    for _ in range(runs):
        lat = Latencies()
        await run_turns(daemon, sids, f"pace {chunks} {interval_ms}", lat)
        p50s.append(median(lat.socket))
        p99s.append(percentile(lat.socket, 99))
        read_p50s.append(median(lat.read))
        read_p99s.append(percentile(lat.read, 99))
        events = len(lat.socket)
    return {
        "p50_ms": median(p50s),
        "p99_ms": median(p99s),
        "p99_range": [min(p99s), max(p99s)],
        "read_p50_ms": median(read_p50s),
        "read_p99_ms": median(read_p99s),
        "events": events,
        "runs": runs,
    }


async def throughput(daemon: OurDaemon, sids: list[str], chunks: int) -> float:
    lat = Latencies()
    conns = await asyncio.gather(*(watch(daemon, sid) for sid in sids))
    began = time.time_ns()
    await asyncio.gather(
        *(run_turn(daemon, sid, conn, f"burst {chunks}", lat) for sid, conn in zip(sids, conns, strict=True))
    )
    return len(lat.read_ns) / ((max(lat.read_ns) - began) / 1e9)


async def replay(daemon: OurDaemon, sid: str, runs: int) -> tuple[float, int]:
    times = []
    total = 0
    for _ in range(runs):
        began = time.perf_counter()
        conn = await connect(daemon, sid, after=0)
        frames = await conn.frames()
        last = json.loads(frames[0])["last_seq"]
        marker = f'"seq":{last},'.encode()
        total = len(frames) - 1
        while not any(marker in f for f in frames[-3:]):
            frames = await asyncio.wait_for(conn.frames(), 60)
            total += len(frames)
        times.append((time.perf_counter() - began) * 1000)
        conn.close()
    return median(times), total


def checkpoint_summary(home: Home) -> str:
    """What the daemon logged at its stop about the WAL checkpoints it ran (how many caught up,
    how many held commits): the latency tail depends on them."""
    lines = [
        line.split("checkpoints: ", 1)[1].strip()
        for log in home.root.rglob("daemon.log")
        for line in log.read_text().splitlines()
        if "checkpoints: " in line
    ]
    return lines[-1] if lines else "not logged"


async def measure(quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"latency": {}}
    chunks, interval = (100, 20) if quick else (300, 20)
    with isolated_home() as home:
        agent = f"{sys.executable} {BENCH_AGENT}"
        daemon = start_our_daemon(home, "--agent-cmd", agent, "--max-sessions", "200")
        try:
            cwd = str(home.workspace("relay"))
            sids = create_sessions(daemon, cwd, 50)
            await latency(daemon, sids[:1], 20, 5, runs=1)  # warm up
            for n in (1, 10, 50):
                result["latency"][str(n)] = await latency(daemon, sids[:n], chunks, interval)
            runs = [await throughput(daemon, sids[:10], 2000 if quick else 5000) for _ in range(5)]
            result["throughput_eps"] = median(runs)
            result["throughput_range"] = [min(runs), max(runs)]  # it varies a lot on a shared VM
            big = create_sessions(daemon, cwd, 1)[0]
            await throughput(daemon, [big], 9994)  # plus state/turn events: about 10,000 in all
            result["replay_ms"], result["replay_events"] = await replay(daemon, big, 5)
        finally:
            stop_our_daemon(home, daemon)
        result["checkpoints"] = checkpoint_summary(home)
    result["pace"] = {"chunks_per_session": chunks, "interval_ms": interval}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    idle = settle()
    load = load_average()
    r = asyncio.run(measure(quick))
    pace = r["pace"]
    r["cpu_idle_before"] = round(idle, 2)
    print(
        f"relay: agent write → WebSocket receipt, each session one chunk every {pace['interval_ms']} ms "
        f"(CPU {idle:.0%} idle before; load average {load:.1f} on 2 cores)"
    )
    rows = []
    for n, v in r["latency"].items():
        low, high = v["p99_range"]
        rows.append(
            [
                n,
                f"{v['p50_ms']:.2f}",
                f"{v['p99_ms']:.2f} ({low:.2f}-{high:.2f})",
                f"{v['read_p50_ms']:.2f} / {v['read_p99_ms']:.2f}",
                v["events"],
            ]
        )
    print(f"medians of {r['latency']['1']['runs']} runs each; receipt = arrival at the client's socket")
    header = ["sessions", "p50 (ms)", "p99 (ms) (range)", "read by the client p50 / p99", "events per run"]
    print(table(header, rows))
    print(
        f"aggregate throughput (10 sessions bursting): {r['throughput_eps']:,.0f} events/s, median of 5 "
        f"({r['throughput_range'][0]:,.0f}-{r['throughput_range'][1]:,.0f}; target ≥ 20,000)"
    )
    print(f"WAL checkpoints during the run: {r['checkpoints']}")
    print(f"replay of {r['replay_events']:,} events over a WebSocket: {r['replay_ms']:.0f} ms (target ≤ 200)")
    save_results("relay", r)


if __name__ == "__main__":
    main()

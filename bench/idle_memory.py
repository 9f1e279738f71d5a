"""Memory saved by letting idle agents sleep: 10 idle sessions with the real, pinned Qwen Code.

Starts an in-process daemon (with the fake OpenAI-compatible server from the tests, so nothing
leaves the machine), opens one session in each of N workspaces (one agent process per workspace,
the worst case), runs one short turn in each, then measures the resident memory of the daemon
and of every agent process group before and after the agents are put to sleep, and how long the
first prompt takes to wake a sleeping session.

    .venv/bin/python bench/idle_memory.py [--sessions 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import in_process_home, rss_kib

from qwen_daemon.config import Paths, Settings
from tests.support.daemon import running_daemon
from tests.support.fake_openai import text


def group_rss_kib(pgid: int) -> int:
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    total += rss_kib(int(entry.name))
            except OSError:
                continue
    return total


async def measure(count: int) -> None:
    with in_process_home() as (home, fake):
        root = home.root
        settings = Settings(paths=Paths.from_platform(), port=0, agent_idle_timeout=3600)
        async with running_daemon(settings) as api:
            ids = []
            for i in range(count):
                workspace = root / f"ws{i}"
                workspace.mkdir()
                ids.append((await api.create(workspace))["id"])
            for sid in ids:
                fake.queue(text("ok"))
                await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "hello"})
            for sid in ids:
                await api.wait_event(sid, lambda e: e["type"] == "turn_ended", timeout=120)
                await api.wait_state(sid, "idle")
            manager = api.daemon.manager
            daemon_awake = rss_kib(os.getpid())
            agents_awake = sum(group_rss_kib(h.pid) for h in manager.pool.hosts.values() if h.pid)
            # the pool judges idleness by its own settings: both get the short timeout
            manager.settings = manager.pool.settings = Settings(
                **{**settings.__dict__, "agent_idle_timeout": 0.001}
            )
            began = time.monotonic()
            slept = await manager.pool.sleep_idle_agents()
            sleep_s = time.monotonic() - began
            agents_asleep = sum(
                group_rss_kib(h.pid) for h in manager.pool.hosts.values() if h.pid and h.running
            )
            daemon_asleep = rss_kib(os.getpid())
            fake.queue(text("awake"))
            last = (await api.call("GET", f"/api/sessions/{ids[0]}")).body["last_seq"]
            began = time.monotonic()
            await api.call("POST", f"/api/sessions/{ids[0]}/prompt", {"text": "wake up"})
            await api.wait_event(
                ids[0], lambda e: e["seq"] > last and e["type"] == "agent_message_chunk", timeout=120
            )
            wake_s = time.monotonic() - began
    mib = 1024
    print(f"{count} idle sessions, one Qwen Code agent per workspace ({len(slept)} put to sleep)")
    print("| | agents awake | agents asleep | saved |")
    print("|---|---|---|---|")
    print(
        f"| agent RSS (MiB) | {agents_awake / mib:.0f} | {agents_asleep / mib:.0f} | "
        f"{(agents_awake - agents_asleep) / mib:.0f} |"
    )
    print(
        f"| daemon RSS, with bench harness (MiB) | {daemon_awake / mib:.0f} | {daemon_asleep / mib:.0f} | |"
    )
    print(
        f"stopping {len(slept)} agents: {sleep_s:.2f} s; first prompt to a sleeping session, "
        f"to its first reply chunk: {wake_s:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    asyncio.run(measure(parser.parse_args().sessions))


if __name__ == "__main__":
    main()

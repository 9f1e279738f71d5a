"""How responsive the daemon stays while its first agent starts, with the real, pinned Qwen Code.

The first agent start also loads the ACP SDK (0.4-1.7 s of imports). That import used to run on
the event loop, stalling every request and stream meanwhile (``qwen-daemon status`` right after a
start that warmed a spare reported the daemon as not responding). Each run is a fresh interpreter
(the SDK is imported once per process): an in-process daemon, one session created in a new
workspace, ``GET /health`` in a loop meanwhile; the worst answer time and the create time print.

    .venv/bin/python bench/first_agent.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import in_process_home, median

from qwen_daemon.config import Paths, Settings
from tests.support.daemon import running_daemon


async def once() -> None:
    import tornado.httpclient

    with in_process_home() as (home, _fake):
        root = home.root
        async with running_daemon(Settings(paths=Paths.from_platform(), port=0, spare_agents=0)) as api:
            assert "acp" not in sys.modules, "the SDK must not be loaded before the first agent"
            client = tornado.httpclient.AsyncHTTPClient()
            workspace = root / "ws"
            workspace.mkdir()
            began = time.monotonic()
            creating = asyncio.ensure_future(api.create(workspace))
            worst = 0.0
            while not creating.done():
                asked = time.monotonic()
                await client.fetch(api.base + "/health")
                worst = max(worst, time.monotonic() - asked)
            await creating
            print(f"{worst * 1000:.1f} {(time.monotonic() - began) * 1000:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        asyncio.run(once())
        return
    stalls, creates = [], []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, __file__, "--once"], capture_output=True, text=True, check=True, timeout=300
        ).stdout.split()
        stalls.append(float(out[0]))
        creates.append(float(out[1]))
    print(f"first agent (Qwen Code) start, {args.runs} fresh daemons:")
    print(f"  worst /health answer meanwhile: median {median(stalls):.0f} ms, max {max(stalls):.0f} ms")
    print(f"  session created in: median {median(creates):.0f} ms")


if __name__ == "__main__":
    main()

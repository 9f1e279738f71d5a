#!/usr/bin/env python3
"""The smallest ACP agent that a daemon can start: stdlib only, so it starts in milliseconds.

It answers ``initialize`` and ``session/new``, ends every prompt at once, and (like a real agent
running a tool) keeps a child process, ``sleep 300``, in its process group, so tests can count
stray processes over many quick start/stop cycles.
"""

from __future__ import annotations

import json
import subprocess
import sys


def main() -> None:
    subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    count = 0
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:
            continue
        method = message.get("method")
        result: dict[str, object]
        if method == "initialize":
            result = {"protocolVersion": 1, "agentCapabilities": {}}
        elif method == "session/new":
            count += 1
            result = {"sessionId": f"tiny-{count}"}
        else:
            result = {"stopReason": "end_turn"}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

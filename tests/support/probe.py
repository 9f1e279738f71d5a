"""Running the CLI, waiting on other processes and asking a daemon over HTTP: for tests that run
daemons as subprocesses (under a supervisor, or with a passed socket) rather than in-process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``qwen-daemon ARGS`` as a user runs it, in the test's (isolated) environment."""
    return subprocess.run(
        [sys.executable, "-m", "qwen_daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_daemon(*extra: str) -> subprocess.CompletedProcess[str]:
    """``qwen-daemon start`` on any free port with the scripted fake agent; asserts it started."""
    from tests.support.daemon import FAKE_AGENT

    res = cli("start", "--port", "0", "--agent-cmd", f"{sys.executable} {FAKE_AGENT}", *extra, timeout=60)
    assert res.returncode == 0, res.stderr
    return res


def poll(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Return the first truthy ``predicate()``; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``cond`` on the running event loop until it holds, failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.01)


def get_json(url: str, timeout: float = 5.0, token: str | None = None, body: object = None) -> Any:
    """GET ``url`` (POST when there is a ``body``) and decode the JSON answer; no proxies."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with _NO_PROXY.open(req, timeout=timeout) as resp:
        return json.load(resp)


def marked_processes(mark: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries ``mark`` (psutil: Linux and macOS)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["environ", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        environ = "\0".join(f"{k}={v}" for k, v in (proc.info["environ"] or {}).items())
        if mark in environ:
            found.append(proc.pid)
    return found

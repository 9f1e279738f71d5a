"""`start --foreground` under a fake systemd: a real AF_UNIX datagram notify socket.

Checks the supervised contract: READY=1 only once /health answers, STATUS=, WATCHDOG=1 pings at
half of WATCHDOG_USEC, STOPPING=1 on SIGTERM, exit code 0 and no discovery file left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery

pytestmark = pytest.mark.usefixtures("daemon_reaper")

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NotifySocket:
    """The supervisor's end: collects every datagram the daemon sends."""

    def __init__(self) -> None:
        self.name = f"qwen-daemon-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)  # abstract namespace: no path-length limits, no files
        self.messages: list[str] = []

    @property
    def env_value(self) -> str:
        return "@" + self.name

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while not predicate(self.messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; got {self.messages!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.extend(data.decode("utf-8").split("\n"))
        return self.messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    ns = NotifySocket()
    yield ns
    ns.close()


def _count(item: str) -> Callable[[list[str]], int]:
    return lambda msgs: sum(1 for m in msgs if m == item)


def _run_foreground(tmp_path: Path, notify: NotifySocket, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "foreground.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qwen_daemon",
                "start",
                "--foreground",
                "--port",
                "0",
                "--agent-cmd",
                "python3 -c pass",
            ],
            env={**os.environ, "NOTIFY_SOCKET": notify.env_value, **env},
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return proc, log


def test_ready_watchdog_stopping_and_clean_exit(tmp_path: Path, paths: Paths, notify: NotifySocket) -> None:
    proc, log = _run_foreground(tmp_path, notify, WATCHDOG_USEC="400000")
    try:
        notify.wait_for(lambda m: "READY=1" in m)
        info = read_discovery(paths)
        assert info is not None, "READY=1 before the discovery file was written"
        assert info.pid == proc.pid
        with _NO_PROXY.open(info.url + "health", timeout=5) as resp:
            assert json.load(resp)["status"] == "ok"
        status = [m for m in notify.messages if m.startswith("STATUS=")]
        assert status == [f"STATUS=Listening on {info.url}"]
        assert f"MAINPID={proc.pid}" in notify.messages

        notify.wait_for(lambda m: _count("WATCHDOG=1")(m) >= 2, timeout=10)
        assert "STOPPING=1" not in notify.messages

        proc.send_signal(signal.SIGTERM)
        notify.wait_for(lambda m: "STOPPING=1" in m)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not paths.discovery_file.exists()
    assert not paths.pid_file.exists()
    output = log.read_text(encoding="utf-8")
    assert paths.token_file.read_text(encoding="utf-8").strip() not in output  # token never logged
    assert "Traceback" not in output


def test_watchdog_only_for_our_pid(tmp_path: Path, paths: Paths, notify: NotifySocket) -> None:
    # WATCHDOG_PID names another process: the pings are not meant for us.
    proc, _log = _run_foreground(tmp_path, notify, WATCHDOG_USEC="100000", WATCHDOG_PID="1")
    try:
        notify.wait_for(lambda m: "READY=1" in m)
        proc.send_signal(signal.SIGINT)
        notify.wait_for(lambda m: "STOPPING=1" in m)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "WATCHDOG=1" not in notify.messages
    assert not paths.discovery_file.exists()

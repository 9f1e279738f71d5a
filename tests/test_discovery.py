"""The runtime discovery file: written private, validated on read, stale files removed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from dataclasses import asdict, replace
from typing import Any

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import (
    DiscoveryInfo,
    looks_like_daemon,
    make_url,
    pid_alive,
    process_cmdline,
    read_discovery,
    remove_discovery,
    write_discovery,
)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _info(**overrides: Any) -> DiscoveryInfo:
    base = DiscoveryInfo(
        pid=os.getpid(),
        host="127.0.0.1",
        port=7861,
        url="http://127.0.0.1:7861/",
        instance_id=uuid.uuid4().hex,
        version="0.1.0",
        started_at="2025-01-01T00:00:00Z",
    )
    return replace(base, **overrides)


def test_round_trip_and_permissions(paths: Paths) -> None:
    info = _info()
    write_discovery(paths, info)
    assert stat.S_IMODE(paths.discovery_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.runtime_dir.stat().st_mode) == 0o700
    assert read_discovery(paths) == info
    assert "token" not in paths.discovery_file.read_text(encoding="utf-8")


def test_missing_file(paths: Paths) -> None:
    assert read_discovery(paths) is None


def test_dead_pid_is_stale_and_removed(paths: Paths) -> None:
    write_discovery(paths, _info(pid=_dead_pid()))
    assert read_discovery(paths) is None
    assert not paths.discovery_file.exists()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(pid="123"),
        lambda d: d.update(pid=True),
        lambda d: d.update(pid=-4),
        lambda d: d.update(port=0),
        lambda d: d.update(port=70000),
        lambda d: d.update(port=7861.5),
        lambda d: d.pop("host"),
        lambda d: d.update(host=""),
        lambda d: d.update(url="ftp://x/"),
        lambda d: d.update(instance_id="not-hex"),
        lambda d: d.update(version=3),
        lambda d: d.update(started_at="yesterday"),
    ],
)
def test_invalid_fields_are_stale(paths: Paths, mutate: Any) -> None:
    data = asdict(_info())
    mutate(data)
    paths.runtime_dir.mkdir(parents=True, exist_ok=True)
    paths.discovery_file.write_text(json.dumps(data), encoding="utf-8")
    assert read_discovery(paths) is None
    assert not paths.discovery_file.exists()


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '"x"', "\xff"])
def test_unparseable_files_are_stale(paths: Paths, text: str) -> None:
    paths.runtime_dir.mkdir(parents=True, exist_ok=True)
    paths.discovery_file.write_bytes(text.encode("latin-1"))
    assert read_discovery(paths) is None


def test_remove_only_own_instance(paths: Paths) -> None:
    info = _info()
    write_discovery(paths, info)
    remove_discovery(paths, instance_id=uuid.uuid4().hex)  # someone else's id: kept
    assert read_discovery(paths) == info
    remove_discovery(paths, instance_id=info.instance_id)
    assert not paths.discovery_file.exists()
    remove_discovery(paths)  # absent: no error


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(_dead_pid())
    assert not pid_alive(0)
    assert not pid_alive(-1)


def test_zombie_counts_as_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    # Until we reap it, the child is a zombie: kill(pid, 0) succeeds, yet it is gone.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    try:
        assert not pid_alive(proc.pid)  # psutil: the same check with or without procfs
    finally:
        proc.wait()


def test_process_cmdline_and_looks_like_daemon() -> None:
    """The command line comes from psutil (procfs on Linux, sysctl on macOS); the PID-reuse guard
    reads it: a process running something else is not taken for the daemon, a gone one neither."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "qwen-daemon"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        cmdline = process_cmdline(proc.pid)
        assert cmdline is not None and cmdline.endswith("time.sleep(30) qwen-daemon"), cmdline
        assert looks_like_daemon(proc.pid)
        assert not looks_like_daemon(other.pid)
    finally:
        for p in (proc, other):
            p.kill()
            p.wait()
    assert process_cmdline(_dead_pid()) is None
    assert not looks_like_daemon(proc.pid)


def test_make_url() -> None:
    assert make_url("127.0.0.1", 80) == "http://127.0.0.1:80/"
    assert make_url("::1", 8) == "http://[::1]:8/"
    assert make_url("0.0.0.0", 9) == "http://127.0.0.1:9/"
    assert make_url("::", 9) == "http://[::1]:9/"
    assert make_url("localhost", 1) == "http://localhost:1/"

"""The session lifecycle from the command line, against a real background daemon: the retired
idle_timeout is named once and ignored, rename / archive / unarchive / reopen / sessions --archived.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from tests.support.probe import cli, get_json, poll, start_daemon

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("daemon_reaper")]

NOTICE = "idle_timeout no longer does anything: sessions stay until you delete or archive them"


def api(paths: Paths, path: str, body: object = None) -> Any:
    info = read_discovery(paths)
    assert info is not None
    token = paths.token_file.read_text().strip()
    return get_json(info.url + path, token=token, body=body)


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    res = cli(*args)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res


def listed(*flags: str) -> list[dict[str, Any]]:
    return list(json.loads(ok("sessions", "--json", *flags).stdout))


def test_idle_timeout_is_named_once_and_never_stops_the_daemon(paths: Paths) -> None:
    """An old config and an old start script both still say idle_timeout: one warning line on the
    terminal, one in the daemon's log, and the daemon runs."""
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("idle_timeout = 1800\n", encoding="utf-8")
    res = start_daemon("--idle-timeout", "15")
    try:
        assert res.stderr.count(NOTICE) == 1, res.stderr
        assert ok("status").stdout.startswith("qwen-daemon")
        assert paths.log_file.read_text(encoding="utf-8").count(NOTICE) == 1
    finally:
        ok("stop")
    paths.config_file.write_text('idle_timeout = "not even a number"\n', encoding="utf-8")
    res = start_daemon()
    try:
        assert res.stderr.count(NOTICE) == 1, res.stderr
    finally:
        ok("stop")


def test_rename_archive_unarchive_and_reopen(paths: Paths, tmp_path: Path) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()
    start_daemon()
    try:
        sid = json.loads(ok("new", str(workspace), "--json").stdout)["id"]
        other = json.loads(ok("new", str(workspace), "--json").stdout)["id"]

        assert ok("rename", sid, "  my   task ").stdout.strip() == f"{sid}  title=my task"
        too_long = cli("rename", sid, "x" * 201)
        assert too_long.returncode == 1 and "longer than 200" in too_long.stderr

        assert ok("archive", sid).stdout.strip() == f"{sid}  archived"
        assert [s["id"] for s in listed()] == [other]
        [archived] = listed("--archived")
        assert archived["id"] == sid and archived["archived"] is True and archived["title"] == "my task"
        assert sid in ok("sessions", "--archived").stdout and sid not in ok("sessions").stdout
        assert ok("unarchive", sid).stdout.strip() == f"{sid}  unarchived"
        assert [s["id"] for s in listed()] == [sid, other] and listed("--archived") == []
        assert ok("sessions", "--archived").stdout.strip() == "no archived sessions"

        assert ok("reopen", sid).stdout.strip() == f"{sid}  state=idle"  # open already: unchanged
        for _ in range(3):  # three fast crashes: the agent is crash-looping, the session failed
            state = api(paths, f"api/sessions/{sid}")["state"]
            if state == "failed":
                break
            seen = api(paths, f"api/sessions/{sid}")["last_seq"]
            api(paths, f"api/sessions/{sid}/prompt", {"text": "crash"})

            def ended_after(s: int = seen) -> bool:
                return any(
                    e["seq"] > s and e["type"] == "turn_ended"
                    for e in api(paths, f"api/sessions/{sid}/events")["events"]
                )

            poll(ended_after, 30, "the crashed turn to end")
        poll(lambda: api(paths, f"api/sessions/{sid}")["state"] == "failed", 30, "the session to fail")
        refused = cli("reopen", "nope")
        assert refused.returncode == 1 and "no session nope" in refused.stderr
        assert ok("reopen", sid).stdout.strip() == f"{sid}  state=idle"
        detail = api(paths, f"api/sessions/{sid}")
        assert detail["state"] == "idle" and detail["failure"] is None
        api(paths, f"api/sessions/{sid}/prompt", {"text": "say alive"})
        poll(
            lambda: any(
                e["type"] == "agent_message_chunk" and "alive" in e["text"]
                for e in api(paths, f"api/sessions/{sid}/events")["events"]
            ),
            30,
            "the reopened session to answer",
        )
    finally:
        ok("stop")

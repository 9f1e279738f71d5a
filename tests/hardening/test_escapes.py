"""Finding 5 of issue 14: "Terminal escapes (low). Titles (and folder names used as titles) keep
ESC, BEL, NUL; ``qwen-daemon sessions`` prints them raw."

Why these fail on the old code: ``validate_title`` only collapsed whitespace, so a title with ESC,
BEL or NUL was stored (201/200) and a folder's name became the title as it was; ``sessions``
printed titles and working directories raw, ``new`` printed the folder raw, ``agents`` printed an
agent's command line raw, and a session id typed with a control character ended in a traceback.

The listing commands run against a real daemon through a real pseudo-terminal (``pty``), as a
user's terminal would see them; the database holds a title as an old daemon stored it (raw), which
the API no longer lets anyone set.
"""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from qwen_daemon.terminal import printable
from tests.support.daemon import FAKE_AGENT, Api, serve
from tests.support.probe import cli, get_json, start_daemon

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("daemon_reaper")]

#: what a terminal obeys: ESC (CSI, OSC), BEL, NUL, C1 CSI, a bidi override
CONTROLS = ["\x1b", "\x07", "\x00", "\x9b", "\u202e"]
#: a title that recolours, retitles the terminal window and rings
HOSTILE = "\x1b[31mred\x1b]0;pwned\x07\x00end"
#: the same as bytes a terminal would see
RAW = [c.encode("utf-8") for c in CONTROLS]


async def test_the_api_refuses_control_characters_in_titles(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws, title="kept"))["id"]
        for char in CONTROLS:
            name = f"U+{ord(char):04X}"
            created = await api.call("POST", "/api/sessions", {"cwd": str(ws), "title": f"a{char}b"})
            assert created.status == 400 and name in created.body["error"]["message"], created.body
            patched = await api.call("PATCH", f"/api/sessions/{sid}", {"title": f"a{char}b"})
            assert patched.status == 400 and name in patched.body["error"]["message"], patched.body
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["title"] == "kept"
        assert len((await api.call("GET", "/api/sessions")).body["sessions"]) == 1
        # tabs and line breaks are still only whitespace, collapsed as before
        patched = await api.call("PATCH", f"/api/sessions/{sid}", {"title": " a\tnew\r\nname "})
        assert patched.status == 200 and patched.body["title"] == "a new name"

    await serve(tmp_path, body)


async def test_a_folder_name_with_controls_becomes_an_escaped_title(tmp_path: Path) -> None:
    """The user cannot rename their folder from here, so it is escaped rather than refused."""

    async def body(api: Api, ws: Path) -> None:
        folder = ws / f"proj{HOSTILE.replace(chr(0), '')}\u202ex"  # a name cannot hold NUL
        folder.mkdir()
        created = await api.call("POST", "/api/sessions", {"cwd": str(folder)})
        assert created.status == 201, created.body
        title = created.body["title"]
        assert title == printable(folder.name) and "\\x1b[31m" in title and "\\u202e" in title
        assert not any(c in title for c in CONTROLS)
        assert created.body["cwd"] == str(folder)  # the path itself is the real one

    await serve(tmp_path, body)


def through_pty(*args: str, timeout: float = 60) -> bytes:
    """``qwen-daemon ARGS`` with stdout and stderr on a pseudo-terminal; all it wrote there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwen_daemon", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal (Linux)
                break
            if not chunk:
                break
            out += chunk
        else:
            raise AssertionError(f"qwen-daemon {' '.join(args)} did not finish in {timeout} s")
    finally:
        os.close(master)
        proc.wait(timeout=30)
    return out


def assert_inert(out: bytes, command: str) -> None:
    found = [c for c in RAW if c in out]
    assert not found, f"`qwen-daemon {command}` wrote {found} raw to the terminal: {out!r}"


def test_listing_commands_print_no_raw_control_characters_to_a_terminal(paths: Paths, tmp_path: Path) -> None:
    folder = tmp_path / "ws" / "proj\x1b]0;folder\x07\u202e"
    folder.mkdir(parents=True)
    paths.config_dir.mkdir(parents=True, mode=0o700)
    paths.config_file.write_text(
        f'[agents.odd]\ncommand = ["{sys.executable}", "{FAKE_AGENT}", "\\u001b]0;agent\\u0007"]\n',
        encoding="utf-8",
    )
    start_daemon()
    info = read_discovery(paths)
    assert info is not None
    token = paths.token_file.read_text(encoding="utf-8").strip()
    created = get_json(info.url + "api/sessions", token=token, body={"cwd": str(folder)})
    sid = created["id"]
    # a title as the old daemon stored it: raw (the API now refuses it)
    assert cli("stop").returncode == 0
    with sqlite3.connect(paths.database) as db:
        db.execute("UPDATE sessions SET title = ? WHERE id = ?", (HOSTILE + "\x9b\u202e", sid))
    db.close()
    start_daemon()
    listed = cli("sessions", "--json")
    assert HOSTILE in json.loads(listed.stdout)[0]["title"]  # it is really there to print

    commands = [
        ["sessions"],
        ["status"],
        ["agents"],
        ["pending", sid],
        ["new", str(folder)],
        ["new", str(folder), "--title", HOSTILE.replace("\x00", "")],  # the daemon's 400
        ["rename", sid, "\x1b]0;x\x07"],  # the daemon's 400
        ["pending", "\x1b[2J\x07"],  # a control character in the URL: refused by the client
    ]
    outputs = {}
    for args in commands:
        out = through_pty(*args)
        assert b"Traceback" not in out, out
        assert_inert(out, " ".join(printable(a) for a in args))
        outputs[args[0] + " " + (args[1] if len(args) > 1 else "")] = out
    # what was there is shown, escaped: the user sees that something was
    assert b"\\x1b[31mred" in outputs["sessions "] and b"\\x1b]0;folder\\x07" in outputs["sessions "]
    assert b"\\x1b]0;agent\\x07" in outputs["agents "]
    assert b"U+001B" in through_pty("rename", sid, "\x1b]0;x\x07")

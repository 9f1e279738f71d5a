"""``qwen-daemon pair`` and ``qwen-daemon devices`` as a user runs them, against a real daemon
started by the CLI (each test has its own HOME; ``daemon_reaper`` kills what a test leaves)."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from http.cookies import SimpleCookie

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from tests.support.probe import cli, start_daemon

pytestmark = [pytest.mark.usefixtures("daemon_reaper"), pytest.mark.timeout(120)]

PHONE_UA = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/131.0.0.0 Mobile Safari/537.36"


def get(url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    """One GET, redirects not followed (urllib would follow the 303 and lose the cookie)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path, headers=headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def test_pair_logs_a_browser_in_and_devices_lists_renames_and_revokes_it(paths: Paths) -> None:
    start_daemon()
    try:
        info = read_discovery(paths)
        assert info is not None
        paired = cli("pair", "--json")
        assert paired.returncode == 0, paired.stderr
        doc = json.loads(paired.stdout)
        assert set(doc) == {"url", "code", "expires_at"}
        assert doc["url"] == f"{info.url}pair?code={doc['code']}"

        resp = get(doc["url"], {"User-Agent": PHONE_UA})
        assert resp.status == 303 and resp.getheader("Location") == "/"
        morsel = next(iter(SimpleCookie(resp.getheader("Set-Cookie")).values()))
        cookie = {"Cookie": f"{morsel.key}={morsel.value}"}
        assert get(info.url + "api/sessions", cookie).status == 200
        assert get(doc["url"], {}).status == 410  # once

        listed = cli("devices")
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.splitlines()
        assert header.split() == ["ID", "LAST", "SEEN", "ADDED", "NAME"]
        device_id = row.split()[0]
        assert row.endswith("Chrome on Android")
        as_json = json.loads(cli("devices", "--json").stdout)
        assert [d["id"] for d in as_json] == [device_id] and as_json[0]["current"] is False

        renamed = cli("devices", "rename", device_id, "Pixel in the kitchen")
        assert renamed.returncode == 0 and "name=Pixel in the kitchen" in renamed.stdout
        refused = cli("devices", "rename", device_id, "red\x1b[31mtext")
        assert refused.returncode == 1 and "control character U+001B" in refused.stderr
        assert "\x1b" not in refused.stdout + refused.stderr
        assert cli("devices").stdout.splitlines()[1].endswith("Pixel in the kitchen")

        revoked = cli("devices", "revoke", device_id)
        assert revoked.returncode == 0 and "logged out" in revoked.stdout
        assert get(info.url + "api/sessions", cookie).status == 401
        again = cli("devices", "revoke", device_id)
        assert again.returncode == 1 and "no device" in again.stderr
        assert "no devices" in cli("devices").stdout

        shown = cli("pair")
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        qr = [line for line in lines if "█" in line or "▀" in line or "▄" in line]
        assert len(qr) >= 12 and len({len(line) for line in qr}) == 1  # a square of half blocks
        assert any(line.startswith(f"{info.url}pair?code=") for line in lines)
        assert "\x1b" not in shown.stdout  # no colour escapes: it survives a pipe and the guard
    finally:
        assert cli("stop").returncode == 0
    down = cli("devices")
    assert down.returncode == 3 and "not running" in down.stderr
    assert cli("pair").returncode == 3

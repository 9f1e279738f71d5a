"""Review of issue 15, "Revocation that does not stick": logging a device out (or every device,
with ``token rotate``) must leave it no way back in.

Found:

- A pairing code outlived the credential that made it. A stolen phone that is about to be revoked
  (or simply keeps one ready: a code lasts 120 s, five may be live) mints a code with
  ``POST /api/pairing``; once revoked it opens ``/pair?code=`` and is a brand-new device, again
  and again. ``token rotate`` did not retire live codes either.
- ``qwen-daemon token rotate`` while the daemon was stopped only replaced the token file: every
  device stayed in the database, so at the next start each old cookie logged in as before, although
  the README promises that a new token logs every device out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.support.daemon import Api, serve
from tests.test_devices import as_browser, fetch, pair, redeem, token_login

pytestmark = pytest.mark.timeout(60)


async def mint_code(api: Api, cookie: str | None) -> str:
    """The ``/pair?code=`` path of a code made by the device with ``cookie`` (None: the token)."""
    if cookie is None:
        made = await api.call("POST", "/api/pairing", {})
        status, answer = made.status, made.body
    else:
        headers = as_browser(api, cookie, changing=True)
        resp = await fetch(api, "/api/pairing", method="POST", body=b"{}", headers=headers)
        status, answer = resp.code, json.loads(resp.body)
    assert status == 201, answer
    url = urllib.parse.urlsplit(answer["url"])
    return f"{url.path}?{url.query}"


async def test_a_revoked_device_cannot_come_back_with_a_code_it_minted(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        thief, _ = await pair(api)
        spare = await mint_code(api, thief)  # minted while still logged in
        bearer_code = await mint_code(api, None)  # the user's own, made from the CLI meanwhile
        thief_id = next(d["id"] for d in (await api.call("GET", "/api/devices")).body["devices"])
        assert (await api.call("DELETE", f"/api/devices/{thief_id}")).status == 204
        spare_code = urllib.parse.parse_qs(urllib.parse.urlsplit(spare).query)["code"][0]
        for again in (await fetch(api, spare), await redeem(api, spare_code, form_anyway=True)):
            assert again.code == 410, (again.code, again.headers.get("Location"))
            assert "Set-Cookie" not in again.headers
        assert (await api.call("GET", "/api/devices")).body["devices"] == []
        # the user's code, made by someone else, still works
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(bearer_code).query)["code"][0]
        assert (await redeem(api, code)).code == 303

    await serve(tmp_path, body)


async def test_token_rotation_retires_live_pairing_codes(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        phone, _ = await pair(api)
        codes = [await mint_code(api, phone), await mint_code(api, None)]
        assert (await api.call("POST", "/api/token/rotate", {})).status == 200
        for path in codes:
            resp = await fetch(api, path)
            assert resp.code == 410 and "Set-Cookie" not in resp.headers, resp.code
        assert (await api.call("GET", "/api/devices")).body["devices"] == []

    await serve(tmp_path, body)


async def test_token_rotate_while_stopped_logs_every_device_out(tmp_path: Path) -> None:
    secrets: list[str] = []

    async def log_in(api: Api, ws: Path) -> None:
        cookie = await token_login(api)
        secrets.append(cookie.split("=", 1)[1])
        assert (await fetch(api, "/api/devices", headers=as_browser(api, cookie))).code == 200

    await serve(tmp_path, log_in)
    rotated = subprocess.run(  # noqa: ASYNC221 (no daemon runs now: the CLI works on the files)
        [sys.executable, "-m", "qwen_daemon", "token", "rotate"], capture_output=True, text=True, timeout=30
    )
    assert rotated.returncode == 0, rotated.stderr

    async def come_back(api: Api, ws: Path) -> None:
        # the same browser after the restart (the tests' port changes; a real daemon's does not)
        cookie = f"qwen_daemon_{api.daemon.port}={secrets[0]}"
        resp = await fetch(api, "/api/devices", headers=as_browser(api, cookie))
        assert resp.code == 401, resp.code
        assert (await api.call("GET", "/api/devices")).body["devices"] == []

    await serve(tmp_path, come_back)

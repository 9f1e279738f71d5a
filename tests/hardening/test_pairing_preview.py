"""Review of issue 15, "A link preview spends the pairing code and gets the device cookie".

Found: ``GET /pair?code=`` logged in whoever fetched it. People move a pairing URL to their phone
by pasting it into a chat or mailing it to themselves, and the chat's link preview (Slack's,
Discord's, Telegram's servers once ``public_url`` is a tunnel; iMessage's, which fetches from the
sender's own machine, on loopback), a mail scanner or a QR app's preview fetches every URL it sees
with a plain GET. That fetch became the device: it got the login cookie — full control of the
machine — in its answer, and the phone that scanned the code got "already used".

Now the GET only shows a page asking to log this browser in; its button POSTs the code, and only
that spends it. A preview bot never presses buttons.
"""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path

import pytest

from tests.support.daemon import Api, serve
from tests.test_devices import PHONE_UA, fetch

pytestmark = pytest.mark.timeout(60)

BOTS = (
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "TelegramBot (like TwitterBot)",
    "facebookexternalhit/1.1",
    "python-requests/2.32.3",
)


async def test_a_link_preview_does_not_spend_the_pairing_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets: list[str] = []

    async def body(api: Api, ws: Path) -> None:
        made = (await api.call("POST", "/api/pairing", {})).body
        path = f"/pair?{urllib.parse.urlsplit(made['url']).query}"
        for bot in BOTS:
            preview = await fetch(api, path, headers={"User-Agent": bot})
            assert preview.code == 200 and "Set-Cookie" not in preview.headers, (bot, preview.code)
        assert api.daemon.devices.list() == []
        page = (await fetch(api, path, headers={"User-Agent": PHONE_UA})).body.decode()
        assert 'method="post"' in page and 'action="/pair"' in page and made["code"] in page
        # a forged cross-site POST does not spend it either
        forged = await fetch(
            api,
            "/pair",
            method="POST",
            body=urllib.parse.urlencode({"code": made["code"]}),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": "https://evil.example",
                "Sec-Fetch-Site": "cross-site",
            },
        )
        assert forged.code == 403 and "Set-Cookie" not in forged.headers
        sandboxed = await fetch(  # a sandboxed frame's form says Origin: null, and cross-site
            api,
            "/pair",
            method="POST",
            body=urllib.parse.urlencode({"code": made["code"]}),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": "null",
                "Sec-Fetch-Site": "cross-site",
            },
        )
        assert sandboxed.code == 403 and "Set-Cookie" not in sandboxed.headers
        # the phone's button: the code is spent now, and the cookie is the phone's
        pressed = await fetch(
            api,
            "/pair",
            method="POST",
            body=urllib.parse.urlencode({"code": made["code"]}),
            headers={
                "User-Agent": PHONE_UA,
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": "null",  # what a form on a no-referrer page sends
                "Sec-Fetch-Site": "same-origin",
            },
        )
        assert pressed.code == 303 and pressed.headers["Location"] == "/", pressed.code
        assert "Set-Cookie" in pressed.headers
        secrets.extend([made["code"], pressed.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]])
        assert [d.name for d in api.daemon.devices.list()] == ["Chrome on Android"]
        assert (await fetch(api, path)).code == 410

    with caplog.at_level(logging.DEBUG):
        await serve(tmp_path, body)
    assert "POST /pair" in caplog.text  # the access log was captured: neither secret is in it
    assert secrets and not any(secret in caplog.text for secret in secrets)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/pair?code=%ff", None, 400),
        ("GET", "/pair?code=%00", None, 404),
        ("GET", "/pair?code=" + "A" * 5000, None, 404),
        ("GET", "/pair?code=a&code=b", None, 404),
        ("POST", "/pair", b"", 404),
        ("POST", "/pair", b"code=%ff%fe", 404),
        ("POST", "/pair", b"\xff\xfe\x00binary", 404),
        ("POST", "/pair", b"a=1&b=2&c=3&d=4&e=5&f=6&code=x", 404),
        ("POST", "/pair", b"code=" + b"x" * 2000, 413),
        ("HEAD", "/pair?code=x", None, 405),
        ("PUT", "/pair", b"code=x", 405),
    ],
)
async def test_hostile_pairing_requests_are_answered_never_a_500(
    tmp_path: Path, method: str, path: str, body: bytes | None, status: int
) -> None:
    async def check(api: Api, ws: Path) -> None:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        resp = await fetch(api, path, method=method, body=body, headers=headers)
        assert resp.code == status, (resp.code, resp.body[:200] if resp.body else b"")
        assert "Set-Cookie" not in resp.headers

    await serve(tmp_path, check)

"""Devices and pairing against a real daemon: each login is a device with its own cookie, pairing
codes work once and expire, wrong codes are throttled, revocation and token rotation end a
device's cookie and close its WebSockets with 4001, and ``public_url`` is our host and origin."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.testing
import tornado.websocket

from qwen_daemon.devices import (
    MAX_LIVE_CODES,
    SEEN_EVERY,
    DeviceRegistry,
    PairingCodes,
    device_name,
)
from qwen_daemon.server.throttle import MAX_FAILURES
from qwen_daemon.sessions.migrations import MIGRATIONS
from tests.support.daemon import Api, WsClient, serve
from tests.support.probe import until
from tests.support.proxy import ReverseProxy

pytestmark = pytest.mark.timeout(60)

PHONE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)


async def fetch(api: Api, path: str, **kwargs: Any) -> tornado.httpclient.HTTPResponse:
    """A raw request: no bearer token, no redirects followed."""
    kwargs.setdefault("follow_redirects", False)
    if kwargs.get("method") in ("POST", "PATCH") and "body" not in kwargs:
        kwargs["body"] = b""
    kwargs.setdefault("allow_nonstandard_methods", True)
    return await api.http.fetch(api.base + path, raise_error=False, **kwargs)


def cookie_of(resp: tornado.httpclient.HTTPResponse) -> tuple[str, Any]:
    """(``name=value`` to send back, the morsel) of the cookie an answer sets."""
    morsel = next(iter(SimpleCookie(resp.headers["Set-Cookie"]).values()))
    return f"{morsel.key}={morsel.value}", morsel


async def token_login(api: Api, user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0") -> str:
    resp = await fetch(api, f"/?token={api.daemon.token}", headers={"User-Agent": user_agent})
    assert resp.code == 302, resp.code
    return cookie_of(resp)[0]


async def redeem(
    api: Api, code: str, headers: dict[str, str] | None = None, form_anyway: bool = False
) -> tornado.httpclient.HTTPResponse:
    """What a browser does with a pairing URL: open the page, press its button (the POST). The page
    refusing the code is the answer, unless ``form_anyway`` (a POST made without the page)."""
    headers = headers or {}
    page = await fetch(api, f"/pair?code={code}", headers=headers)
    if page.code != 200 and not form_anyway:
        return page
    assert "Set-Cookie" not in page.headers
    assert page.code != 200 or f'value="{code}"' in page.body.decode()
    form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    body = urllib.parse.urlencode({"code": code})
    return await fetch(api, "/pair", method="POST", body=body, headers=form)


async def pair(api: Api, user_agent: str = PHONE_UA) -> tuple[str, dict[str, Any]]:
    """A code from the API, redeemed: (the new device's cookie, the pairing answer)."""
    made = await api.call("POST", "/api/pairing", {})
    assert made.status == 201, made.body
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(made.body["url"]).query)
    resp = await redeem(api, query["code"][0], {"User-Agent": user_agent})
    assert resp.code == 303 and resp.headers["Location"] == "/", resp.code
    return cookie_of(resp)[0], made.body


def as_browser(api: Api, cookie: str, changing: bool = False) -> dict[str, str]:
    """Headers of a request our own page makes with ``cookie``."""
    headers = {"Cookie": cookie}
    if changing:
        headers.update({"Origin": api.base, "X-Qwen-Daemon": "1", "Content-Type": "application/json"})
    return headers


async def cookie_ws(api: Api, cookie: str, session_id: str) -> WsClient:
    request = tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{api.daemon.port}/api/sessions/{session_id}/ws",
        headers={"Cookie": cookie, "Origin": api.base},
    )
    client = WsClient(await tornado.websocket.websocket_connect(request))
    api.clients.append(client)
    return client


async def drain(client: WsClient) -> None:
    while await client.recv() is not None:
        pass


async def test_each_login_is_a_device_listed_with_current(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        laptop = await token_login(api)
        again = await fetch(api, f"/?token={api.daemon.token}", headers={"Cookie": laptop})
        assert again.code == 302 and "Set-Cookie" not in again.headers  # the same device, no duplicate
        phone, _ = await pair(api)
        listed = await fetch(api, "/api/devices", headers=as_browser(api, phone))
        assert listed.code == 200
        devices = json.loads(listed.body)["devices"]
        assert [d["name"] for d in devices] == ["Firefox on Linux", "Chrome on Android"]
        assert [d["current"] for d in devices] == [False, True]
        assert set(devices[0]) == {"id", "name", "created_at", "last_seen_at", "current"}
        by_bearer = (await api.call("GET", "/api/devices")).body["devices"]
        assert [d["current"] for d in by_bearer] == [False, False]  # the token is no device
        # only hashes are stored: the database logs nobody in
        secret = phone.split("=", 1)[1]
        rows = sqlite3.connect(api.daemon.settings.paths.database).execute("SELECT * FROM devices").fetchall()
        assert len(rows) == 2 and secret not in repr(rows)
        assert hashlib.sha256(secret.encode()).hexdigest() in {row[2] for row in rows}

    await serve(tmp_path, body)


async def test_rename_validates_and_unknown_ids_are_404(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        cookie = await token_login(api)
        (device,) = (await api.call("GET", "/api/devices")).body["devices"]
        path = f"/api/devices/{device['id']}"
        renamed = await fetch(
            api,
            path,
            method="PATCH",
            body=json.dumps({"name": "  Work laptop "}),
            headers=as_browser(api, cookie, True),
        )
        assert renamed.code == 200
        assert json.loads(renamed.body) == {**device, "name": "Work laptop", "current": True}
        for bad in ("", "   ", "x" * 101, "evil\x1b]0;title\x07", "two\nlines", 7, None):
            reply = await api.call("PATCH", path, {"name": bad})
            assert reply.status == 400 and reply.body["error"]["code"] == "bad_request", bad
        assert (await api.call("PATCH", path, {"name": "a", "extra": 1})).status == 400
        assert (await api.call("PATCH", path, {})).status == 400
        assert (await api.call("PATCH", path, {"name": "x" * 100})).status == 200
        for method, extra in (("PATCH", {"name": "y"}), ("DELETE", None)):
            missing = await api.call(method, "/api/devices/nope", extra)
            assert missing.status == 404 and missing.body["error"]["code"] == "device_not_found"
        assert (await api.call("GET", "/api/devices")).body["devices"][0]["name"] == "x" * 100

    await serve(tmp_path, body)


async def test_revocation_closes_the_devices_websocket_with_4001_and_its_cookie_gets_401(
    tmp_path: Path,
) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        phone, _ = await pair(api)
        laptop = await token_login(api)
        told: list[str] = []
        api.daemon.devices.on_revoked.append(told.append)
        phone_ws = await cookie_ws(api, phone, sid)
        laptop_ws = await cookie_ws(api, laptop, sid)
        bearer_ws = await api.ws(sid)
        for client in (phone_ws, laptop_ws, bearer_ws):
            assert (await client.recv() or {})["type"] == "hello"
        phone_id = next(
            d["id"] for d in (await api.call("GET", "/api/devices")).body["devices"] if "Android" in d["name"]
        )

        gone = await fetch(
            api, f"/api/devices/{phone_id}", method="DELETE", headers=as_browser(api, laptop, True)
        )
        assert gone.code == 204
        await asyncio.wait_for(drain(phone_ws), 10)
        assert phone_ws.conn.close_code == 4001
        assert told == [phone_id]
        refused = await fetch(api, "/api/sessions", headers=as_browser(api, phone))
        assert refused.code == 401
        assert (await fetch(api, "/", headers={"Cookie": phone})).code == 401  # the login page
        with pytest.raises(tornado.httpclient.HTTPClientError) as info:
            await cookie_ws(api, phone, sid)
        assert info.value.code == 401
        # the others are untouched
        assert (await fetch(api, "/api/sessions", headers=as_browser(api, laptop))).code == 200
        await laptop_ws.send({"type": "ping", "id": "p"})
        assert (await laptop_ws.until(lambda f: f.get("type") == "ack"))["id"] == "p"
        assert bearer_ws.conn.close_code is None
        assert (await api.call("DELETE", f"/api/devices/{phone_id}")).status == 404  # once

        # a device may log itself out; its socket closes too
        mine = next(d["id"] for d in (await api.call("GET", "/api/devices")).body["devices"])
        bye = await fetch(api, f"/api/devices/{mine}", method="DELETE", headers=as_browser(api, laptop, True))
        assert bye.code == 204
        await asyncio.wait_for(drain(laptop_ws), 10)
        assert laptop_ws.conn.close_code == 4001
        assert (await fetch(api, "/api/devices", headers=as_browser(api, laptop))).code == 401

    await serve(tmp_path, body)


async def test_token_rotation_logs_every_device_out(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        phone, _ = await pair(api)
        laptop = await token_login(api)
        told: list[str] = []
        api.daemon.devices.on_revoked.append(told.append)
        phone_ws = await cookie_ws(api, phone, sid)
        await phone_ws.recv()
        reply = await api.call("POST", "/api/token/rotate", {})
        assert reply.status == 200
        await asyncio.wait_for(drain(phone_ws), 10)
        assert phone_ws.conn.close_code == 4001
        assert len(told) == 2
        for cookie in (phone, laptop):
            assert (await fetch(api, "/api/sessions", headers=as_browser(api, cookie))).code == 401
        new = api.daemon.settings.paths.token_file.read_text().strip()
        assert (await api.call("GET", "/api/devices", token=new)).body == {"devices": []}
        rows = sqlite3.connect(api.daemon.settings.paths.database).execute("SELECT count(*) FROM devices")
        assert rows.fetchone() == (0,)

    await serve(tmp_path, body)


async def test_a_pairing_code_works_once_and_then_says_used(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        made = await api.call("POST", "/api/pairing", {})
        assert made.status == 201
        code, url = made.body["code"], made.body["url"]
        assert url == f"{api.base}/pair?code={code}"
        assert len(code) >= 22 and re.fullmatch(r"[A-Za-z0-9_-]+", code)  # >= 128 bits, URL-safe
        assert made.body["svg"].startswith("<svg") and "<script" not in made.body["svg"]
        assert made.body["expires_at"].endswith("Z")
        first = await redeem(api, code, {"User-Agent": PHONE_UA})
        assert first.code == 303 and first.headers["Location"] == "/"
        cookie, morsel = cookie_of(first)
        assert morsel["httponly"] and morsel["samesite"] == "Strict" and not morsel["secure"]
        assert (
            first.headers["Cache-Control"] == "no-store" and first.headers["Referrer-Policy"] == "no-referrer"
        )
        assert (await fetch(api, "/", headers={"Cookie": cookie})).code == 200
        again = await fetch(api, f"/pair?code={code}")
        assert again.code == 410 and "Set-Cookie" not in again.headers
        page = again.body.decode()
        assert "already used" in page and "qwen-daemon pair" in page and "Add a device" in page
        unknown = await fetch(api, "/pair?code=" + "A" * 22)
        assert unknown.code == 404 and "Unknown pairing code" in unknown.body.decode()
        assert (await fetch(api, "/pair")).code == 404
        assert len((await api.call("GET", "/api/devices")).body["devices"]) == 1
        # the Host check still applies to the one page without a credential
        forged = await fetch(api, f"/pair?code={code}", headers={"Host": "evil.example"})
        assert forged.code == 403

    await serve(tmp_path, body)


async def test_a_pairing_code_expires_after_its_ttl(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        now = [1_000_000.0]
        api.daemon.pairing.clock = lambda: now[0]
        made = (await api.call("POST", "/api/pairing", {})).body
        assert made["expires_at"] == "1970-01-12T13:48:40Z"  # issued at 1_000_000 s, valid 120 s
        later = (await api.call("POST", "/api/pairing", {})).body
        now[0] += 119.5
        assert (await redeem(api, later["code"])).code == 303  # still valid
        now[0] += 1
        expired = await fetch(api, f"/pair?code={made['code']}")
        assert expired.code == 410 and "expired" in expired.body.decode()
        assert "Set-Cookie" not in expired.headers

    await serve(tmp_path, body)


async def test_wrong_codes_are_throttled_but_a_good_code_still_works(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        statuses = [(await fetch(api, f"/pair?code=guess{i}")).code for i in range(MAX_FAILURES + 2)]
        assert statuses == [404] * MAX_FAILURES + [429] * 2
        throttled = await fetch(api, "/pair?code=again")
        assert throttled.code == 429 and int(throttled.headers["Retry-After"]) >= 1
        assert "Too many" in throttled.body.decode()
        # wrong tokens and wrong codes are the same failed logins
        assert (await api.call("GET", "/api/sessions", token="guess")).status == 429
        made = (await api.call("POST", "/api/pairing", {})).body
        assert (await redeem(api, made["code"])).code == 303

    await serve(tmp_path, body)


def test_at_most_a_handful_of_codes_live_at_once() -> None:
    codes = PairingCodes(clock=lambda: 50.0)
    issued = [codes.issue()[0] for _ in range(MAX_LIVE_CODES + 2)]
    assert codes.live() == MAX_LIVE_CODES
    assert [codes.redeem(c) for c in issued] == ["expired"] * 2 + ["ok"] * MAX_LIVE_CODES
    assert codes.redeem(issued[-1]) == "used" and codes.redeem("nope") == "unknown"


def test_last_seen_is_written_at_most_once_a_minute(tmp_path: Path) -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    devices_table = MIGRATIONS[2]
    assert isinstance(devices_table, str)
    db.executescript(devices_table)  # the devices table
    now = [1_700_000_000.0]
    registry = DeviceRegistry(clock=lambda: now[0])
    registry.load(db)
    device, secret = registry.create("phone")

    def stored() -> Any:
        return db.execute("SELECT last_seen_at FROM devices").fetchone()[0]

    first = stored()
    now[0] += SEEN_EVERY - 1
    registry.seen(registry.lookup(secret))  # type: ignore[arg-type]
    assert stored() == first
    now[0] += 2
    registry.seen(registry.lookup(secret))  # type: ignore[arg-type]
    assert stored() != first and stored() == device.last_seen_at
    assert registry.lookup(secret + "x") is None and registry.lookup("") is None
    again = DeviceRegistry()
    again.load(db)  # what a restarted daemon finds
    assert again.lookup(secret) is not None and again.get(device.id).name == "phone"


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        (PHONE_UA, "Chrome on Android"),
        (
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Firefox on Linux",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.5 Mobile/15E148 Safari/604.1",
            "Safari on iPhone",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on Windows",
        ),
        ("curl/8.5.0", "curl"),
        ("", "Unknown browser"),
        (None, "Unknown browser"),
    ],
)
def test_device_names_come_from_the_user_agent(agent: str | None, name: str) -> None:
    assert device_name(agent) == name


async def test_public_url_is_our_host_and_origin_and_the_pairing_base(tmp_path: Path) -> None:
    public = "https://box.tail1234.ts.net"

    async def body(api: Api, ws: Path) -> None:
        assert api.daemon.public_base == public + "/"
        made = (await api.call("POST", "/api/pairing", {})).body
        assert made["url"].startswith(f"{public}/pair?code=")
        host = {"Host": "box.tail1234.ts.net"}
        resp = await redeem(api, made["code"], {**host, "User-Agent": PHONE_UA})
        assert resp.code == 303
        cookie, morsel = cookie_of(resp)
        assert morsel["secure"]  # the phone reaches us over https, though the proxy speaks http
        origin = {"Origin": public, "X-Qwen-Daemon": "1", "Content-Type": "application/json"}
        created = await fetch(
            api,
            "/api/sessions",
            method="POST",
            body=json.dumps({"cwd": str(ws)}),
            headers={"Cookie": cookie, **host, **origin},
        )
        assert created.code == 201, created.body
        sid = json.loads(created.body)["id"]
        evil = await fetch(
            api,
            "/api/sessions",
            method="POST",
            body="{}",
            headers={"Cookie": cookie, **host, **origin, "Origin": "https://evil.example"},
        )
        assert evil.code == 403
        request = tornado.httpclient.HTTPRequest(
            f"ws://127.0.0.1:{api.daemon.port}/api/sessions/{sid}/ws",
            headers={"Cookie": cookie, **host, "Origin": public},
        )
        client = WsClient(await tornado.websocket.websocket_connect(request))
        api.clients.append(client)
        assert (await client.recv() or {})["type"] == "hello"
        # a proxy that passes its own Host (not the public one): the public origin is still ours
        rewritten = await fetch(
            api,
            f"/api/sessions/{sid}",
            method="PATCH",
            body=json.dumps({"title": "renamed via a proxy"}),
            headers={"Cookie": cookie, **origin},
        )
        assert rewritten.code == 200, rewritten.body
        other = await fetch(api, "/api/sessions", headers={"Host": "other.ts.net", "Cookie": cookie})
        assert other.code == 403 and json.loads(other.body)["error"]["code"] == "forbidden_host"
        await until(lambda: len(api.daemon.devices.list()) == 1)

    await serve(tmp_path, body, public_url=public)


async def test_a_device_through_a_reverse_proxy_with_the_public_host(tmp_path: Path) -> None:
    """The tunnel recipe without a browser: log in through the proxy, stream through it, and get
    the revocation's 4001 through it too."""
    sock, proxy_port = tornado.testing.bind_unused_port()
    public = f"http://phone.test:{proxy_port}"

    async def body(api: Api, ws: Path) -> None:
        proxy = ReverseProxy(sock, api.daemon.port)
        await proxy.start()
        try:
            sid = (await api.create(ws))["id"]
            code = (await api.call("POST", "/api/pairing", {})).body
            assert code["url"].startswith(f"{public}/pair?code=")
            host = {"Host": f"phone.test:{proxy_port}"}
            via = f"http://127.0.0.1:{proxy_port}"
            page = await api.http.fetch(
                via + urllib.parse.urlsplit(code["url"]).path + "?code=" + code["code"],
                headers={**host, "User-Agent": PHONE_UA},
                follow_redirects=False,
                raise_error=False,
            )
            assert page.code == 200, page.body
            resp = await api.http.fetch(  # the page's button, as the phone's browser sends it
                via + "/pair",
                method="POST",
                body=urllib.parse.urlencode({"code": code["code"]}),
                headers={**host, "User-Agent": PHONE_UA, "Origin": public},
                follow_redirects=False,
                raise_error=False,
            )
            assert resp.code == 303, resp.body
            cookie = cookie_of(resp)[0]
            listed = await api.http.fetch(via + "/api/devices", headers={**host, "Cookie": cookie})
            assert json.loads(listed.body)["devices"][0]["current"] is True
            request = tornado.httpclient.HTTPRequest(
                f"ws://127.0.0.1:{proxy_port}/api/sessions/{sid}/ws",
                headers={**host, "Cookie": cookie, "Origin": public},
            )
            client = WsClient(await tornado.websocket.websocket_connect(request))
            api.clients.append(client)
            assert (await client.recv() or {})["type"] == "hello"
            await client.send({"type": "ping", "id": "p"})  # frames pass the proxy both ways
            assert (await client.until(lambda f: f.get("type") == "ack"))["id"] == "p"
            (device,) = api.daemon.devices.list()
            assert (await api.call("DELETE", f"/api/devices/{device.id}")).status == 204
            await asyncio.wait_for(drain(client), 10)
            assert client.conn.close_code == 4001
        finally:
            await proxy.stop()

    await serve(tmp_path, body, public_url=public)

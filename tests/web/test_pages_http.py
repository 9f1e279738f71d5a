"""Pages, cookie login and static files over plain HTTP (no browser): the security rules in detail."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import tornado.httpclient
import tornado.httputil
import tornado.websocket

from tests.support.daemon import Api, fake_settings, frames_in, running_daemon
from tests.support.probe import until

pytestmark = pytest.mark.timeout(60)

Fetch = Callable[..., Awaitable[tornado.httpclient.HTTPResponse]]


async def serve(tmp_path: Path, body: Callable[[Api, Fetch], Awaitable[None]]) -> None:
    """Run ``body`` against a daemon with a raw fetch (no auth added, no redirects followed)."""

    async def main() -> None:
        async with running_daemon(fake_settings(tmp_path)) as api:

            async def fetch(path: str, **kwargs: Any) -> tornado.httpclient.HTTPResponse:
                kwargs.setdefault("follow_redirects", False)
                if kwargs.get("method") in ("POST", "DELETE") and "body" not in kwargs:
                    kwargs["body"] = b"" if kwargs["method"] == "POST" else None
                if kwargs.get("method") == "DELETE":
                    kwargs["allow_nonstandard_methods"] = True
                return await api.http.fetch(api.base + path, raise_error=False, **kwargs)

            await body(api, fetch)

    await main()


async def login(api: Api, fetch: Fetch) -> str:
    """The ``name=value`` cookie the token URL sets."""
    resp = await fetch(f"/?token={api.daemon.token}")
    assert resp.code == 302
    morsel = next(iter(SimpleCookie(resp.headers["Set-Cookie"]).values()))
    return f"{morsel.key}={morsel.value}"


def own_origin(api: Api) -> str:
    return api.base


async def test_token_url_sets_the_cookie_and_redirects_without_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(api: Api, fetch: Fetch) -> None:
        token = api.daemon.token
        caplog.set_level(logging.DEBUG)
        resp = await fetch(f"/?x=1&token={token}&y=two%20words")
        assert resp.code == 302
        assert resp.headers["Location"] == "/?x=1&y=two+words"
        raw = resp.headers["Set-Cookie"]
        morsel = SimpleCookie(raw)[f"qwen_daemon_{api.daemon.port}"]
        assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
        assert not morsel["secure"]  # plain http on loopback; Secure only over https
        assert morsel["expires"]
        assert token not in raw and len(morsel.value) == 43  # the device's own 256-bit secret
        (device,) = api.daemon.devices.list()
        assert device.secret_hash == hashlib.sha256(morsel.value.encode()).hexdigest()
        assert resp.headers["Referrer-Policy"] == "no-referrer"

        sid = (await api.create(tmp_path))["id"]
        resp = await fetch(f"/s/{sid}?token={token}")
        assert resp.code == 302 and resp.headers["Location"] == f"/s/{sid}"

        cookie = await login(api, fetch)
        resp = await fetch("/?x=1", headers={"Cookie": cookie})
        assert resp.code == 200 and resp.headers["Content-Type"] == "text/html; charset=UTF-8"
        assert b'<script type="module" src="/static/js/dashboard.js">' in resp.body
        assert token not in caplog.text  # not in the access log, not anywhere

    await serve(tmp_path, body)


async def test_no_valid_cookie_gets_the_login_page_with_401(tmp_path: Path) -> None:
    async def body(api: Api, fetch: Fetch) -> None:
        sid = (await api.create(tmp_path))["id"]
        for path, headers in (
            ("/", {}),
            ("/?token=wrong", {}),
            (f"/s/{sid}", {}),
            ("/", {"Cookie": f"qwen_daemon_{api.daemon.port}=forged"}),
            (
                "/",
                {"Cookie": f"qwen_daemon_{api.daemon.port}={api.daemon.token}"},
            ),  # the raw token is no cookie
            ("/", {"Authorization": "Bearer wrong"}),
        ):
            resp = await fetch(path, headers=headers)
            assert resp.code == 401, (path, headers)
            assert resp.headers["Content-Type"] == "text/html; charset=UTF-8"
            assert "Set-Cookie" not in resp.headers
            text = resp.body.decode()
            assert "<code>qwen-daemon url</code>" in text and "Log in to qwen-daemon" in text
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]

    await serve(tmp_path, body)


async def test_pages_have_a_strict_content_security_policy(tmp_path: Path) -> None:
    async def body(api: Api, fetch: Fetch) -> None:
        cookie = await login(api, fetch)
        sid = (await api.create(tmp_path, title="<b>bold</b> & co"))["id"]
        resp = await fetch(f"/s/{sid}", headers={"Cookie": cookie})
        assert resp.code == 200
        csp = resp.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
        assert directives["require-trusted-types-for"] == "'script'"
        assert "unsafe" not in csp
        page = resp.body.decode()
        assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page and "<b>bold</b>" not in page
        assert "<script>" not in page and " style=" not in page and " on" not in page.replace(" one", "")
        assert f'data-session-id="{sid}"' in page

    await serve(tmp_path, body)


async def test_unknown_session_page_is_an_html_404(tmp_path: Path) -> None:
    async def body(api: Api, fetch: Fetch) -> None:
        cookie = await login(api, fetch)
        resp = await fetch("/s/no-such-session", headers={"Cookie": cookie})
        assert resp.code == 404
        assert resp.headers["Content-Type"] == "text/html; charset=UTF-8"
        assert "No such session" in resp.body.decode() and 'href="/"' in resp.body.decode()
        assert (await fetch("/s/no-such-session")).code == 401  # nothing is revealed before login

    await serve(tmp_path, body)


async def test_cookie_reads_the_api_only_from_our_own_origin(tmp_path: Path) -> None:
    async def body(api: Api, fetch: Fetch) -> None:
        cookie = await login(api, fetch)
        port = api.daemon.port
        cases = [
            ({}, 200),  # same-origin fetch of a GET: browsers send no Origin
            ({"Origin": own_origin(api)}, 200),
            ({"Sec-Fetch-Site": "same-origin"}, 200),
            ({"Sec-Fetch-Site": "none"}, 200),  # typed into the address bar
            ({"Origin": "http://evil.example"}, 403),
            ({"Origin": f"http://127.0.0.1:{port + 1}"}, 403),  # another local port: "same-site"
            ({"Origin": f"https://127.0.0.1:{port}"}, 403),
            ({"Origin": "null"}, 403),
            ({"Sec-Fetch-Site": "same-site"}, 403),
            ({"Sec-Fetch-Site": "cross-site"}, 403),
        ]
        for headers, status in cases:
            resp = await fetch("/api/sessions", headers={"Cookie": cookie, **headers})
            assert resp.code == status, headers
            if status == 403:
                assert json.loads(resp.body)["error"]["code"] == "forbidden_origin"

    await serve(tmp_path, body)


async def test_cookie_changes_need_our_origin_and_the_proof_header(tmp_path: Path) -> None:
    async def body(api: Api, fetch: Fetch) -> None:
        cookie = await login(api, fetch)
        payload = json.dumps({"cwd": str(tmp_path)})
        base = {"Cookie": cookie, "Content-Type": "application/json"}
        origin = {"Origin": own_origin(api)}
        proof = {"X-Qwen-Daemon": "1"}
        for headers, code in (
            ({}, "forbidden_origin"),
            (proof, "forbidden_origin"),  # no Origin on a state change: refused
            ({"Origin": "null", **proof}, "forbidden"),  # Tornado's cross-origin check
            ({"Origin": "http://evil.example", **proof}, "forbidden"),  # Tornado's own check first
            (origin, "missing_proof"),
            ({**origin, "X-Qwen-Daemon": "0"}, "missing_proof"),
        ):
            resp = await fetch("/api/sessions", method="POST", body=payload, headers={**base, **headers})
            assert resp.code == 403, headers
            assert json.loads(resp.body)["error"]["code"] == code, headers
        assert api.daemon.manager.list() == []

        resp = await fetch("/api/sessions", method="POST", body=payload, headers={**base, **origin, **proof})
        assert resp.code == 201
        sid = json.loads(resp.body)["id"]
        resp = await fetch(f"/api/sessions/{sid}", method="DELETE", headers={"Cookie": cookie, **origin})
        assert resp.code == 403 and json.loads(resp.body)["error"]["code"] == "missing_proof"
        resp = await fetch(
            f"/api/sessions/{sid}", method="DELETE", headers={"Cookie": cookie, **origin, **proof}
        )
        assert resp.code == 204

        # bearer clients are unaffected: no Origin, no proof header needed
        assert (await api.call("POST", "/api/sessions", {"cwd": str(tmp_path)})).status == 201
        # a wrong bearer token is not rescued by a good cookie
        resp = await fetch("/api/sessions", headers={"Cookie": cookie, "Authorization": "Bearer nope"})
        assert resp.code == 401

    await serve(tmp_path, body)


async def test_cookie_websocket_needs_our_origin(tmp_path: Path) -> None:
    async def body(api: Api, fetch: Fetch) -> None:
        cookie = await login(api, fetch)
        sid = (await api.create(tmp_path))["id"]
        url = f"ws://127.0.0.1:{api.daemon.port}/api/sessions/{sid}/ws"

        async def status(headers: dict[str, str]) -> int:
            request = tornado.httpclient.HTTPRequest(url, headers={"Cookie": cookie, **headers})
            with pytest.raises(tornado.httpclient.HTTPClientError) as info:
                await tornado.websocket.websocket_connect(request)
            return info.value.code

        assert await status({}) == 403
        assert await status({"Origin": "null"}) == 403
        assert await status({"Origin": "http://evil.example"}) == 403
        assert await status({"Origin": f"http://localhost:{api.daemon.port}"}) == 403  # not the Host used
        request = tornado.httpclient.HTTPRequest(url, headers={"Cookie": cookie, "Origin": own_origin(api)})
        conn = await tornado.websocket.websocket_connect(request)
        hello = frames_in(await conn.read_message() or "{}")[0]  # the replay may share its message
        assert hello["type"] == "hello" and hello["session"]["id"] == sid
        conn.close()
        while await conn.read_message() is not None:  # wait for the close handshake to finish
            pass

    await serve(tmp_path, body)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/app.css", "text/css; charset=utf-8"),
        ("/static/js/session.js", "text/javascript; charset=utf-8"),
        ("/static/vendor/markdown-it.min.mjs", "text/javascript; charset=utf-8"),
        ("/static/icon.svg", "image/svg+xml"),
        ("/static/vendor/dompurify.LICENSE.txt", "text/plain; charset=utf-8"),
    ],
)
async def test_static_files_have_exact_content_types(tmp_path: Path, path: str, content_type: str) -> None:
    async def body(api: Api, fetch: Fetch) -> None:
        resp = await fetch(path)  # public: the login page needs its stylesheet
        assert resp.code == 200
        assert resp.headers["Content-Type"] == content_type
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-cache"
        etag = resp.headers["Etag"]
        again = await fetch(path, headers={"If-None-Match": etag})
        assert again.code == 304

    await serve(tmp_path, body)


@pytest.mark.parametrize(
    "path",
    [
        "/static/js",
        "/static/js/",
        "/static/vendor/",
        "/static/nope.css",
        "/static/vendor/README.md",  # not a served type
        "/static/../templates/base.html",
        "/static/%2e%2e/templates/base.html",
        "/static/..%2f..%2fserver%2fpages.py",
        "/static/js/..%2f..%2ftemplates%2flogin.html",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/.hidden.css",
        "/static/js/%00.js",
    ],
)
async def test_static_files_refuse_listing_traversal_and_unknown_types(tmp_path: Path, path: str) -> None:
    async def body(api: Api, fetch: Fetch) -> None:
        request = tornado.httpclient.HTTPRequest(api.base + path, follow_redirects=False)
        request.url = api.base + path  # keep dot segments as written
        resp = await api.http.fetch(request, raise_error=False)
        assert resp.code == 404, resp.body
        assert json.loads(resp.body)["error"]["code"] == "not_found"
        assert b"qwen_daemon" not in resp.body and b"directory" not in resp.body

    await serve(tmp_path, body)


@pytest.mark.parametrize(
    ("protocol", "public_url", "secure"),
    [
        ("https", None, True),  # the daemon serves TLS itself
        ("http", "https://box.tail1234.ts.net", True),  # an https tunnel or proxy in front
        ("http", "http://phone.test:8080", False),
        ("http", None, False),
    ],
)
async def test_login_cookie_is_secure_when_served_over_https(
    tmp_path: Path, protocol: str, public_url: str | None, secure: bool
) -> None:
    """Behind TLS, or an https ``public_url``, the cookie gets Secure (checked on a request handed
    to the application directly, as the HTTP server would hand it: the tests speak http)."""

    async def main() -> None:
        async with running_daemon(fake_settings(tmp_path, public_url=public_url)) as api:
            daemon = api.daemon
            connection = mock.Mock()
            request = tornado.httputil.HTTPServerRequest(
                start_line=tornado.httputil.RequestStartLine("GET", f"/?token={daemon.token}", "HTTP/1.1"),
                headers=tornado.httputil.HTTPHeaders({"Host": f"127.0.0.1:{daemon.port}"}),
                connection=connection,
            )
            request.protocol = protocol
            daemon.app(request)  # the HTTPServer's way in: routing, prepare, the handler's answer
            await until(lambda: connection.write_headers.called)
            start_line, headers = connection.write_headers.call_args.args[:2]
            assert start_line.code == 302
            (cookie,) = headers.get_list("Set-Cookie")
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert ("Secure" in cookie) == secure

    await main()

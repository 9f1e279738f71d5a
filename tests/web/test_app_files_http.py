"""The installable app's files over plain HTTP: the service worker and the manifest are served at
the root, public (browsers fetch them without the login cookie), typed, always revalidated, and
the worker runs under a policy that lets it talk to our own origin only. Nothing else at the root
became public."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tornado.httpclient

from qwen_daemon.server.pages import STATIC_DIR
from tests.support.daemon import Api, fake_settings, running_daemon

pytestmark = pytest.mark.timeout(60)


async def get(api: Api, path: str, **kwargs: object) -> tornado.httpclient.HTTPResponse:
    return await api.http.fetch(api.base + path, raise_error=False, follow_redirects=False, **kwargs)


async def test_the_service_worker_is_served_at_the_root_without_login(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_daemon(fake_settings(tmp_path)) as api:
            resp = await get(api, "/sw.js")
            assert resp.code == 200
            assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
            assert resp.headers["Cache-Control"] == "no-cache"  # an upgraded daemon's worker is seen
            assert resp.body == (STATIC_DIR / "sw.js").read_bytes()
            directives = dict(
                d.strip().split(" ", 1) for d in resp.headers["Content-Security-Policy"].split(";")
            )
            assert directives["default-src"] == "'none'"
            assert directives["connect-src"] == "'self'"
            again = await get(api, "/sw.js", headers={"If-None-Match": resp.headers["Etag"]})
            assert again.code == 304

    await main()


async def test_the_manifest_is_served_at_the_root_without_login(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_daemon(fake_settings(tmp_path)) as api:
            resp = await get(api, "/manifest.webmanifest")
            assert resp.code == 200
            assert resp.headers["Content-Type"] == "application/manifest+json"
            manifest = json.loads(resp.body)
            assert manifest["start_url"] == "/" and manifest["scope"] == "/"
            for icon in manifest["icons"]:
                assert (await get(api, icon["src"])).code == 200, icon["src"]

    await main()


@pytest.mark.parametrize(
    "path",
    ["/sw.js.map", "/manifest.json", "/app.css", "/icon.svg", "/templates/base.html", "/sw.js/", "/.sw.js"],
)
async def test_nothing_else_at_the_root_is_served(tmp_path: Path, path: str) -> None:
    async def main() -> None:
        async with running_daemon(fake_settings(tmp_path)) as api:
            resp = await get(api, path)
            assert resp.code == 401, (path, resp.code)  # deny-by-default, as before
            logged_in = await get(api, path, headers={"Authorization": f"Bearer {api.daemon.token}"})
            assert logged_in.code == 404, (path, logged_in.code)

    await main()


async def test_pages_link_the_manifest_and_register_the_worker(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_daemon(fake_settings(tmp_path)) as api:
            resp = await get(api, "/")  # the login page: not logged in
            assert resp.code == 401
            page = resp.body.decode()
            assert '<link rel="manifest" href="/manifest.webmanifest">' in page
            assert '<script type="module" src="/static/js/worker.js"></script>' in page
            assert '<link rel="apple-touch-icon" href="/static/icons/apple-touch-icon.png">' in page
            csp = resp.headers["Content-Security-Policy"]
            assert "trusted-types dompurify qwen-daemon-worker" in csp

    await main()

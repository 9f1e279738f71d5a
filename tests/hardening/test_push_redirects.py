"""Review of issue 15, "The Web Push client follows redirects".

Found: pywebpush POSTs with ``requests``, which follows redirects by default, so whatever answers
at a subscription's endpoint could send the daemon's push on to any other URL — ``http://`` and
internal addresses included, which the endpoint check (``https://`` only) exists to keep out —
and a 307/308 repeats the POST there, body and all; the push then counted as delivered. No push
service redirects a push (RFC 8030 has no such answer), so a redirect is now refused: not
followed, not retried, logged with the endpoint's origin like any refusal.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import tornado.httpserver
import tornado.testing
import tornado.web

from qwen_daemon.push import delivery
from tests.support.daemon import fake_settings, running_daemon
from tests.test_push_api import sample

pytestmark = pytest.mark.timeout(60)


class _Hop(tornado.web.RequestHandler):
    def initialize(self, hits: list[str], internal: str) -> None:
        self.hits, self.internal = hits, internal

    def check_xsrf_cookie(self) -> None:
        pass

    def post(self, where: str) -> None:
        self.hits.append(where)
        if where == "endpoint":
            self.redirect(self.internal, status=307)  # "POST the same again, over there"
        else:
            self.set_status(201)


async def test_a_push_endpoint_that_redirects_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(delivery, "RETRY_DELAYS", (0.05, 0.1))
    hits: list[str] = []

    async def main() -> None:
        sock, port = tornado.testing.bind_unused_port()
        internal = f"http://127.0.0.1:{port}/internal"
        app = tornado.web.Application([(r"/(endpoint|internal)", _Hop, {"hits": hits, "internal": internal})])
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        try:
            settings = fake_settings(tmp_path, push_insecure_endpoints=True)
            async with running_daemon(settings) as api:
                made = await api.call(
                    "POST",
                    "/api/push/subscriptions",
                    {**sample(), "endpoint": f"http://127.0.0.1:{port}/endpoint"},
                )
                assert made.status == 201, made.body
                assert (await api.call("POST", "/api/push/test", {})).status == 202
                stats = api.daemon.push.stats
                for _ in range(500):
                    if stats["sent"] + stats["failed"]:
                        break
                    await asyncio.sleep(0.01)
                assert (stats["sent"], stats["failed"]) == (0, 1), stats
        finally:
            server.stop()
            await server.close_all_connections()

    with caplog.at_level(logging.WARNING, logger="qwen_daemon.push.delivery"):
        await main()
    assert hits == ["endpoint"]  # once (a refusal is not retried), and never the internal URL
    assert any("refused" in r.getMessage() and "/endpoint" not in r.getMessage() for r in caplog.records)

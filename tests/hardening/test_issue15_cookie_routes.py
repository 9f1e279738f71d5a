"""Review of issue 15: the new routes under a device's cookie, as another origin would use it.

Held (no finding): every state-changing route issue 15 added refuses a cookie request from another
origin (another port on 127.0.0.1 included: cookies do not separate ports), and one from our
origin without the ``X-Qwen-Daemon`` proof; reads refuse a no-cors request another site makes
(``Sec-Fetch-Site: same-site``); and a revoked device's cookie gets 401 everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.daemon import Api, serve
from tests.test_devices import fetch, pair
from tests.test_push_api import sample

pytestmark = pytest.mark.timeout(60)

CHANGING = [
    ("POST", "/api/pairing", {}),
    ("PATCH", "/api/devices/{device}", {"name": "renamed"}),
    ("DELETE", "/api/devices/{device}", None),
    ("POST", "/api/push/subscriptions", sample()),
    ("DELETE", "/api/push/subscriptions/{sub}", None),
    ("POST", "/api/push/test", {}),
]
READS = ["/api/devices", "/api/push/subscriptions", "/api/push/key"]


async def test_the_new_routes_refuse_cookie_requests_from_other_origins(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        cookie, _ = await pair(api)
        (device,) = api.daemon.devices.list()
        sub = (await api.call("POST", "/api/push/subscriptions", sample("https://push.example.net/b"))).body[
            "id"
        ]
        other_port = f"http://127.0.0.1:{api.daemon.port + 1}"
        for method, template, payload in CHANGING:
            path = template.format(device=device.id, sub=sub)
            data = json.dumps(payload) if payload is not None else None
            for origin, proof, code in (
                ("https://evil.example", "1", "forbidden_origin"),
                (other_port, "1", "forbidden_origin"),
                ("null", "1", "forbidden_origin"),
                (api.base, None, "missing_proof"),
            ):
                headers = {"Cookie": cookie, "Origin": origin, "Content-Type": "application/json"}
                if proof:
                    headers["X-Qwen-Daemon"] = proof
                resp = await fetch(api, path, method=method, body=data, headers=headers)
                assert resp.code == 403, (method, path, origin, resp.code)
                assert json.loads(resp.body)["error"]["code"] in (code, "forbidden")
        for path in READS:
            resp = await fetch(api, path, headers={"Cookie": cookie, "Sec-Fetch-Site": "same-site"})
            assert resp.code == 403, (path, resp.code)
        assert api.daemon.devices.list() == [device] and device.name == "Chrome on Android"
        assert len(api.daemon.push.subscriptions) == 1  # nothing above changed anything
        assert (await api.call("DELETE", f"/api/devices/{device.id}")).status == 204
        own = {"Cookie": cookie, "Origin": api.base, "X-Qwen-Daemon": "1", "Content-Type": "application/json"}
        for method, template, payload in CHANGING:
            path = template.format(device=device.id, sub=sub)
            data = json.dumps(payload) if payload is not None else None
            resp = await fetch(api, path, method=method, body=data, headers=own)
            assert resp.code == 401, (method, path, resp.code)

    await serve(tmp_path, body)

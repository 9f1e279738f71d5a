"""Review of issue 15, "A subscription's expirationTime beyond a float": hostile numbers in
``POST /api/push/subscriptions``.

Found: ``expirationTime`` was checked to be a number and then passed to ``float()``. An integer
literal of 400 digits (valid JSON; Python reads it as an int) made ``float()`` raise
OverflowError: a 500 with a traceback in the log. ``1e400`` (valid JSON too) became ``inf``, was
stored, and ``GET /api/push/subscriptions`` then answered ``"expiration_time":Infinity`` — not
JSON, so the page's ``response.json()`` failed and the "Notify me" state broke for every device.
Now such a number is a 400 naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.daemon import Api, serve
from tests.test_push_api import sample

pytestmark = pytest.mark.timeout(60)


async def test_an_expiration_time_beyond_a_float_is_a_400_and_the_list_stays_json(tmp_path: Path) -> None:
    keys = json.dumps(sample()["keys"]).encode()

    async def body(api: Api, ws: Path) -> None:
        for number in (b"1" + b"0" * 400, b"-1" + b"0" * 400, b"1e400", b"-1e400"):
            raw = b'{"endpoint":"https://push.example.net/x","keys":%s,"expirationTime":%s}' % (keys, number)
            reply = await api.call("POST", "/api/push/subscriptions", raw=raw)
            assert reply.status == 400, (number[:8], reply.status, reply.body)
            assert "expirationTime" in reply.body["error"]["message"]
        ok = await api.call("POST", "/api/push/subscriptions", {**sample(), "expirationTime": 1.8e12})
        assert ok.status == 201, ok.body
        listed = await api.http.fetch(api.base + "/api/push/subscriptions", headers=api.headers())
        text = listed.body.decode()
        assert "Infinity" not in text
        json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the answer"))

    await serve(tmp_path, body)

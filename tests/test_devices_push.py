"""Devices and push together, as the app wires them: a subscription made with a device's cookie
belongs to that device, and logging the device out (one by one, or all by `token rotate`) ends its
pushes, while one made with the bearer token stays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.daemon import Api, serve
from tests.test_devices import as_browser, fetch, pair, token_login
from tests.test_push_api import sample

pytestmark = pytest.mark.timeout(60)


async def subscribe_as(api: Api, cookie: str, endpoint: str) -> str:
    resp = await fetch(
        api,
        "/api/push/subscriptions",
        method="POST",
        body=json.dumps(sample(endpoint)),
        headers=as_browser(api, cookie, changing=True),
    )
    assert resp.code == 201, resp.body
    return str(json.loads(resp.body)["id"])


async def listed(api: Api, token: str | None = None) -> dict[str, str | None]:
    reply = await api.call("GET", "/api/push/subscriptions", token=token or api.daemon.token)
    return {s["id"]: s["device_id"] for s in reply.body["subscriptions"]}


async def test_a_devices_subscriptions_end_with_its_login(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        phone, _ = await pair(api)
        laptop = await token_login(api)
        phone_sub = await subscribe_as(api, phone, "https://push.example.net/phone")
        laptop_sub = await subscribe_as(api, laptop, "https://push.example.net/laptop")
        bearer_sub = (await api.call("POST", "/api/push/subscriptions", sample())).body["id"]
        devices = {d["id"] for d in (await api.call("GET", "/api/devices")).body["devices"]}
        owners = await listed(api)
        assert owners[bearer_sub] is None
        assert {owners[phone_sub], owners[laptop_sub]} == devices  # each tied to its own device

        assert (await api.call("DELETE", f"/api/devices/{owners[phone_sub]}")).status == 204
        assert set(await listed(api)) == {laptop_sub, bearer_sub}

        assert (await api.call("POST", "/api/token/rotate", {})).status == 200
        new_token = api.daemon.settings.paths.token_file.read_text().strip()
        assert set(await listed(api, new_token)) == {bearer_sub}

    await serve(tmp_path, body)

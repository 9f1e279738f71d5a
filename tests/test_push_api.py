"""The push subscription routes: what is refused (and why), replacing, listing, deleting, the cap,
and a revoked device's subscriptions going with it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from qwen_daemon.push import subscriptions
from qwen_daemon.server.openapi import document
from tests.support.daemon import Api, fake_settings, running_daemon, serve
from tests.support.push_service import PushService

pytestmark = pytest.mark.timeout(60)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sample(endpoint: str = "https://push.example.net/wpush/v2/abc") -> dict[str, Any]:
    subscription = PushService(lambda: "").subscribe("x")
    return {**subscription, "endpoint": endpoint}


def assert_400(reply: Any, words: str) -> None:
    assert reply.status == 400, (reply.status, reply.body)
    assert reply.body["error"]["code"] == "bad_request"
    assert words in reply.body["error"]["message"], reply.body


async def test_validation(tmp_path: Path) -> None:
    good = sample()
    point, auth = good["keys"]["p256dh"], good["keys"]["auth"]
    cases = [
        ({**good, "endpoint": "http://push.example.net/x"}, "must be an https:// URL"),
        ({**good, "endpoint": "http://127.0.0.1:9/x"}, "push_insecure_endpoints"),
        ({**good, "endpoint": "https://user:pw@push.example.net/x"}, "no credentials"),
        ({**good, "endpoint": "https://push.example.net:99999/x"}, "not a valid URL"),
        ({**good, "endpoint": "ftp://push.example.net/x"}, "https://"),
        ({**good, "endpoint": 5}, "endpoint"),
        ({**good, "endpoint": "https://e.net/" + "x" * 2000}, "longer than"),
        ({k: v for k, v in good.items() if k != "keys"}, "field 'keys'"),
        ({**good, "keys": {"p256dh": point}}, "keys.auth"),
        ({**good, "keys": {"p256dh": "not base64!", "auth": auth}}, "not base64url"),
        ({**good, "keys": {"p256dh": point[:-4], "auth": auth}}, "65 bytes"),
        ({**good, "keys": {"p256dh": b64(b"\x04" + b"\x01" * 64), "auth": auth}}, "P-256"),
        ({**good, "keys": {"p256dh": point, "auth": b64(b"1" * 15)}}, "16 bytes"),
        ({**good, "expirationTime": "soon"}, "expirationTime"),
    ]

    async def body(api: Api, ws: Path) -> None:
        for payload, words in cases:
            assert_400(await api.call("POST", "/api/push/subscriptions", payload), words)
        assert_400(await api.call("POST", "/api/push/subscriptions", raw=b"[]"), "JSON object")
        listed = await api.call("GET", "/api/push/subscriptions")
        assert listed.status == 200 and listed.body == {"subscriptions": []}
        unauthorized = await api.call("POST", "/api/push/subscriptions", good, token=None)
        assert unauthorized.status == 401

    await serve(tmp_path, body)


async def test_create_replace_list_delete(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        first = sample()
        created = await api.call("POST", "/api/push/subscriptions", {**first, "expirationTime": 1.7e12})
        assert created.status == 201 and set(created.body) == {"id"}
        sub_id = created.body["id"]
        assert created.headers["Location"] == f"/api/push/subscriptions/{sub_id}"
        again = sample(first["endpoint"])  # the browser subscribed again: new keys, same endpoint
        replaced = await api.call("POST", "/api/push/subscriptions", again)
        assert replaced.status == 200 and replaced.body == {"id": sub_id}
        loopback = await api.call("POST", "/api/push/subscriptions", sample("http://127.0.0.1:9/p"))
        assert loopback.status == 201  # push_insecure_endpoints is on here

        listed = (await api.call("GET", "/api/push/subscriptions")).body["subscriptions"]
        assert [s["id"] for s in listed] == [sub_id, loopback.body["id"]]
        schema = jsonschema.Draft202012Validator(
            {**document(), "$ref": "#/components/schemas/PushSubscription"}
        )
        for sub in listed:
            schema.validate(sub)
        key = (await api.call("GET", "/api/push/key")).body
        jsonschema.Draft202012Validator(
            {
                **document(),
                **document()["paths"]["/api/push/key"]["get"]["responses"]["200"]["content"][
                    "application/json"
                ]["schema"],
            }
        ).validate(key)
        assert listed[0] == {
            "id": sub_id,
            "device_id": None,
            "endpoint_origin": "https://push.example.net",
            "expiration_time": None,
            "created_at": listed[0]["created_at"],
            "current": True,
        }
        stored = api.daemon.push.subscriptions.get(sub_id)
        assert stored is not None and stored.p256dh == again["keys"]["p256dh"]

        assert (await api.call("DELETE", f"/api/push/subscriptions/{sub_id}")).status == 204
        missing = await api.call("DELETE", f"/api/push/subscriptions/{sub_id}")
        assert missing.status == 404 and missing.body["error"]["code"] == "subscription_not_found"
        assert len((await api.call("GET", "/api/push/subscriptions")).body["subscriptions"]) == 1

    await serve(tmp_path, body, push_insecure_endpoints=True)


async def test_the_cap_gives_429(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscriptions, "MAX_SUBSCRIPTIONS", 2)

    async def body(api: Api, ws: Path) -> None:
        for n in range(2):
            assert (
                await api.call("POST", "/api/push/subscriptions", sample(f"https://p.net/{n}"))
            ).status == 201
        over = await api.call("POST", "/api/push/subscriptions", sample("https://p.net/2"))
        assert over.status == 429 and over.body["error"]["code"] == "limit_reached"
        # an existing endpoint may still be refreshed at the cap
        assert (await api.call("POST", "/api/push/subscriptions", sample("https://p.net/1"))).status == 200

    await serve(tmp_path, body)


async def test_revoking_a_device_removes_its_subscriptions_for_good(tmp_path: Path) -> None:
    settings = fake_settings(tmp_path)

    async def main() -> None:
        async with running_daemon(settings) as api:
            subs = api.daemon.push.subscriptions
            mine = subs.add("dev-phone", "https://p.net/phone", *keys())[0]
            subs.add("dev-phone", "https://p.net/phone-2", *keys())
            other = subs.add("dev-laptop", "https://p.net/laptop", *keys())[0]
            bearer = subs.add(None, "https://p.net/cli", *keys())[0]
            assert api.daemon.push.device_revoked("dev-phone") == 2
            assert api.daemon.push.device_revoked("dev-phone") == 0
            assert subs.get(mine.id) is None
        async with running_daemon(settings) as api:  # gone from the database too
            listed = (await api.call("GET", "/api/push/subscriptions")).body["subscriptions"]
            assert {(s["id"], s["device_id"]) for s in listed} == {
                (other.id, "dev-laptop"),
                (bearer.id, None),
            }
            # "current": made with the credential asking (the bearer token is no device)
            assert {s["id"] for s in listed if s["current"]} == {bearer.id}

    await main()


def keys() -> tuple[str, str, None]:
    made = sample()["keys"]
    return made["p256dh"], made["auth"], None

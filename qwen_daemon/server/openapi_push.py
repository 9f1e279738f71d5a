"""The Web Push part of the OpenAPI document: its paths (``openapi.py`` joins them in).

A module of its own so the push routes (``push_api.py``) and their description change together,
and the main document stays readable. Their schemas, and ``PushPayload`` (the decrypted push
message, which no route returns but every service worker, webhook and test reads), are derived
from the contract (``contract/responses.py``) with the others.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ERROR, "error") for s in (401, 429, *statuses)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ID_OUT = _ref("Subscribed")

PUSH_PATHS: dict[str, Any] = {
    "/api/push/key": {
        "get": {
            "summary": "the daemon's VAPID public key, for pushManager.subscribe()",
            "responses": {
                "200": _json(_ref("PushKey"), "the key"),
                **_errors(503),
            },
        }
    },
    "/api/push/subscriptions": {
        "get": {
            "summary": "every Web Push subscription (never its full endpoint)",
            "responses": {
                "200": _json(_ref("PushSubscriptionList"), "the subscriptions, oldest first"),
                **_errors(),
            },
        },
        "post": {
            "summary": "subscribe this device (the body is PushSubscription.toJSON())",
            "description": "The endpoint must be https:// (http:// on loopback only with the setting "
            "push_insecure_endpoints); p256dh must be a P-256 point (65 bytes) and auth 16 bytes, "
            "base64url. The same endpoint again updates that subscription: 200 with its id. 429 "
            "beyond 100 subscriptions. Made with the bearer token, it belongs to no device.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("PushSubscribe")}},
            },
            "responses": {
                "201": _json(_ID_OUT, "subscribed"),
                "200": _json(_ID_OUT, "that endpoint was subscribed already; updated"),
                **_errors(400, 413, 507),
            },
        },
    },
    "/api/push/subscriptions/{subscription_id}": {
        "parameters": [{"name": "subscription_id", "in": "path", "required": True, "schema": _ref("Id")}],
        "delete": {
            "summary": "unsubscribe",
            "responses": {"204": {"description": "gone"}, **_errors(404)},
        },
    },
    "/api/push/test": {
        "post": {
            "summary": "send a test notification to this device's subscriptions (or the one named)",
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("PushTest")}}},
            "responses": {
                "202": _json(_ref("PushSent"), "queued to this many subscriptions"),
                **_errors(400, 404),
            },
        }
    },
}

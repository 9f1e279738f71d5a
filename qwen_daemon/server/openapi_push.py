"""The Web Push part of the OpenAPI document: its paths and schemas (``openapi.py`` joins them in).

A module of its own so the push routes (``push_api.py``) and their description change together,
and the main document stays readable. Also the schema of the decrypted push payload, which no
route returns but every service worker, webhook and test reads (``push/payload.py``).
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


_ID_OUT = {"type": "object", "required": ["id"], "properties": {"id": _ref("Id")}}

PUSH_PATHS: dict[str, Any] = {
    "/api/push/key": {
        "get": {
            "summary": "the daemon's VAPID public key, for pushManager.subscribe()",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["public_key"],
                        "properties": {
                            "public_key": {
                                "type": "string",
                                "pattern": "^[A-Za-z0-9_-]{87}$",
                                "description": "base64url (unpadded) uncompressed P-256 point",
                            }
                        },
                    },
                    "the key",
                ),
                **_errors(503),
            },
        }
    },
    "/api/push/subscriptions": {
        "get": {
            "summary": "every Web Push subscription (never its full endpoint)",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["subscriptions"],
                        "properties": {"subscriptions": {"type": "array", "items": _ref("PushSubscription")}},
                    },
                    "the subscriptions, oldest first",
                ),
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
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["endpoint", "keys"],
                            "properties": {
                                "endpoint": {"type": "string", "maxLength": 2000},
                                "expirationTime": {"type": ["number", "null"]},
                                "keys": {
                                    "type": "object",
                                    "required": ["p256dh", "auth"],
                                    "properties": {"p256dh": {"type": "string"}, "auth": {"type": "string"}},
                                },
                            },
                        }
                    }
                },
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
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"subscription_id": _ref("Id")},
                        }
                    }
                },
            },
            "responses": {
                "202": _json(
                    {
                        "type": "object",
                        "required": ["sent"],
                        "properties": {"sent": {"type": "integer", "minimum": 0}},
                    },
                    "queued to this many subscriptions",
                ),
                **_errors(400, 404),
            },
        }
    },
}

PUSH_SCHEMAS: dict[str, Any] = {
    "PushSubscription": {
        "type": "object",
        "required": ["id", "device_id", "endpoint_origin", "expiration_time", "created_at", "current"],
        "properties": {
            "id": _ref("Id"),
            "device_id": {"type": ["string", "null"], "description": "null: made with the bearer token"},
            "endpoint_origin": {"type": "string", "description": "scheme://host of the push service"},
            "expiration_time": {"type": ["number", "null"]},
            "created_at": {"type": "string"},
            "current": {"type": "boolean", "description": "made by the device (or token) asking"},
        },
    },
    "PushPayload": {
        "description": "the decrypted Web Push message (webhooks add absolute_url)",
        "type": "object",
        "required": ["title", "body", "url", "tag", "kind", "session_id", "request_id", "actions"],
        "properties": {
            "title": {"type": "string"},
            "body": {"type": "string"},
            "url": {"type": "string", "description": "/s/<session id> (/ for a test)"},
            "tag": {"type": "string"},
            "kind": {"enum": ["permission", "turn_ended", "session_failed", "test"]},
            "session_id": {"type": "string"},
            "request_id": {"type": ["string", "null"]},
            "actions": {
                "type": "array",
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "required": ["action", "title"],
                    "properties": {
                        "action": {"type": "string", "description": "the option_id to answer with"},
                        "title": {"enum": ["Allow once", "Deny"]},
                    },
                },
            },
            "absolute_url": {"type": "string"},
        },
    },
}

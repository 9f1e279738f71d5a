"""The component schemas of the OpenAPI document (``openapi.py`` holds the paths).

The schemas are the data shapes the API speaks (a session, a pending permission, an event); they
change when a payload changes, while the paths change when a route does, so each lives in its own
module. Both are checked by the tests against real responses. JSON Schema 2020-12, as OpenAPI 3.1
requires.
"""

from __future__ import annotations

from typing import Any

from qwen_daemon.sessions.events import EVENT_TYPES

SCHEMAS: dict[str, Any] = {
    "Id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    "Device": {
        "type": "object",
        "required": ["id", "name", "created_at", "last_seen_at", "current"],
        "additionalProperties": False,
        "properties": {
            "id": {"$ref": "#/components/schemas/Id"},
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "created_at": {"type": "string"},
            "last_seen_at": {"type": "string", "description": "updated at most once a minute"},
            "current": {"type": "boolean", "description": "the device making this request"},
        },
    },
    "Pairing": {
        "type": "object",
        "required": ["url", "code", "expires_at", "svg"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "description": "open it on the new device (once, before expires_at)"},
            "code": {"type": "string", "minLength": 22},
            "expires_at": {"type": "string"},
            "svg": {"type": "string", "description": "the QR code of url, an inline <svg> element"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "State": {
        "enum": ["starting", "idle", "running", "awaiting_permission", "closed", "failed"],
    },
    "Session": {
        "type": "object",
        "required": [
            "id",
            "title",
            "cwd",
            "state",
            "created_at",
            "updated_at",
            "url",
            "last_seq",
            "agent",
            "mode",
            "archived",
        ],
        "properties": {
            "id": {"$ref": "#/components/schemas/Id"},
            "title": {"type": "string"},
            "cwd": {"type": "string"},
            "state": {"$ref": "#/components/schemas/State"},
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "url": {"type": "string"},
            "last_seq": {"type": "integer", "minimum": 0},
            "agent": {"type": "string", "description": "the named agent running it"},
            "mode": {
                "type": ["string", "null"],
                "description": "its current mode id, if the agent has modes",
            },
            "archived": {
                "type": "boolean",
                "description": "listed only with ?archived=true; a prompt unarchives it",
            },
        },
    },
    "PermissionOption": {
        "type": "object",
        "required": ["option_id", "name", "kind"],
        "properties": {
            "option_id": {"type": "string"},
            "name": {"type": "string"},
            "kind": {"type": "string"},
        },
    },
    "Question": {
        "type": "object",
        "description": "something the agent asks the user inside a permission request",
        "required": ["question", "header", "options", "multi_select"],
        "additionalProperties": False,
        "properties": {
            "question": {"type": "string"},
            "header": {"type": "string", "description": "a short label for the question (may be empty)"},
            "options": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["label", "description"],
                    "additionalProperties": False,
                    "properties": {"label": {"type": "string"}, "description": {"type": "string"}},
                },
            },
            "multi_select": {"type": "boolean", "description": "answer with a list of labels"},
        },
    },
    "PendingPermission": {
        "type": "object",
        "required": ["request_id", "tool_call", "options", "created_at"],
        "additionalProperties": False,
        "properties": {
            "request_id": {"type": "string"},
            "tool_call": {"type": "object"},
            "options": {"type": "array", "items": {"$ref": "#/components/schemas/PermissionOption"}},
            "questions": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Question"},
                "description": "only when the request asks the user something; answer each by index",
            },
            "plan": {
                "type": "string",
                "description": "only for a plan approval (exit_plan_mode): the plan, as Markdown",
            },
            "created_at": {"type": "string"},
        },
    },
    "Answers": {
        "type": "object",
        "description": 'answers by question index: {"0": "SQLite"} for a single-select, {"1": ["A", "B"]} '
        "for a multi-select; a string that is not an offered label is free text (the user's "
        '"Other"). Every question needs one when an allow option is chosen.',
        "propertyNames": {"pattern": "^(0|[1-9][0-9]*)$"},
        "additionalProperties": {
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        },
    },
    "SessionDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/Session"},
            {
                "type": "object",
                "required": ["pending_permissions"],
                "properties": {
                    "pending_permissions": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/PendingPermission"},
                    },
                    "prompt_id": {"type": ["string", "null"]},
                    "failure": {"type": ["string", "null"]},
                    "modes": {
                        "type": ["object", "null"],
                        "description": "the modes the agent offers, "
                        "{available: [{id, name, description}], current_mode_id}, kept across restarts",
                    },
                },
            },
        ]
    },
    "Event": {
        "type": "object",
        "required": ["seq", "type", "ts"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "type": {"enum": sorted(EVENT_TYPES)},
            "ts": {"type": "string"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "pid", "instance_id", "started_at"],
        "properties": {
            "status": {"enum": ["ok", "degraded", "stopping"]},
            "reason": {
                "type": "string",
                "description": "only when degraded: why the session database cannot be written",
            },
            "version": {"type": "string"},
            "pid": {"type": "integer"},
            "instance_id": {"type": "string"},
            "started_at": {"type": "string"},
        },
    },
}

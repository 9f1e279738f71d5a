"""The OpenAPI 3.1 description of the HTTP API (served by ``openapi_route.py`` at ``/api/openapi.json``).

Kept next to the handlers and checked by the tests against the live route table and against real
responses, so it cannot drift: a route without an entry here, or a response that does not match
its schema, fails CI. The component schemas are derived from the contract (``openapi_schemas``);
the paths refer to them by name.
"""

from __future__ import annotations

from typing import Any

from qwen_daemon import __version__
from qwen_daemon.server.openapi_push import PUSH_PATHS
from qwen_daemon.server.openapi_schemas import schemas

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ERROR, "error") for s in (401, 429, *statuses)}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "schema": {"$ref": "#/components/schemas/Id"},
}
_AFTER = {
    "name": "after",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    "description": "only events with a greater seq",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


PATHS: dict[str, Any] = {
    "/health": {
        "get": {
            "summary": "liveness and identity (no token needed)",
            "security": [],
            "responses": {"200": _json(_ref("Health"), "the daemon is up")},
        }
    },
    "/api/openapi.json": {
        "get": {"summary": "this document", "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}
    },
    "/api/stop": {
        "post": {
            "summary": "stop the daemon gracefully",
            "responses": {"202": _json(_ref("Stopping"), "stopping"), **_errors()},
        }
    },
    "/api/token/rotate": {
        "post": {
            "summary": "issue a new token; connections opened with the old one are closed",
            "responses": {
                "200": _json(
                    _ref("Rotated"),
                    "rotated (the new token is in the token file, never in a response)",
                ),
                **_errors(),
            },
        }
    },
    "/api/sessions": {
        "get": {
            "summary": "list sessions (unarchived ones, or with ?archived=true the archived ones)",
            "parameters": [
                {"name": "archived", "in": "query", "required": False, "schema": {"enum": ["true", "false"]}}
            ],
            "responses": {
                "200": _json(_ref("SessionList"), "the sessions, oldest first"),
                **_errors(400),
            },
        },
        "post": {
            "summary": "create a session (and its agent session)",
            "requestBody": _body(_ref("CreateSession")),
            "responses": {"201": _json(_ref("SessionDetail"), "created"), **_errors(400, 413, 502, 503)},
        },
    },
    "/api/sessions/prune": {
        "post": {
            "summary": "delete closed sessions older than the retention time",
            "requestBody": _body(_ref("Prune"), required=False),
            "responses": {
                "200": _json(_ref("Pruned"), "ids removed"),
                **_errors(400, 413),
            },
        }
    },
    "/api/sessions/{session_id}": {
        "parameters": [_SESSION_ID],
        "get": {
            "summary": "one session",
            "responses": {"200": _json(_ref("SessionDetail"), "it"), **_errors(404)},
        },
        "delete": {
            "summary": "cancel, close and forget a session",
            "responses": {"204": {"description": "gone"}, **_errors(404)},
        },
        "patch": {
            "summary": "rename and/or archive or unarchive a session",
            "requestBody": _body(_ref("EditSession")),
            "responses": {"200": _json(_ref("SessionDetail"), "changed"), **_errors(400, 404, 413)},
        },
    },
    "/api/sessions/{session_id}/reopen": {
        "parameters": [_SESSION_ID],
        "post": {
            "summary": "bring a failed or closed session back to idle (an open one: unchanged)",
            "description": "Clears the failure and its agent's crash count; the next prompt starts the "
            "agent and restores the conversation. 409 agent_unavailable when its named agent is not "
            "in the config or cannot be found.",
            "responses": {"200": _json(_ref("SessionDetail"), "idle again"), **_errors(404, 409, 503)},
        },
    },
    "/api/sessions/{session_id}/prompt": {
        "parameters": [_SESSION_ID],
        "post": {
            "summary": "start a turn (refused while one runs)",
            "requestBody": _body(_ref("Prompt")),
            "responses": {
                "202": _json(_ref("PromptAccepted"), "accepted"),
                **_errors(400, 404, 409, 413, 507),
            },
        },
    },
    "/api/sessions/{session_id}/mode": {
        "parameters": [_SESSION_ID],
        "post": {
            "summary": "switch the session to a mode its agent advertises",
            "requestBody": _body(_ref("SetMode")),
            "responses": {
                "200": _json(_ref("SessionDetail"), "switched"),
                **_errors(400, 404, 409, 413, 502),
            },
        },
    },
    "/api/agents": {
        "get": {
            "summary": "named agents, their modes, running workspaces and warm spares",
            "responses": {
                "200": _json(_ref("AgentList"), "the agents"),
                **_errors(),
            },
        }
    },
    "/api/agents/{agent}/warm": {
        "parameters": [{"name": "agent", "in": "path", "required": True, "schema": _ref("Id")}],
        "post": {
            "summary": "start a spare agent for a workspace now",
            "requestBody": _body(_ref("Warm")),
            "responses": {
                "202": _json(_ref("Warming"), "warming"),
                **_errors(400, 413, 502),
            },
        },
    },
    "/api/sessions/{session_id}/cancel": {
        "parameters": [_SESSION_ID],
        "post": {
            "summary": "cancel the running turn",
            "responses": {"202": _json(_ref("Cancelling"), "cancelling"), **_errors(404, 409)},
        },
    },
    "/api/sessions/{session_id}/permissions/{request_id}": {
        "parameters": [
            _SESSION_ID,
            {"name": "request_id", "in": "path", "required": True, "schema": _ref("Id")},
        ],
        "post": {
            "summary": "answer a permission request (the first answer wins)",
            "description": "option_id is one of the request's options; answers answer its questions, "
            "if it has any (400, nothing forwarded, for an unknown index, a wrong shape, answers to a "
            "request without questions, or a question left unanswered with an allow option).",
            "requestBody": _body(_ref("PermissionAnswer")),
            "responses": {
                "200": _json(_ref("PermissionAnswered"), "answered"),
                **_errors(400, 404, 409),
            },
        },
    },
    "/api/sessions/{session_id}/events": {
        "parameters": [_SESSION_ID, _AFTER],
        "get": {
            "summary": "events after a seq",
            "responses": {
                "200": _json(_ref("EventsPage"), "events in seq order"),
                **_errors(400, 404),
            },
        },
    },
    "/api/sessions/{session_id}/ws": {
        "parameters": [_SESSION_ID, _AFTER],
        "get": {
            "summary": "WebSocket, read-only: hello, replay after `after`, then live events",
            "description": "Each server message is one or more frames, one JSON object per line "
            "(newline-delimited JSON: split the message on \\n and parse each line); frames the "
            "daemon queued in one event-loop turn share a message. A client sends one frame per "
            "message. "
            "Server frames: {type: hello, instance_id, session, last_seq} first, then "
            "the events (each carries seq), and control frames without seq: {type: ack, op, id?}, "
            "{type: error, id?, error: {code, message}}. Client frames are about the connection "
            "only: {type: visibility, visible} | {type: ping}, each with an optional id echoed in "
            "the reply ({type: ack, op: visibility, visible} or {type: ack, op: pong, last_seq}). "
            "Commands (prompt, cancel, permission answers, mode) are the REST requests above; any "
            "other frame gets {type: error, error: {code: bad_request}} and the socket stays open. "
            "A socket starts not visible; while one of a device's sockets on the session is "
            "visible, that device gets no push about it. A client that stops reading is closed "
            "with 4008; it reconnects with after=<its last seq> and loses nothing.",
            "responses": {"101": {"description": "switching protocols"}, **_errors(400, 403, 404, 429)},
        },
    },
    **PUSH_PATHS,
}

_DEVICE_ID = {"name": "device_id", "in": "path", "required": True, "schema": _ref("Id")}
#: devices and pairing (``devices_api.py``); ``/pair`` and ``/devices`` are pages, not API
PATHS.update(
    {
        "/api/devices": {
            "get": {
                "summary": "the logged-in browsers (devices); `current` marks the one asking",
                "responses": {
                    "200": _json(_ref("DeviceList"), "the devices, oldest first"),
                    **_errors(),
                },
            }
        },
        "/api/devices/{device_id}": {
            "parameters": [_DEVICE_ID],
            "patch": {
                "summary": "rename a device",
                "requestBody": _body(_ref("RenameDevice")),
                "responses": {"200": _json(_ref("Device"), "renamed"), **_errors(400, 404, 413, 507)},
            },
            "delete": {
                "summary": "log a device out: its cookie stops working, its WebSockets close (4001)",
                "responses": {"204": {"description": "revoked"}, **_errors(404, 507)},
            },
        },
        "/api/pairing": {
            "post": {
                "summary": "a one-time pairing code (valid 120 s) for a new device, its URL and QR code",
                "description": "Opening `url` (GET /pair?code=…, on public_url when set) shows a "
                "page whose button (POST /pair, form field `code`) logs that browser in as a new "
                "device and redirects (303) to /: the GET alone spends nothing (link previews). A "
                "used or expired code gets an HTML page with 410, an unknown one 404, too many wrong "
                "codes 429. At most 5 codes are live at once: a new one retires the oldest; a "
                "revoked device's codes and, on a new token, all codes stop working.",
                "responses": {"201": _json(_ref("Pairing"), "a new code"), **_errors()},
            }
        },
    }
)


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qwen-daemon",
            "version": __version__,
            "description": "Keeps ACP coding-agent sessions alive; every error body is "
            '{"error": {"code", "message"}}.',
        },
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": PATHS,
    }

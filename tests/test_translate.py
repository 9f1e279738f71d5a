"""ACP → the daemon's vocabulary (``agents/translate.py``): every update kind of the pinned SDK, nested
data snake_cased, the agent's own data passed as sent, and events stored by older versions upgraded."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.agents.translate import (
    UPDATE_KINDS,
    modes_of,
    permission_options,
    translate_notification,
    translate_update,
    upgrade_event,
)
from qwen_daemon.contract.events import EVENTS, EventType

RAW_INPUT = {"file_path": "/a", "oldString": "x", "_meta": {"keep": 1}}  # the tool's own: untouched

#: (ACP update, expected event type, expected fields): one row at least per kind the SDK defines
CASES: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
    (
        {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "hi"}},
        "agent_message_chunk",
        {"text": "hi"},
    ),
    (
        {
            "sessionUpdate": "agent_message_chunk",
            "content": {"type": "text", "text": ""},
            "_meta": {"usage": {"totalTokens": 3}},
            "messageId": "m1",
        },
        "agent_message_chunk",
        {"text": "", "meta": {"usage": {"totalTokens": 3}}, "message_id": "m1"},
    ),
    (
        {
            "sessionUpdate": "agent_message_chunk",
            "content": {"type": "image", "data": "QQ==", "mimeType": "image/png"},
        },
        "agent_message_chunk",
        {"text": "", "content": {"type": "image", "data": "QQ==", "mime_type": "image/png"}},
    ),
    ({"sessionUpdate": "agent_message_chunk"}, "agent_message_chunk", {"text": ""}),
    (
        {"sessionUpdate": "agent_thought_chunk", "content": {"type": "text", "text": "hmm"}},
        "agent_thought_chunk",
        {"text": "hmm"},
    ),
    (
        {
            "sessionUpdate": "user_message_chunk",
            "content": {
                "type": "resource",
                "resource": {"uri": "file:///a", "mimeType": "text/plain", "text": "x"},
                "annotations": {"lastModified": "2026-01-01"},
            },
        },
        "user_message_chunk",
        {
            "text": "",
            "content": {
                "type": "resource",
                "resource": {"uri": "file:///a", "mime_type": "text/plain", "text": "x"},
                "annotations": {"last_modified": "2026-01-01"},
            },
        },
    ),
    (
        {
            "sessionUpdate": "tool_call",
            "toolCallId": "t1",
            "title": "Write a",
            "kind": "edit",
            "status": "pending",
            "rawInput": RAW_INPUT,
            "locations": [{"path": "/a", "line": 3, "_meta": {"k": 1}}],
            "content": [],
            "_meta": {"toolName": "write_file"},
        },
        "tool_call",
        {
            "tool_call_id": "t1",
            "title": "Write a",
            "kind": "edit",
            "status": "pending",
            "raw_input": RAW_INPUT,
            "locations": [{"path": "/a", "line": 3, "meta": {"k": 1}}],
            "content": [],
            "meta": {"toolName": "write_file"},
        },
    ),
    (
        {
            "sessionUpdate": "tool_call_update",
            "toolCallId": "t1",
            "status": "completed",
            "content": [
                {"type": "diff", "path": "/a", "oldText": None, "newText": "x"},
                {"type": "terminal", "terminalId": "term-1"},
                {
                    "type": "content",
                    "content": {
                        "type": "resource_link",
                        "uri": "file:///a",
                        "name": "a",
                        "mimeType": "text/x",
                    },
                },
            ],
            "rawOutput": {"exitCode": 0},
        },
        "tool_call_update",
        {
            "tool_call_id": "t1",
            "status": "completed",
            "content": [
                {"type": "diff", "path": "/a", "old_text": None, "new_text": "x"},
                {"type": "terminal", "terminal_id": "term-1"},
                {
                    "type": "content",
                    "content": {
                        "type": "resource_link",
                        "uri": "file:///a",
                        "name": "a",
                        "mime_type": "text/x",
                    },
                },
            ],
            "raw_output": {"exitCode": 0},
        },
    ),
    (
        {"sessionUpdate": "plan", "entries": [{"content": "a", "status": "pending", "priority": "low"}]},
        "plan",
        {"entries": [{"content": "a", "status": "pending", "priority": "low"}]},
    ),
    (
        {
            "sessionUpdate": "plan_update",
            "plan": {
                "type": "items",
                "planId": "p",
                "entries": [{"content": "a", "status": "completed", "priority": "high"}],
            },
        },
        "plan",
        {"entries": [{"content": "a", "status": "completed", "priority": "high"}], "plan_id": "p"},
    ),
    (
        {"sessionUpdate": "plan_update", "plan": {"type": "markdown", "planId": "p", "content": "# Plan"}},
        "plan",
        {"entries": [], "plan_id": "p", "markdown": "# Plan"},
    ),
    (
        {"sessionUpdate": "plan_update", "plan": {"type": "file", "planId": "p", "uri": "file:///plan.md"}},
        "plan",
        {"entries": [], "plan_id": "p", "uri": "file:///plan.md"},
    ),
    (
        {"sessionUpdate": "plan_removed", "planId": "p"},
        "plan",
        {"entries": [], "removed": True, "plan_id": "p"},
    ),
    (
        {
            "sessionUpdate": "available_commands_update",
            "availableCommands": [
                {
                    "name": "init",
                    "description": "Write QWEN.md",
                    "input": {"hint": "what"},
                    "_meta": {"x": 1},
                },
                {"name": "bare", "description": "No input"},
            ],
        },
        "commands_changed",
        {
            "commands": [
                {"name": "init", "description": "Write QWEN.md", "input": {"hint": "what"}, "meta": {"x": 1}},
                {"name": "bare", "description": "No input"},
            ]
        },
    ),
    ({"sessionUpdate": "current_mode_update", "currentModeId": "plan"}, "mode_changed", {"mode_id": "plan"}),
    (
        {
            "sessionUpdate": "config_option_update",
            "configOptions": [
                {
                    "type": "select",
                    "id": "model",
                    "name": "Model",
                    "currentValue": "fast",
                    "category": "model",
                    "options": [
                        {"value": "fast", "name": "Fast"},
                        {"group": "g", "name": "G", "options": [{"value": "slow", "name": "Slow"}]},
                    ],
                },
                {"type": "boolean", "id": "think", "name": "Think", "currentValue": True},
            ],
        },
        "config_changed",
        {
            "config_options": [
                {
                    "type": "select",
                    "id": "model",
                    "name": "Model",
                    "current_value": "fast",
                    "category": "model",
                    "options": [
                        {"value": "fast", "name": "Fast"},
                        {"group": "g", "name": "G", "options": [{"value": "slow", "name": "Slow"}]},
                    ],
                },
                {"type": "boolean", "id": "think", "name": "Think", "current_value": True},
            ]
        },
    ),
    (
        {
            "sessionUpdate": "session_info_update",
            "title": "Fix the parser",
            "updatedAt": "2026-12-07T10:00:00Z",
        },
        "session_info",
        {"title": "Fix the parser", "updated_at": "2026-12-07T10:00:00Z"},
    ),
    (
        {
            "sessionUpdate": "usage_update",
            "used": 1200,
            "size": 128000,
            "cost": {"amount": 0.02, "currency": "USD"},
        },
        "usage",
        {"used": 1200, "size": 128000, "cost": {"amount": 0.02, "currency": "USD"}},
    ),
    # what no table knows stays the agent's, whole
    (
        {"sessionUpdate": "from_the_future", "someField": 1},
        "agent_update",
        {"update": {"sessionUpdate": "from_the_future", "someField": 1}},
    ),
    ({"no": "kind"}, "agent_update", {"update": {"no": "kind"}}),
    (
        {"sessionUpdate": "current_mode_update"},
        "agent_update",
        {"update": {"sessionUpdate": "current_mode_update"}},
    ),
]


@pytest.mark.parametrize(("update", "event_type", "fields"), CASES)
def test_translate_update(update: dict[str, Any], event_type: str, fields: dict[str, Any]) -> None:
    assert translate_update(update) == (event_type, fields)
    assert event_type in EVENTS
    # translating is idempotent: what older versions stored half-translated upgrades the same way
    if event_type != "agent_update":
        assert upgrade_event(event_type, fields) == (event_type, fields)


def test_every_update_kind_of_the_pinned_sdk_is_translated() -> None:
    """A kind the SDK adds (an upgrade of agent-client-protocol) fails here until it has a row."""
    from acp import schema

    union = schema.SessionNotification.model_fields["update"].annotation
    kinds = {
        typing.get_args(member.model_fields["session_update"].annotation)[0]
        for member in typing.get_args(union)
    }
    assert kinds == set(UPDATE_KINDS)
    assert kinds <= {update.get("sessionUpdate") for update, _, _ in CASES}


def test_event_types_are_listed_once() -> None:
    assert set(typing.get_args(EventType)) == set(EVENTS)
    assert {event_type for event_type, _ in UPDATE_KINDS.values()} <= set(EVENTS)


def test_notification_stays_the_agents() -> None:
    params = {"sessionId": "s", "currentModeId": "plan"}
    assert translate_notification("qwen/notify/session/mode-update", params) == (
        "agent_update",
        {"method": "qwen/notify/session/mode-update", "params": params},
    )


def test_permission_options_keep_agent_order_and_skip_garbage() -> None:
    raw = [
        {"optionId": "proceed_once", "name": "Allow once", "kind": "allow_once"},
        "garbage",
        {"optionId": "cancel", "name": "Reject", "kind": "reject_once"},
    ]
    assert permission_options(raw) == [  # type: ignore[arg-type]
        {"option_id": "proceed_once", "name": "Allow once", "kind": "allow_once"},
        {"option_id": "cancel", "name": "Reject", "kind": "reject_once"},
    ]


def test_modes_in_the_daemons_shape() -> None:
    acp_modes = {
        "currentModeId": "plan",
        "availableModes": [
            {"id": "plan", "name": "Plan", "description": "Read only", "_meta": {"x": 1}},
            {"id": "default", "name": "Default"},
            {"name": "no id"},
        ],
    }
    ours = {
        "available": [
            {"id": "plan", "name": "Plan", "description": "Read only"},
            {"id": "default", "name": "Default"},
        ],
        "current_mode_id": "plan",
    }
    assert modes_of(acp_modes) == ours
    assert modes_of(ours) == ours  # idempotent: modes stored either way read the same
    assert modes_of("garbage") is None and modes_of(None) is None


#: (type, fields as a version before issue 16 stored them, today's type and fields)
OLD_EVENTS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    (
        "agent_update",
        {"update": {"sessionUpdate": "current_mode_update", "currentModeId": "auto-edit"}},
        "mode_changed",
        {"mode_id": "auto-edit"},
    ),
    (
        "agent_update",
        {
            "update": {
                "sessionUpdate": "available_commands_update",
                "availableCommands": [{"name": "a", "description": "b"}],
            }
        },
        "commands_changed",
        {"commands": [{"name": "a", "description": "b"}]},
    ),
    (
        "agent_update",
        {"update": {"method": "qwen/notify/session/mode-update", "params": {"currentModeId": "plan"}}},
        "agent_update",
        {"method": "qwen/notify/session/mode-update", "params": {"currentModeId": "plan"}},
    ),
    (
        "tool_call_update",
        {
            "tool_call_id": "t1",
            "content": [
                {"type": "diff", "path": "/a", "oldText": "x", "newText": "y"},
                {"type": "terminal", "terminalId": "t"},
            ],
            "locations": [{"path": "/a", "_meta": {}}],
            "raw_input": {"oldText": "as the tool named it"},
        },
        "tool_call_update",
        {
            "tool_call_id": "t1",
            "content": [
                {"type": "diff", "path": "/a", "old_text": "x", "new_text": "y"},
                {"type": "terminal", "terminal_id": "t"},
            ],
            "locations": [{"path": "/a", "meta": {}}],
            "raw_input": {"oldText": "as the tool named it"},
        },
    ),
    (
        "agent_message_chunk",
        {"text": "", "content": {"type": "image", "data": "x", "mimeType": "image/png"}},
        "agent_message_chunk",
        {"text": "", "content": {"type": "image", "data": "x", "mime_type": "image/png"}},
    ),
    (
        "permission_request",
        {
            "request_id": "r",
            "tool_call": {"tool_call_id": "t", "content": [{"type": "diff", "path": "/a", "newText": "y"}]},
            "options": [{"option_id": "proceed_once", "name": "Allow", "kind": "allow_once"}],
            "created_at": "2026-01-01T00:00:00.000Z",
        },
        "permission_request",
        {
            "request_id": "r",
            "tool_call": {"tool_call_id": "t", "content": [{"type": "diff", "path": "/a", "new_text": "y"}]},
            "options": [{"option_id": "proceed_once", "name": "Allow", "kind": "allow_once"}],
            "created_at": "2026-01-01T00:00:00.000Z",
        },
    ),
    (
        "plan",
        {"entries": [{"content": "a", "status": "pending", "priority": "low", "_meta": {}}]},
        "plan",
        {"entries": [{"content": "a", "status": "pending", "priority": "low", "meta": {}}]},
    ),
    ("user_message", {"text": "hi", "prompt_id": "p"}, "user_message", {"text": "hi", "prompt_id": "p"}),
    (
        "agent_update",
        {"update": {"sessionUpdate": "from_the_future"}},
        "agent_update",
        {"update": {"sessionUpdate": "from_the_future"}},
    ),
]


@pytest.mark.parametrize(("old_type", "old", "new_type", "new"), OLD_EVENTS)
def test_upgrade_event_stored_by_an_older_version(
    old_type: str, old: dict[str, Any], new_type: str, new: dict[str, Any]
) -> None:
    assert upgrade_event(old_type, old) == (new_type, new)
    assert upgrade_event(new_type, new) == (new_type, new)


#: names only ACP spells this way; the daemon's vocabulary has a snake_case one for each
ACP_NAMES = re.compile(
    r"\b(sessionUpdate|currentModeId|availableModes|toolCallId|rawInput|rawOutput|oldText|newText|mimeType"
    r"|terminalId|availableCommands|configOptions|currentValue|messageId|planId)\b|[\"'.]_meta\b"
)
PACKAGE = Path(__file__).resolve().parent.parent / "qwen_daemon"


def test_only_agents_knows_acps_naming() -> None:
    """Every browser module (and every Python module outside ``agents/``) reads the daemon's
    vocabulary only: an ACP name creeping back in fails here."""
    static = PACKAGE / "web" / "static"
    browser = [p for p in static.rglob("*.js") if "vendor" not in p.parts]
    python = [p for p in PACKAGE.rglob("*.py") if "agents" not in p.parts and p.name != "migrations.py"]
    assert len(browser) > 10
    found = []
    for path in browser + python:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            is_prose = (path.suffix == ".py" and line.lstrip().startswith(("#", '"""'))) or "``" in line
            if not is_prose and ACP_NAMES.search(line):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert found == []


def _without_agent_data(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_agent_data(v)
            for k, v in value.items()
            if k not in ("raw_input", "raw_output", "meta")
        }
    if isinstance(value, list):
        return [_without_agent_data(v) for v in value]
    return value


def test_what_real_qwen_code_sent_translates_fully() -> None:
    """The updates and permission requests recorded from real Qwen Code (the fixture the fake agent
    replays): every update has a daemon type, and no ACP name is left outside the agent's own data."""
    from qwen_daemon.agents.questions import read_permission_request

    fixture = json.loads((Path(__file__).parent / "fixtures" / "qwen_permissions.json").read_text())
    seen = set()
    for scenario in fixture["scenarios"].values():
        for item in scenario["before"] + scenario["after"]:
            if "update" not in item and "sessionUpdate" not in item:
                continue  # an extension notification: the agent's, by design
            event_type, fields = translate_update(item.get("update", item))
            assert event_type != "agent_update", item
            assert not ACP_NAMES.search(json.dumps(_without_agent_data(fields))), fields
            seen.add(event_type)
        asked = read_permission_request(scenario["request"]).fields()
        assert not ACP_NAMES.search(json.dumps(_without_agent_data(asked))), asked
    assert {"tool_call", "tool_call_update", "mode_changed"} <= seen

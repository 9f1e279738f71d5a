"""ACP ``session/update`` payloads → daemon events (pure functions, table-driven).

Input is the update as it travels on the wire (camelCase JSON, ``sessionUpdate`` naming the kind);
output is ``(event_type, fields)`` with snake_case field names. Agent-owned payloads nested inside
(tool content, plan entries, raw input) are passed through untouched: they are the agent's data.
Any kind this table does not know becomes ``agent_update`` carrying the whole update, so nothing
an agent sends is ever dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Fields = dict[str, Any]

_TOOL_FIELDS = {
    "toolCallId": "tool_call_id",
    "title": "title",
    "kind": "kind",
    "status": "status",
    "content": "content",
    "locations": "locations",
    "rawInput": "raw_input",
    "rawOutput": "raw_output",
}


def _text_of(content: Any) -> str:
    if isinstance(content, dict) and content.get("type") == "text" and isinstance(content.get("text"), str):
        return str(content["text"])
    return ""


def _chunk(update: dict[str, Any]) -> Fields:
    content = update.get("content")
    fields: Fields = {"text": _text_of(content)}
    if isinstance(content, dict) and content.get("type") != "text":
        fields["content"] = content
    if "_meta" in update:
        fields["meta"] = update["_meta"]
    return fields


def tool_call_fields(update: dict[str, Any]) -> Fields:
    """The snake_case view of an ACP tool call (also used inside permission requests)."""
    fields = {ours: update[theirs] for theirs, ours in _TOOL_FIELDS.items() if theirs in update}
    if "_meta" in update:
        fields["meta"] = update["_meta"]
    return fields


def _plan(update: dict[str, Any]) -> Fields:
    entries = update.get("entries")
    return {"entries": entries if isinstance(entries, list) else []}


_TABLE: dict[str, tuple[str, Callable[[dict[str, Any]], Fields]]] = {
    "agent_message_chunk": ("agent_message_chunk", _chunk),
    "agent_thought_chunk": ("agent_thought_chunk", _chunk),
    "tool_call": ("tool_call", tool_call_fields),
    "tool_call_update": ("tool_call_update", tool_call_fields),
    "plan": ("plan", _plan),
}


def translate_update(update: dict[str, Any]) -> tuple[str, Fields]:
    """Map one ACP update to a daemon event type and its fields."""
    kind = update.get("sessionUpdate")
    entry = _TABLE.get(kind) if isinstance(kind, str) else None
    if entry is None:
        return "agent_update", {"update": update}
    event_type, convert = entry
    return event_type, convert(update)


def permission_options(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ACP permission options → ``[{option_id, name, kind}]``, in the agent's order."""
    return [
        {
            "option_id": str(o.get("optionId", "")),
            "name": str(o.get("name", "")),
            "kind": str(o.get("kind", "")),
        }
        for o in options
        if isinstance(o, dict)
    ]

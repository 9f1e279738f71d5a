"""ACP → the daemon's event vocabulary (pure functions, table-driven): the one place ACP's naming ends.

Why here: ``agents/`` is the only package that reads ACP, so no session module and no browser
module has to know two naming schemes. Input is an update as it travels on the wire (camelCase
JSON, ``sessionUpdate`` naming the kind); output is ``(event_type, fields)`` in the shapes of
:mod:`qwen_daemon.contract.events`, snake_case all the way down (tool content, locations, plan
entries, content blocks, commands, config options).

What is not renamed: the agent's own data, passed as sent: a tool's ``raw_input`` / ``raw_output``
(its arguments and result) and ``meta`` (ACP's ``_meta`` extension bag). A key this module has no
name for is snake_cased rather than dropped, so a field newer than the pinned SDK still arrives,
in the daemon's spelling. Only an update kind no table knows becomes ``agent_update`` with the
whole update, so nothing an agent sends is ever lost.

Cost: this runs once per update on the relay path. Plain dict walks with a cached key table, not
the SDK's pydantic models (a validate + dump round trip costs tens of µs per chunk, and would drop
the non-standard fields Qwen Code sends); the hottest case, a text chunk, builds one small dict.

Translating is idempotent (a translated structure translates to itself): :func:`upgrade_event`
uses that to bring events stored by older versions into today's vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from qwen_daemon.contract.modes import Mode, Modes

Fields = dict[str, Any]
Convert = Callable[[Any], Any]

#: ACP key → the daemon's, filled on first sight of each key (see :func:`_key`)
_KEYS: dict[str, str] = {"_meta": "meta"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _key(name: str) -> str:
    """``toolCallId`` → ``tool_call_id``; ``_meta`` → ``meta``; snake_case stays as it is."""
    ours = _KEYS.get(name)
    if ours is None:
        ours = _CAMEL.sub("_", name).lower()
        if len(_KEYS) < 4096:  # bounded: an agent inventing keys cannot grow it without end
            _KEYS[name] = ours
    return ours


def _struct(nested: dict[str, Convert] | None = None) -> Convert:
    """A converter for one ACP object: every key renamed, the values of ``nested`` keys converted
    by theirs, the rest (scalars and the agent's own data) kept as they are."""
    inner = nested or {}

    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: Fields = {}
        for name, item in value.items():
            key = _key(name)
            walk = inner.get(key)
            out[key] = walk(item) if walk is not None else item
        return out

    return convert


def _list(convert: Convert) -> Convert:
    def each(value: Any) -> Any:
        return [convert(item) for item in value] if isinstance(value, list) else value

    return each


_flat = _struct()
content_block = _struct({"annotations": _flat, "resource": _flat})
_tool_content = _struct({"content": content_block})
_location = _flat
_plan_entry = _flat
_TOOL_NESTED: dict[str, Convert] = {"content": _list(_tool_content), "locations": _list(_location)}
_tool_call = _struct(_TOOL_NESTED)
_command = _struct({"input": _flat})
_select_option = _flat
_config_option = _struct({"options": _list(_struct({"options": _list(_select_option)}))})
_usage = _struct({"cost": _flat})


def _without_kind(update: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in update.items() if k != "sessionUpdate"}


# --- one function per update kind ---------------------------------------------------------------


def _chunk(update: dict[str, Any]) -> Fields:
    """``{text}``, plus ``content`` when it is not plain text; the hottest path: keep it lean."""
    content = update.get("content")
    if isinstance(content, dict) and content.get("type") == "text":
        text = content.get("text")
        fields: Fields = {"text": text if isinstance(text, str) else ""}
    elif isinstance(content, dict):
        fields = {"text": "", "content": content_block(content)}
    else:
        fields = {"text": ""}
    if "_meta" in update:
        fields["meta"] = update["_meta"]
    if "messageId" in update:
        fields["message_id"] = update["messageId"]
    return fields


def tool_call_fields(tool: dict[str, Any]) -> Fields:
    """The daemon's view of an ACP tool call (an update, or the one inside a permission request)."""
    converted: Fields = _tool_call(_without_kind(tool))
    return converted


def _plan(update: dict[str, Any]) -> Fields:
    fields: Fields = _struct({"entries": _list(_plan_entry)})(_without_kind(update))
    if not isinstance(fields.get("entries"), list):
        fields["entries"] = []
    return fields


def _plan_update(update: dict[str, Any]) -> Fields:
    """ACP's (unstable) ``plan_update``: a checklist, a Markdown plan or a plan file, as ``plan``."""
    plan = update.get("plan")
    plan = plan if isinstance(plan, dict) else {}
    fields: Fields = {"entries": [_plan_entry(e) for e in plan.get("entries") or [] if isinstance(e, dict)]}
    if "planId" in plan:
        fields["plan_id"] = plan["planId"]
    if plan.get("type") == "markdown" and isinstance(plan.get("content"), str):
        fields["markdown"] = plan["content"]
    if plan.get("type") == "file" and isinstance(plan.get("uri"), str):
        fields["uri"] = plan["uri"]
    if "_meta" in update:
        fields["meta"] = update["_meta"]
    return fields


def _plan_removed(update: dict[str, Any]) -> Fields:
    fields: Fields = {"entries": [], "removed": True}
    if "planId" in update:
        fields["plan_id"] = update["planId"]
    return fields


def _commands(update: dict[str, Any]) -> Fields:
    commands = update.get("availableCommands")
    return {
        "commands": [_command(c) for c in commands if isinstance(c, dict)]
        if isinstance(commands, list)
        else []
    }


def _mode(update: dict[str, Any]) -> Fields:
    return {"mode_id": update.get("currentModeId")}


def _config(update: dict[str, Any]) -> Fields:
    options = update.get("configOptions")
    listed = [_config_option(o) for o in options if isinstance(o, dict)] if isinstance(options, list) else []
    return {"config_options": listed}


def _session_info(update: dict[str, Any]) -> Fields:
    fields: Fields = _flat(_without_kind(update))
    return fields


def _usage_update(update: dict[str, Any]) -> Fields:
    fields: Fields = _usage(_without_kind(update))
    return fields


#: ACP update kind → (event type, how its fields are made); every kind of the pinned SDK
#: (``acp.schema.SessionNotification.update``; a test keeps the two in step)
UPDATE_KINDS: dict[str, tuple[str, Callable[[dict[str, Any]], Fields]]] = {
    "agent_message_chunk": ("agent_message_chunk", _chunk),
    "agent_thought_chunk": ("agent_thought_chunk", _chunk),
    "user_message_chunk": ("user_message_chunk", _chunk),
    "tool_call": ("tool_call", tool_call_fields),
    "tool_call_update": ("tool_call_update", tool_call_fields),
    "plan": ("plan", _plan),
    "plan_update": ("plan", _plan_update),
    "plan_removed": ("plan", _plan_removed),
    "available_commands_update": ("commands_changed", _commands),
    "current_mode_update": ("mode_changed", _mode),
    "config_option_update": ("config_changed", _config),
    "session_info_update": ("session_info", _session_info),
    "usage_update": ("usage", _usage_update),
}


def translate_update(update: dict[str, Any]) -> tuple[str, Fields]:
    """One ACP ``session/update`` payload → ``(event type, fields)`` in the daemon's vocabulary."""
    kind = update.get("sessionUpdate")
    entry = UPDATE_KINDS.get(kind) if isinstance(kind, str) else None
    if entry is None or (kind == "current_mode_update" and not isinstance(update.get("currentModeId"), str)):
        return "agent_update", {"update": update}
    event_type, convert = entry
    return event_type, convert(update)


def translate_notification(method: str, params: Any) -> tuple[str, Fields]:
    """An agent's extension notification (e.g. ``qwen/notify/...``): no translation knows it."""
    return "agent_update", {"method": method, "params": params}


def permission_options(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ACP permission options → ``[{option_id, name, kind}]``, in the agent's order."""
    return [
        {
            "option_id": str(o.get("optionId", o.get("option_id", ""))),
            "name": str(o.get("name", "")),
            "kind": str(o.get("kind", "")),
        }
        for o in options
        if isinstance(o, dict)
    ]


# --- session modes ------------------------------------------------------------------------------


def session_modes(answer: dict[str, Any]) -> Modes | None:
    """The ``modes`` of an ACP ``session/new`` / ``load`` / ``resume`` answer, in the daemon's shape
    (``{available: [{id, name, description}], current_mode_id}``); None when it has none."""
    return modes_of(answer.get("modes"))


def modes_of(raw: Any) -> Modes | None:
    """ACP ``{currentModeId, availableModes}`` (or an already translated ``modes``) → ``Modes``."""
    if not isinstance(raw, dict):
        return None
    listed = raw.get("availableModes", raw.get("available"))
    current = raw.get("currentModeId", raw.get("current_mode_id"))
    return {
        "available": mode_list(listed),
        "current_mode_id": current if isinstance(current, str) else None,
    }


def mode_list(raw: Any) -> list[Mode]:
    """ACP ``SessionMode`` objects → ``[{id, name, description}]`` (anything without an id skipped)."""
    modes: list[Mode] = []
    for m in raw if isinstance(raw, list) else []:
        if isinstance(m, dict) and isinstance(m.get("id"), str):
            name, description = m.get("name"), m.get("description")
            mode: Mode = {"id": m["id"], "name": name if isinstance(name, str) else m["id"]}
            if isinstance(description, str):
                mode["description"] = description
            modes.append(mode)
    return modes


# --- events stored by older versions ------------------------------------------------------------

#: event types whose stored fields older versions kept (partly) in ACP's naming
_NESTED_BEFORE: dict[str, Callable[[Fields], Fields]] = {
    "tool_call": lambda f: _tool_call(f),
    "tool_call_update": lambda f: _tool_call(f),
    "agent_message_chunk": lambda f: _struct({"content": content_block})(f),
    "agent_thought_chunk": lambda f: _struct({"content": content_block})(f),
    "plan": lambda f: _struct({"entries": _list(_plan_entry)})(f),
    "permission_request": lambda f: _struct({"tool_call": _tool_call, "options": _list(_option)})(f),
}


def _option(value: Any) -> Any:
    return permission_options([value])[0] if isinstance(value, dict) else value


def upgrade_event(event_type: str, fields: Fields) -> tuple[str, Fields]:
    """An event as an older version stored it → today's ``(event type, fields)``.

    Before issue 16 a mode change was an ``agent_update`` carrying ACP's
    ``current_mode_update``, as were the command list and other kinds translated now; nested data
    (tool content, locations, content blocks, plan entries) kept ACP's camelCase. ``fields`` holds
    the event's fields only (no seq/type/ts). An event already in today's shape comes back equal.
    """
    if event_type == "agent_update":
        update = fields.get("update")
        if isinstance(update, dict):
            if "sessionUpdate" in update:
                return translate_update(update)
            if set(update) == {"method", "params"}:  # a notification, as it was once stored
                return translate_notification(str(update["method"]), update["params"])
        return event_type, fields
    upgrade = _NESTED_BEFORE.get(event_type)
    return (event_type, upgrade(fields)) if upgrade is not None else (event_type, fields)

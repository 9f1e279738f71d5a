"""Every event a session emits, in the daemon's own vocabulary: the one place its shape is written.

An event on the wire is ``{"seq", "type", "ts", ...fields}``. The classes below are the fields of
each type (``TypedDict``: at run time an event stays the plain dict the relay already builds, so the
contract costs the hot path nothing); ``EVENTS`` maps each type name to its class, and the OpenAPI
document, request validation and the generated ``web/static/js/protocol.js`` are all derived from it.

Vocabulary: snake_case throughout, nested data included. ACP's camelCase never leaves ``agents/``,
the one package that reads ACP; ``agent_update`` carries only what no translation knows (an agent's
extension notification or an update kind newer than the pinned SDK), as the agent's raw data.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from qwen_daemon.contract.states import SessionState


class ContentBlock(TypedDict):
    """A piece of content (ACP ContentBlock, translated): text, image, audio or a resource."""

    type: str
    text: NotRequired[str]
    mime_type: NotRequired[str]
    data: NotRequired[str]
    uri: NotRequired[str]
    name: NotRequired[str]
    title: NotRequired[str]
    description: NotRequired[str]
    size: NotRequired[int]
    resource: NotRequired[dict[str, Any]]  # {uri, text | blob, mime_type}
    annotations: NotRequired[dict[str, Any]]
    meta: NotRequired[dict[str, Any]]


class ToolContent(TypedDict):
    """What a tool call shows: ``content`` (a block), ``diff`` (path, old/new text) or ``terminal``."""

    type: Literal["content", "diff", "terminal"]
    content: NotRequired[ContentBlock]
    path: NotRequired[str]
    old_text: NotRequired[str | None]
    new_text: NotRequired[str]
    terminal_id: NotRequired[str]
    meta: NotRequired[dict[str, Any]]


class Location(TypedDict):
    path: str
    line: NotRequired[int | None]
    meta: NotRequired[dict[str, Any]]


class ToolCall(TypedDict):
    """A tool call as started or updated; an update carries only what changed."""

    tool_call_id: str
    title: NotRequired[str]
    kind: NotRequired[str]
    status: NotRequired[str]
    content: NotRequired[list[ToolContent]]
    locations: NotRequired[list[Location]]
    raw_input: NotRequired[Any]  # the tool's own arguments: the agent's data, passed as sent
    raw_output: NotRequired[Any]
    meta: NotRequired[dict[str, Any]]


class PlanEntry(TypedDict):
    content: str
    priority: str
    status: str
    meta: NotRequired[dict[str, Any]]


class PermissionOption(TypedDict):
    option_id: str
    name: str
    kind: str


class QuestionOption(TypedDict):
    label: str
    description: str


class Question(TypedDict):
    question: str
    header: str
    options: list[QuestionOption]
    multi_select: bool


class UserMessage(TypedDict):
    text: str
    prompt_id: str


class MessageChunk(TypedDict):
    """A piece of the agent's reply or thinking (or, replayed, the user's); ``content`` when it is
    not plain text; ``message_id`` groups the chunks of one message when the agent says."""

    text: str
    content: NotRequired[ContentBlock]
    message_id: NotRequired[str | None]
    meta: NotRequired[dict[str, Any]]


class Plan(TypedDict):
    """The agent's plan, replacing the one shown before: a checklist (``entries``), or a Markdown
    plan / a plan file (``markdown`` / ``uri``, entries empty); ``removed``: no plan any more."""

    entries: list[PlanEntry]
    plan_id: NotRequired[str]
    markdown: NotRequired[str]
    uri: NotRequired[str]
    removed: NotRequired[bool]
    meta: NotRequired[dict[str, Any]]


class PermissionRequest(TypedDict):
    request_id: str
    tool_call: ToolCall
    options: list[PermissionOption]
    created_at: str
    questions: NotRequired[list[Question]]
    plan: NotRequired[str]


class PermissionResolved(TypedDict):
    request_id: str
    option_id: str | None
    answers: NotRequired[dict[str, str | list[str]]]
    expired: NotRequired[bool]


class TurnStarted(TypedDict):
    prompt_id: str


class TurnEnded(TypedDict):
    prompt_id: str
    stop_reason: str


class StateChanged(TypedDict):
    state: SessionState


class Error(TypedDict):
    message: str


class SessionUpdated(TypedDict):
    title: str
    archived: bool


class ModeChanged(TypedDict):
    """The session's mode changed: chosen by a client, set by the agent, or reapplied on restore."""

    mode_id: str


class CommandInput(TypedDict):
    hint: str


class Command(TypedDict):
    """A slash command the agent offers (``/init``, a skill, …)."""

    name: str
    description: str
    input: NotRequired[CommandInput | None]
    meta: NotRequired[dict[str, Any]]


class CommandsChanged(TypedDict):
    """The commands the agent offers this session now (the whole list, replacing the last one)."""

    commands: list[Command]


class ConfigOption(TypedDict):
    """One session setting the agent offers (``select``: one of ``options``; ``boolean``)."""

    id: str
    name: str
    type: str
    current_value: str | bool
    description: NotRequired[str | None]
    category: NotRequired[Any]
    #: for a select: its choices, or groups of them (``{group, name, options}``)
    options: NotRequired[list[dict[str, Any]]]


class ConfigChanged(TypedDict):
    """The agent's session settings now (the whole list)."""

    config_options: list[ConfigOption]


class SessionInfo(TypedDict):
    """What the agent says about its session: its own title, its last activity (null: cleared)."""

    title: NotRequired[str | None]
    updated_at: NotRequired[str | None]
    meta: NotRequired[dict[str, Any]]


class Cost(TypedDict):
    amount: float
    currency: str


class Usage(TypedDict):
    """Context window use: ``used`` of ``size`` tokens, and what the session cost so far."""

    used: int
    size: int
    cost: NotRequired[Cost | None]
    meta: NotRequired[dict[str, Any]]


class AgentUpdate(TypedDict):
    """What no translation knows, passed as the agent sent it (``update``, or ``method``+``params``)."""

    update: NotRequired[dict[str, Any]]
    method: NotRequired[str]
    params: NotRequired[Any]


#: Event type → the class of its fields. The order is the order documents list them in.
EVENTS: dict[str, type] = {
    "user_message": UserMessage,
    "agent_message_chunk": MessageChunk,
    "agent_thought_chunk": MessageChunk,
    "user_message_chunk": MessageChunk,
    "tool_call": ToolCall,
    "tool_call_update": ToolCall,
    "plan": Plan,
    "permission_request": PermissionRequest,
    "permission_resolved": PermissionResolved,
    "turn_started": TurnStarted,
    "turn_ended": TurnEnded,
    "state": StateChanged,
    "error": Error,
    "session_updated": SessionUpdated,
    "mode_changed": ModeChanged,
    "commands_changed": CommandsChanged,
    "config_changed": ConfigChanged,
    "session_info": SessionInfo,
    "usage": Usage,
    "agent_update": AgentUpdate,
}

EventType = Literal[
    "user_message",
    "agent_message_chunk",
    "agent_thought_chunk",
    "user_message_chunk",
    "tool_call",
    "tool_call_update",
    "plan",
    "permission_request",
    "permission_resolved",
    "turn_started",
    "turn_ended",
    "state",
    "error",
    "session_updated",
    "mode_changed",
    "commands_changed",
    "config_changed",
    "session_info",
    "usage",
    "agent_update",
]

#: Every event type, as a set (what the store and the stream check against).
EVENT_TYPES: frozenset[str] = frozenset(EVENTS)

"""Every request body the HTTP API accepts, with its input rules: the one place they are written.

The handlers check a parsed body with ``contract.validate.check(Body, data)`` (through
``BaseHandler.body``), the OpenAPI document derives each ``requestBody`` schema from the same
class, and ``protocol.js`` gets a JSDoc typedef of each. Rules about *form* (type, length, a
pattern) live here and are checked once, at the edge; rules that need the daemon's state (is the
agent configured, does the agent offer this mode, is the folder there) stay with the domain.

Bodies marked :func:`closed` refuse unknown fields (400 naming them); the others ignore them, as
they always have (a browser's ``PushSubscription.toJSON()`` may grow fields).
"""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

from qwen_daemon.contract.schema import (
    Description,
    Maximum,
    MaxLength,
    Minimum,
    MinLength,
    Pattern,
    Ref,
    closed,
)

#: longest prompt, in characters
MAX_PROMPT_CHARS = 100_000
#: longest id a client may send for an option or a mode (they are the agent's; these are generous)
MAX_OPTION_ID = 200
#: older than this many days (about 2,700 years) means nothing; a bound keeps float() from overflowing
MAX_PRUNE_DAYS = 1_000_000
#: longest push endpoint URL
MAX_ENDPOINT = 2000
#: a daemon id (session, device, subscription, request): what the routes match
ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"

_TITLE = (
    "at most 200 characters once runs of whitespace become one space; no control characters "
    "(400 names the first); blank: the workspace folder's name"
)

Title = Annotated[str, Description(_TITLE)]
PromptText = Annotated[
    str,
    MaxLength(MAX_PROMPT_CHARS),
    Pattern(r"\S", "not be empty (it holds only whitespace)"),
    Description("what to tell the agent"),
]
OptionId = Annotated[str, MaxLength(MAX_OPTION_ID)]
ModeId = Annotated[str, MaxLength(MAX_OPTION_ID), Description("one of the session's modes.available ids")]
QuestionIndex = Annotated[str, Pattern("^(0|[1-9][0-9]*)$", "be a question index (0, 1, ...)")]
AnswersShape = Annotated[
    dict[QuestionIndex, str | list[str]],
    Description(
        'answers by question index: {"0": "SQLite"} for a single-select, {"1": ["A", "B"]} for a '
        'multi-select; a string that is not an offered label is free text (the user\'s "Other"). '
        "Every question needs one when an allow option is chosen."
    ),
]
#: by reference in the document ("Answers"), checked as its shape
Answers = Annotated[AnswersShape, Ref("Answers")]
Id = Annotated[str, Pattern(ID_PATTERN, "be 1 to 64 of A-Z, a-z, 0-9, '_' and '-'")]


@closed
class CreateSession(TypedDict):
    """``POST /api/sessions``: a session in ``cwd`` (absolute, existing), with the named agent
    (the default one when absent) in ``mode`` (one the agent offers)."""

    cwd: str
    title: NotRequired[Title | None]
    agent: NotRequired[Annotated[str, Description("one of GET /api/agents")] | None]
    mode: NotRequired[Annotated[str, MinLength(1)] | None]


@closed(min_properties=1)
class EditSession(TypedDict):
    """``PATCH /api/sessions/{id}``: rename and/or (un)archive."""

    title: NotRequired[Title]
    archived: NotRequired[bool]


class Prompt(TypedDict):
    """``POST /api/sessions/{id}/prompt``: start a turn."""

    text: PromptText


class SetMode(TypedDict):
    """``POST /api/sessions/{id}/mode``: switch to a mode the session's agent offers."""

    mode_id: ModeId


class PermissionAnswer(TypedDict):
    """``POST /api/sessions/{id}/permissions/{request_id}``: one of the request's options, and
    answers to its questions if it has any (checked against them by the session)."""

    option_id: OptionId
    answers: NotRequired[Answers | None]


class Warm(TypedDict):
    """``POST /api/agents/{agent}/warm``: start a spare agent for this workspace."""

    cwd: str


class Prune(TypedDict):
    """``POST /api/sessions/prune`` (body optional): delete closed sessions older than this."""

    older_than_days: NotRequired[Annotated[float, Minimum(0), Maximum(MAX_PRUNE_DAYS)] | None]


@closed
class RenameDevice(TypedDict):
    """``PATCH /api/devices/{id}``."""

    name: Annotated[
        str,
        Description("1 to 100 characters once surrounding whitespace is dropped; no control characters"),
    ]


class PushKeys(TypedDict):
    p256dh: Annotated[str, Description("base64url P-256 point (65 bytes)")]
    auth: Annotated[str, Description("base64url, 16 bytes")]


class PushSubscribe(TypedDict):
    """``POST /api/push/subscriptions``: the browser's ``PushSubscription.toJSON()``."""

    endpoint: Annotated[str, MaxLength(MAX_ENDPOINT)]
    expirationTime: NotRequired[float | None]
    keys: PushKeys


@closed
class PushTest(TypedDict):
    """``POST /api/push/test`` (body optional): a test notification to one subscription."""

    subscription_id: NotRequired[Annotated[str, MinLength(1)] | None]


#: every body, by the name the OpenAPI document and protocol.js give it
BODIES: dict[str, type] = {
    "CreateSession": CreateSession,
    "EditSession": EditSession,
    "Prompt": Prompt,
    "SetMode": SetMode,
    "PermissionAnswer": PermissionAnswer,
    "Warm": Warm,
    "Prune": Prune,
    "RenameDevice": RenameDevice,
    "PushSubscribe": PushSubscribe,
    "PushTest": PushTest,
}

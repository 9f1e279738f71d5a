"""Every JSON response body of the HTTP API: the one place its shape is written.

The producers annotate their return values with these classes (``Session.summary()`` returns a
:class:`SessionSummary`), the OpenAPI document derives its response schemas from them, and
``protocol.js`` gets a JSDoc typedef of each, so a field added in one place is seen by the type
checker, the document and the browser's types together.

Why the producers import it under ``TYPE_CHECKING``: no response is validated at run time, so
only the OpenAPI document (built on its first request) and the ``protocol.js`` generator need the
classes themselves; held by every idle daemon, they cost about 0.2 MiB.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, TypedDict

from qwen_daemon.contract.bodies import Id
from qwen_daemon.contract.events import PermissionRequest
from qwen_daemon.contract.modes import Mode, Modes
from qwen_daemon.contract.schema import Description, MaxItems, Minimum, MinLength, Pattern, Ref, closed
from qwen_daemon.contract.states import SessionState


class ErrorDetail(TypedDict):
    code: Annotated[str, Description("stable, machine-readable: bad_request, session_not_found, ...")]
    message: str


@closed
class Error(TypedDict):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class SessionSummary(TypedDict):
    """A session as listed."""

    id: Id
    title: str
    cwd: str
    state: SessionState
    created_at: str
    updated_at: str
    url: str
    last_seq: Annotated[int, Minimum(0)]
    agent: Annotated[str, Description("the named agent running it")]
    mode: Annotated[str | None, Description("its current mode id, if the agent has modes")]
    archived: Annotated[bool, Description("listed only with ?archived=true; a prompt unarchives it")]


class SessionDetail(SessionSummary):
    """A session with what a page showing it needs."""

    pending_permissions: list[PermissionRequest]
    prompt_id: str | None
    failure: str | None
    modes: Annotated[
        Modes | None, Description("the modes the agent offers and the current one, kept across restarts")
    ]


class SessionList(TypedDict):
    sessions: list[SessionSummary]


class EventsPage(TypedDict):
    """``GET /api/sessions/{id}/events``: events after a seq, in seq order (``Event`` is derived
    from ``contract/events.py``; the OpenAPI document references it by name)."""

    events: list[Annotated[dict[str, Any], Ref("Event")]]
    last_seq: int
    first_seq: int


class Health(TypedDict):
    status: Literal["ok", "degraded", "stopping"]
    reason: NotRequired[Annotated[str, Description("only when degraded: why the database cannot be written")]]
    version: str
    pid: int
    instance_id: str
    started_at: str


class Stopping(TypedDict):
    status: Literal["stopping"]


class Rotated(TypedDict):
    status: Literal["rotated"]
    closed_websockets: int


class Cancelling(TypedDict):
    status: Literal["cancelling"]


class PromptAccepted(TypedDict):
    prompt_id: str


class PermissionAnswered(TypedDict):
    request_id: str
    option_id: str


class Pruned(TypedDict):
    pruned: Annotated[list[str], Description("the ids removed")]


class AgentInfo(TypedDict):
    name: str
    default: bool
    command: NotRequired[list[str] | None]
    modes: Annotated[
        list[Mode], Description("advertised by the agent when a session starts; empty until then")
    ]
    running: Annotated[list[str], Description("workspaces with a running agent")]
    spares: Annotated[list[str], Description("workspaces with a warm spare")]


class AgentList(TypedDict):
    default_agent: str
    spare_agents: Annotated[int, Minimum(0), Description("0: spares are off; do not ask for one")]
    agents: list[AgentInfo]


class Warming(TypedDict):
    agent: str
    cwd: str
    pid: Annotated[int | None, Description("null: nothing is kept warm (spares off, or displaced)")]


@closed
class Device(TypedDict):
    id: Id
    name: str
    created_at: str
    last_seen_at: Annotated[str, Description("updated at most once a minute")]
    current: Annotated[bool, Description("the device making this request")]


class DeviceList(TypedDict):
    devices: list[Device]


@closed
class Pairing(TypedDict):
    url: Annotated[str, Description("open it on the new device (once, before expires_at)")]
    code: Annotated[str, MinLength(22)]
    expires_at: str
    svg: Annotated[str, Description("the QR code of url, an inline <svg> element")]


class PushKey(TypedDict):
    public_key: Annotated[
        str, Pattern("^[A-Za-z0-9_-]{87}$"), Description("base64url (unpadded) uncompressed P-256 point")
    ]


class PushSubscription(TypedDict):
    id: Id
    device_id: Annotated[str | None, Description("null: made with the bearer token")]
    endpoint_origin: Annotated[str, Description("scheme://host of the push service")]
    expiration_time: float | None
    created_at: str
    current: Annotated[bool, Description("made by the device (or token) asking")]


class PushSubscriptionList(TypedDict):
    subscriptions: list[PushSubscription]


class Subscribed(TypedDict):
    id: Id


class PushSent(TypedDict):
    sent: Annotated[int, Minimum(0), Description("queued to this many subscriptions")]


class PushAction(TypedDict):
    action: Annotated[str, Description("the option_id to answer with")]
    title: Literal["Allow once", "Deny"]


class PushPayload(TypedDict):
    """The decrypted Web Push message (webhooks add absolute_url)."""

    title: str
    body: str
    url: Annotated[str, Description("/s/<session id> (/ for a test)")]
    tag: str
    kind: Literal["permission", "turn_ended", "session_failed", "test"]
    session_id: str
    request_id: str | None
    actions: Annotated[list[PushAction], MaxItems(2)]
    absolute_url: NotRequired[str]


#: every response body, by the name the OpenAPI document and protocol.js give it
RESPONSES: dict[str, type] = {
    "Error": Error,
    "SessionSummary": SessionSummary,
    "SessionDetail": SessionDetail,
    "SessionList": SessionList,
    "EventsPage": EventsPage,
    "Health": Health,
    "Stopping": Stopping,
    "Rotated": Rotated,
    "Cancelling": Cancelling,
    "PromptAccepted": PromptAccepted,
    "PermissionAnswered": PermissionAnswered,
    "Pruned": Pruned,
    "AgentList": AgentList,
    "Warming": Warming,
    "Device": Device,
    "DeviceList": DeviceList,
    "Pairing": Pairing,
    "PushKey": PushKey,
    "PushSubscription": PushSubscription,
    "PushSubscriptionList": PushSubscriptionList,
    "Subscribed": Subscribed,
    "PushSent": PushSent,
    "PushPayload": PushPayload,
}

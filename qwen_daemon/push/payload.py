"""What a notification says: built from a committed event, the same for every channel.

The decrypted Web Push payload (what the service worker reads) is exactly::

    {"title", "body", "url": "/s/<session id>", "tag", "kind", "session_id", "request_id",
     "actions": [{"action": "<option_id>", "title": "Allow once" | "Deny"}]}

``kind`` is ``permission`` (a permission request, a question or a plan approval), ``turn_ended``
(done, failed or interrupted), ``session_failed`` or ``test``. ``tag`` is per session and kind
(``<sid>:permission:<rid>``, ``<sid>:turn``, ``<sid>:failed``, ``test``), so a newer notification
of the same kind replaces the older one on the device instead of piling up.

``actions`` is non-empty only for a permission request without questions: the least permissive
allow-once option (``proceed_once`` when offered, else the last allow-once one; Qwen Code lists
its broader choices first) and the reject-once option. Never an "always" option: a tap on a lock
screen must not widen what the agent may do from now on.

Without preview (``push_preview = false``, or a channel's ``preview = false``) the body names
only the session and what happened: no tool name, command, question, plan or agent text, which a
lock screen or a third-party relay (ntfy, a webhook) would otherwise show.
"""

from __future__ import annotations

from typing import Any, NamedTuple

TITLE_CHARS = 120
BODY_CHARS = 300
#: the ``turn_ended`` stop reasons that are pushed as a failure or an interruption; ``cancelled``
#: (the user stopped it from some client) is not pushed; any other reason is a finished turn
FAILED_STOPS = frozenset({"error"})
INTERRUPTED_STOPS = frozenset({"interrupted"})
QUIET_STOPS = frozenset({"cancelled"})


class Notification(NamedTuple):
    """One notification, ready for any channel (``urgency``: the Web Push ``Urgency`` header).

    A named tuple rather than a dataclass: it is made at import for every start, and a dataclass
    costs ~0.3 ms to define."""

    kind: str
    title: str
    body: str
    url: str
    tag: str
    session_id: str
    request_id: str | None = None
    actions: tuple[tuple[str, str], ...] = ()
    urgency: str = "normal"

    def payload(self) -> dict[str, Any]:
        """The JSON object every channel carries (see the module doc)."""
        return {
            "title": self.title,
            "body": self.body,
            "url": self.url,
            "tag": self.tag,
            "kind": self.kind,
            "session_id": self.session_id,
            "request_id": self.request_id,
            "actions": [{"action": action, "title": title} for action, title in self.actions],
        }


def clip(text: str, limit: int) -> str:
    """One line (control characters and runs of white space become one space), at most ``limit``."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _note(kind: str, sid: str, title: str, body: str, tag: str, **more: Any) -> Notification:
    return Notification(kind, clip(title, TITLE_CHARS), clip(body, BODY_CHARS), f"/s/{sid}", tag, sid, **more)


def choose_actions(options: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """("Allow once", "Deny") from a request's options; see the module doc for which ones."""
    allow_once = [o for o in options if o.get("kind") == "allow_once"]
    allow = next((o for o in allow_once if o.get("option_id") == "proceed_once"), None)
    if allow is None and allow_once:
        allow = allow_once[-1]
    deny = next((o for o in options if o.get("kind") == "reject_once"), None)
    actions = []
    if allow is not None:
        actions.append((str(allow["option_id"]), "Allow once"))
    if deny is not None:
        actions.append((str(deny["option_id"]), "Deny"))
    return tuple(actions)


def permission(sid: str, session_title: str, data: dict[str, Any], preview: bool) -> Notification:
    """A ``permission_request`` event: an approval, a question or a plan to approve."""
    request_id = str(data.get("request_id") or "")
    tag = f"{sid}:permission:{request_id}"
    questions = data.get("questions") or []
    if questions:
        first = questions[0].get("question", "") if isinstance(questions[0], dict) else ""
        more = f" (+{len(questions) - 1} more)" if len(questions) > 1 else ""
        body = f"{first}{more}" if preview and first else f"Session '{session_title}' has a question for you"
        title = f"{session_title}: a question for you"
        return _note("permission", sid, title, body, tag, request_id=request_id, urgency="high")
    actions = choose_actions([o for o in data.get("options") or [] if isinstance(o, dict)])
    plan = data.get("plan")
    if isinstance(plan, str):
        title = f"{session_title}: plan ready for approval"
        first_line = next((ln.strip("# ").strip() for ln in plan.splitlines() if ln.strip("# ").strip()), "")
        body = (
            f"Plan: {first_line}"
            if preview and first_line
            else f"Session '{session_title}' needs your approval"
        )
    else:
        tool = data.get("tool_call") if isinstance(data.get("tool_call"), dict) else {}
        what = str(tool.get("title") or "") if tool else ""
        title = f"{session_title}: approval needed"
        body = f"Allow: {what}?" if preview and what else f"Session '{session_title}' needs your approval"
    return _note("permission", sid, title, body, tag, request_id=request_id, actions=actions, urgency="high")


def turn_ended(
    sid: str, session_title: str, stop_reason: str, preview: bool, said: str = "", error: str = ""
) -> Notification | None:
    """A ``turn_ended`` event (None for a cancelled turn: someone stopped it from a client)."""
    tag = f"{sid}:turn"
    if stop_reason in QUIET_STOPS:
        return None
    if stop_reason in INTERRUPTED_STOPS:
        body = "The daemon stopped during the turn; prompt again to carry on"
        return _note("turn_ended", sid, f"{session_title}: turn interrupted", body, tag)
    if stop_reason in FAILED_STOPS:
        body = error if preview and error else f"Session '{session_title}': the turn ended with an error"
        return _note("turn_ended", sid, f"{session_title}: turn failed", body, tag)
    body = said[-BODY_CHARS:] if preview and said.strip() else f"Session '{session_title}' finished its turn"
    return _note("turn_ended", sid, f"{session_title}: finished", body, tag)


def session_failed(sid: str, session_title: str, failure: str | None, preview: bool) -> Notification:
    """A session that moved to ``failed`` (its agent keeps crashing)."""
    body = failure if preview and failure else f"Session '{session_title}' failed; open it to reopen it"
    return _note("session_failed", sid, f"{session_title}: session failed", body, f"{sid}:failed")


def trial() -> Notification:
    """What ``POST /api/push/test`` sends: proof that this device gets notifications."""
    body = "Notifications from qwen-daemon reach this device."
    return Notification("test", "qwen-daemon: test notification", body, "/", "test", "")

"""Other channels: ``[[notify]]`` entries in ``config.toml``, told what Web Push tells.

For people who live elsewhere than a browser: a generic **webhook** (a JSON POST of the push
payload plus ``absolute_url``, the session's address from ``public_url`` or the daemon's own URL)
or an **ntfy** topic (the body is the notification's text; ntfy's ``Title``, ``Priority``,
``Click`` and ``Tags`` headers carry the rest)::

    [[notify]]
    type = "ntfy"
    url = "https://ntfy.sh/my-secret-topic"
    preview = false            # optional; default: the push_preview setting

    [[notify]]
    type = "webhook"
    url = "https://hooks.example/qwen"

Parsed when the settings load (so a typo stops ``start`` with one line naming the entry), with
the standard library only: every command reads the settings, and none of them should pay for
anything heavier. Sending is :func:`send`; the retry rules are the deliveries' (``delivery.py``).
"""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any, NamedTuple

from qwen_daemon.errors import ConfigError

if TYPE_CHECKING:
    import tornado.httpclient

    from qwen_daemon.push.payload import Notification

CHANNEL_TYPES = ("webhook", "ntfy")
#: a channel's request gives up after this long (then it is retried like a push)
REQUEST_TIMEOUT = 10.0


class Channel(NamedTuple):
    """One ``[[notify]]`` entry. ``preview`` None: the ``push_preview`` setting decides."""

    type: str
    url: str
    preview: bool | None = None

    @property
    def origin(self) -> str:
        """What the log names (a topic URL is a secret of sorts: its path is left out)."""
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def parse_channels(value: object, source: str) -> tuple[Channel, ...]:
    """The ``notify`` array of tables, checked; raises ConfigError naming the bad entry."""
    if not isinstance(value, list):
        raise ConfigError(f"{source}: 'notify' must be an array of tables ([[notify]] entries)")
    channels = []
    for index, entry in enumerate(value):
        label = f"{source}: notify[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{label} must be a table with 'type' and 'url'")
        unknown = sorted(set(entry) - {"type", "url", "preview"})
        if unknown:
            raise ConfigError(f"{label}: unknown key(s) {', '.join(unknown)}")
        kind = entry.get("type")
        if kind not in CHANNEL_TYPES:
            raise ConfigError(f"{label}.type must be one of {', '.join(CHANNEL_TYPES)}, not {kind!r}")
        url = entry.get("url")
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{label}.url must be an http(s) URL such as https://ntfy.sh/my-topic")
        if kind == "ntfy" and parts.path.strip("/") == "":
            raise ConfigError(f"{label}.url must name the ntfy topic, e.g. https://ntfy.sh/my-topic")
        preview = entry.get("preview")
        if preview is not None and not isinstance(preview, bool):
            raise ConfigError(f"{label}.preview must be true or false")
        channels.append(Channel(str(kind), str(url), preview))
    return tuple(channels)


def request(channel: Channel, note: Notification, absolute_url: str) -> tornado.httpclient.HTTPRequest:
    """The HTTP request that tells ``channel`` about ``note`` (already built for its preview)."""
    import tornado.httpclient

    if channel.type == "webhook":
        body: Any = json.dumps({**note.payload(), "absolute_url": absolute_url}).encode("utf-8")
        headers = {"Content-Type": "application/json"}
    else:
        body = note.body.encode("utf-8")
        headers = {
            # ntfy reads non-ASCII header values only as RFC 2047 words; keep the title readable
            "Title": _header_text(note.title),
            "Priority": "5" if note.kind == "permission" else "3",
            "Click": absolute_url,
            "Tags": _TAGS.get(note.kind, "bell"),
            "Content-Type": "text/plain; charset=utf-8",
        }
    return tornado.httpclient.HTTPRequest(
        channel.url,
        method="POST",
        body=body,
        headers=headers,
        request_timeout=REQUEST_TIMEOUT,
        connect_timeout=REQUEST_TIMEOUT,
        follow_redirects=False,
    )


#: ntfy shows these tag names as emoji (https://docs.ntfy.sh/emojis/), the rest as words
_TAGS = {
    "permission": "warning,qwen-daemon",
    "turn_ended": "white_check_mark,qwen-daemon",
    "session_failed": "x,qwen-daemon",
    "test": "bell,qwen-daemon",
}


def _header_text(text: str) -> str:
    """Header values must be Latin-1 without line breaks: other characters as RFC 2047 UTF-8."""
    text = " ".join(text.split())
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        from email.header import Header

        return Header(text, "utf-8").encode(maxlinelen=10_000)
    return text

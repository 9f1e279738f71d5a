"""JSON text the daemon writes, and the one check the JSON it reads needs beyond parsing.

JSON and JavaScript strings may hold a lone surrogate (``"\\ud800"``); UTF-8 cannot. Python's
``json`` accepts one on input and, with ``ensure_ascii=False``, writes it out raw, so the first
``str.encode`` (SQLite binding a value, a WebSocket frame, an HTTP body) raises. Clients sending
one are refused (:func:`lone_surrogate_in`); text an agent sends is kept, escaped
(:func:`dumps`), or where it is not JSON, with U+FFFD in its place (:func:`replace_lone_surrogates`).
"""

from __future__ import annotations

import json
import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(obj: Any) -> str:
    """Compact JSON, non-ASCII kept as is, that always encodes to UTF-8.

    A lone surrogate is rare (only a broken or hostile agent sends one): ASCII text, most events,
    costs one flag check (``str.isascii`` reads the string's header); other text a scan; the
    escaped form is made only when needed.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if text.isascii() or _LONE_SURROGATE.search(text) is None:
        return text
    return json.dumps(obj, separators=(",", ":"))


def lone_surrogate_in(obj: Any) -> bool:
    """Whether decoded JSON holds a lone surrogate anywhere (a key or a string value)."""
    text = json.dumps(obj, ensure_ascii=False)
    return not text.isascii() and _LONE_SURROGATE.search(text) is not None


def replace_lone_surrogates(value: Any) -> Any:
    """``value`` with each lone surrogate replaced by U+FFFD when it is a string; else as is."""
    return _LONE_SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value

"""What may reach a terminal: control characters are shown as escapes, never obeyed.

Why: titles, folder names, questions, agent names and error messages all come from somewhere the
user does not control (a model's output, a cloned repository's folder names, the daemon's answer).
An ESC sequence printed as is can recolour, retitle or rewrite the terminal (and, in some
terminals, echo text back as if typed); BEL rings; a carriage return or a bidi override makes one
text read as another. So the CLI prints everything through :func:`printable`: :func:`guarded_stdio`
puts it under ``sys.stdout`` and ``sys.stderr`` for the whole command, so no ``print`` can miss it.

The same set of characters is what the API refuses in a title (:func:`control_in`): one
definition, so what the daemon accepts is exactly what prints unchanged.

Standard library only: the CLI's fast paths import it.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO, cast

#: C0 controls but tab and line feed, DEL, C1 controls, the bidi marks, overrides and isolates,
#: and the Unicode line and paragraph separators
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: what a title may still hold and have collapsed to a space, as every title's whitespace is
_TITLE_WHITESPACE = "\t\n\r"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written as its escape (ESC as ``\\x1b``): visible, so
    the reader sees something was there, and inert. Idempotent: an escape is plain text."""
    return CONTROLS.sub(_escape, text)


def one_line(value: Any) -> str:
    """``value`` as printable text on one line, runs of whitespace (line breaks too) one space."""
    return " ".join(printable(str(value)).split())


def control_in(text: str) -> str | None:
    """The first control character in ``text`` as ``U+001B``, or None. Tabs and line breaks are
    not counted: a title's whitespace is collapsed to single spaces anyway."""
    for char in text:
        if char not in _TITLE_WHITESPACE and CONTROLS.match(char):
            return f"U+{ord(char):04X}"
    return None


class _Guarded:
    """A text stream that writes through :func:`printable`; anything else goes to the stream it
    wraps (``fileno``, ``flush``, ``isatty``, ``encoding``...), so libraries that look at it still
    see the real one."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(printable(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def guarded_stdio() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` escape control characters until the block ends.

    Not for ``qwen-daemon logs``: it hands the terminal to ``tail``/``journalctl`` (exec), which
    show the log as it is; the daemon escapes what clients send before it logs it.
    """
    saved = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, _Guarded(saved[0]))
    sys.stderr = cast(TextIO, _Guarded(saved[1]))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved

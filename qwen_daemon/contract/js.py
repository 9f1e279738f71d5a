"""Generate ``web/static/js/protocol.js``: the contract as the browser's ES module.

Run ``python -m qwen_daemon.contract.js`` after changing anything in ``qwen_daemon/contract/``;
``tests/test_contract.py`` fails while the committed file differs from a fresh generation.

Why generated rather than written: the browser needs the state names, the event names and the
field names of every event, body and response, and ``tsc --noEmit`` checks the pages against
them (``// @ts-check`` with JSDoc). Written by hand they drifted from the daemon; generated, a
renamed field breaks the type check of the module that still uses the old name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, is_typeddict

from qwen_daemon.contract import events as event_contract
from qwen_daemon.contract import responses
from qwen_daemon.contract.bodies import BODIES
from qwen_daemon.contract.events import EVENTS
from qwen_daemon.contract.responses import RESPONSES
from qwen_daemon.contract.schema import Description, camel, fields, is_strenum, is_union, unwrap
from qwen_daemon.contract.states import BUSY_STATES, OPEN_STATES, SessionState

TARGET = Path(__file__).resolve().parent.parent / "web" / "static" / "js" / "protocol.js"

#: JS names where a class name would clash (two ``Error`` classes) or shadow a JS global
NAMES: dict[Any, str] = {responses.Error: "ErrorBody", event_contract.Error: "ErrorFields"}


class _Typedefs:
    """Collects one ``@typedef`` per TypedDict/StrEnum met, dependencies first."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.blocks: dict[str, str] = {}
        self._owners: dict[str, Any] = {}

    def name(self, cls: Any) -> str:
        name = NAMES.get(cls, cls.__name__)
        owner = self._owners.get(name)
        if owner is None:
            self._owners[name] = cls
            self.blocks[name] = ""  # reserved: a recursive reference finds the name taken
            self.blocks[name] = self._enum(cls, name) if is_strenum(cls) else self._object(cls, name)
            self.order.append(name)
        elif owner is not cls:
            raise ValueError(f"two contract types want the JS name {name!r}: {owner} and {cls}")
        return str(name)

    def type(self, tp: Any) -> str:
        base, _ = unwrap(tp)
        if base is Any:
            return "any"
        if base is None or base is type(None):
            return "null"
        simple = {str: "string", bool: "boolean", int: "number", float: "number"}
        if base in simple:
            return simple[base]
        if is_typeddict(base) or is_strenum(base):
            return self.name(base)
        origin, args = get_origin(base), get_args(base)
        if origin is Literal:
            return "|".join(json.dumps(a) for a in args)
        if origin is list:
            return f"Array<{self.type(args[0])}>"
        if origin is dict:
            return f"Record<string, {self.type(args[1])}>"
        if is_union(base):
            return "(" + "|".join(self.type(a) for a in args) + ")"
        raise TypeError(f"no JS type for {tp!r}")

    def _enum(self, cls: Any, name: str) -> str:
        members = "|".join(json.dumps(m.value) for m in cls)
        return f"/** @typedef {{{members}}} {name} */"

    def _object(self, cls: Any, name: str) -> str:
        hints, required = fields(cls)
        lines = ["/**"]
        doc = _doc(cls)
        if doc:
            lines.append(f" * {doc}")
        lines.append(f" * @typedef {{object}} {name}")
        for field, tp in hints.items():
            label = field if field in required else f"[{field}]"
            note = next((m.text for m in unwrap(tp)[1] if isinstance(m, Description)), "")
            lines.append(f" * @property {{{self.type(tp)}}} {label}" + (f" {note}" if note else ""))
        lines.append(" */")
        return "\n".join(lines)


def _doc(cls: Any) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    return " ".join(doc.strip().split("\n\n")[0].split()).replace("*/", "*\\/")


def _frozen_list(values: list[str]) -> str:
    return "Object.freeze([" + ", ".join(json.dumps(v) for v in values) + "])"


def _frozen_map(pairs: dict[str, str]) -> str:
    body = "".join(f"\n  {k}: {json.dumps(v)}," for k, v in pairs.items())
    return "Object.freeze({" + body + "\n})"


def generate() -> str:
    """The text of ``protocol.js``."""
    states = [s.value for s in SessionState]
    out = [
        "// @ts-check",
        "// GENERATED from qwen_daemon/contract/ by `python -m qwen_daemon.contract.js`: do not edit;",
        "// change the contract and regenerate (tests/test_contract.py fails while this file is stale).",
        "",
        "/** Every session state, by name. */",
        "export const SESSION_STATE = " + _frozen_map({s.name: s.value for s in SessionState}) + ";",
        "/** Every session state. */",
        f"export const SESSION_STATES = {_frozen_list(states)};",
        "/** A turn is under way: a prompt is refused and a cancel has something to stop. */",
        f"export const BUSY_STATES = {_frozen_list([s for s in states if s in BUSY_STATES])};",
        "/** The session counts against the limit and keeps its agent. */",
        f"export const OPEN_STATES = {_frozen_list([s for s in states if s in OPEN_STATES])};",
        "/** Every event type, by name. */",
        "export const EVENT = " + _frozen_map({t.upper(): t for t in EVENTS}) + ";",
        "/** Every event type. */",
        f"export const EVENT_TYPES = {_frozen_list(list(EVENTS))};",
        "",
    ]
    defs = _Typedefs()
    event_names = []
    event_blocks = []
    for event_type, cls in EVENTS.items():
        name = f"{camel(event_type)}Event"
        event_names.append(name)
        envelope = f'{{seq: number, type: "{event_type}", ts: string}}'
        event_blocks.append(f"/** @typedef {{{envelope} & {defs.name(cls)}}} {name} */")
    for cls in [*RESPONSES.values(), *BODIES.values()]:
        defs.name(cls)
    out += [defs.blocks[name] for name in defs.order]
    out += event_blocks
    out.append("/** Any event, as the events page and the WebSocket deliver it. */")
    out.append(f"/** @typedef {{{'|'.join(event_names)}}} Event */")
    return "\n".join(out) + "\n"


def main() -> int:
    TARGET.write_text(generate(), encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the typed contract costs on the relay path: plain-dict TypedDict vs msgspec.Struct.

Every chunk an agent streams becomes an event: the ACP update is translated to the event's fields,
numbered and stamped, and serialized once (``EventLog.append`` → ``jsontext.dumps``). This times
that step for a typical event of each kind the relay carries most (a message chunk; a tool call
update with content) three ways:

- ``dict``: what the daemon does — a ``TypedDict`` is a plain dict at run time — with
  ``jsontext.dumps`` (stdlib ``json``);
- ``struct``: a ``msgspec.Struct`` per event type (tagged by ``type``), built from the translated
  fields and encoded with ``msgspec.json.encode`` (then decoded to ``str``, as the log keeps text);
- ``dict+msgspec``: the plain dict encoded by msgspec (what swapping only the encoder would give).

msgspec is not a dependency; run this with an interpreter that has it (a throwaway venv)::

    python3 -m venv /tmp/msgspec-venv && /tmp/msgspec-venv/bin/pip install msgspec
    PYTHONPATH=. /tmp/msgspec-venv/bin/python bench/contract_cost.py

Without msgspec only the ``dict`` figures are printed.
"""

from __future__ import annotations

import importlib
import json
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwen_daemon import jsontext
from qwen_daemon.agents.translate import translate_update

TS = "2026-12-07T15:40:00.123Z"
CHUNK = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "Hello, here is the "}}
TOOL = {
    "sessionUpdate": "tool_call_update",
    "toolCallId": "call_7f3a",
    "status": "completed",
    "content": [{"type": "diff", "path": "/home/u/p/notes.txt", "oldText": "", "newText": "hello\n" * 8}],
    "locations": [{"path": "/home/u/p/notes.txt", "line": 1}],
}


def as_dict(update: dict[str, Any], seq: int) -> str:
    event_type, fields = translate_update(update)
    return jsontext.dumps({"seq": seq, "type": event_type, "ts": TS, **fields})


def run(label: str, fn: Any, update: dict[str, Any], number: int) -> float:
    best = min(timeit.repeat(lambda: fn(update, 42), number=number, repeat=5))
    per = best / number * 1e6
    print(f"  {label:<14} {per:7.2f} µs/event")
    return per


def main() -> int:
    number = 50_000
    try:
        msgspec: Any = importlib.import_module("msgspec")
    except ImportError:
        msgspec = None

    cases: dict[str, dict[str, Any]] = {"agent_message_chunk": CHUNK, "tool_call_update": TOOL}
    if msgspec is not None:
        encoder = msgspec.json.Encoder()
        optional = dict[str, Any] | None
        tagged = {"tag_field": "type", "omit_defaults": True}
        chunk_fields = [
            ("seq", int),
            ("ts", str),
            ("text", str),
            ("content", optional, None),
            ("meta", optional, None),
        ]
        tool_fields: list[tuple[Any, ...]] = [("seq", int), ("ts", str), ("tool_call_id", str)]
        tool_fields += [(name, Any, None) for name in ("title", "kind", "status", "content", "locations")]
        tool_fields += [(name, Any, None) for name in ("raw_input", "raw_output", "meta")]
        message_chunk = msgspec.defstruct("MessageChunk", chunk_fields, tag="agent_message_chunk", **tagged)
        tool_call_update = msgspec.defstruct("ToolCallUpdate", tool_fields, tag="tool_call_update", **tagged)

        structs = {"agent_message_chunk": message_chunk, "tool_call_update": tool_call_update}

        def as_struct(update: dict[str, Any], seq: int) -> str:
            event_type, fields = translate_update(update)
            return str(encoder.encode(structs[event_type](seq=seq, ts=TS, **fields)), "utf-8")

        def dict_msgspec(update: dict[str, Any], seq: int) -> str:
            event_type, fields = translate_update(update)
            return str(encoder.encode({"seq": seq, "type": event_type, "ts": TS, **fields}), "utf-8")

    for name, update in cases.items():
        print(f"{name} (build + translate + encode, best of 5 x {number:,}):")
        run("dict", as_dict, update, number)
        if msgspec is not None:
            same = json.loads(as_struct(update, 42)) == json.loads(as_dict(update, 42))
            assert same, "the struct encodes a different event"
            run("struct", as_struct, update, number)
            run("dict+msgspec", dict_msgspec, update, number)
    if msgspec is None:
        print("(msgspec not importable here: see the module doc to compare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

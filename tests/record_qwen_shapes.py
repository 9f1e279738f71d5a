"""Record what real Qwen Code sends when it asks the client something, as a fixture for the fake.

Why: the fake agent (tests/fake_agent.py) stands in for Qwen Code in most tests. When its messages
drifted from the real ones (questions in a top-level ``_meta`` that Qwen never sends), the tests
passed and the product failed. This script drives the pinned Qwen Code over ACP against the fake
OpenAI server, scripts the model to call ``ask_user_question`` (single and multi-select),
``exit_plan_mode``, ``write_file`` (allowed, then rejected) and ``run_shell_command``, answers
each permission request, and keeps the raw ``session/request_permission`` params, the client's
answer, the updates and notifications that follow, the tool result the model then received and
the turn's stop reason. Volatile values (session ids, temporary paths) become placeholders, so
the file only changes when Qwen Code does.

Run ``.venv/bin/python -m tests.record_qwen_shapes`` to rewrite ``tests/fixtures/qwen_permissions.json``
(``--check`` compares instead); ``tests/test_qwen_shapes.py`` does the comparison under pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acp import RequestError
from acp.connection import Connection

from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, serving_fake_openai
from tests.support.qwen import (
    QWEN_VERSION,
    find_pinned_qwen_cli,
    installed_qwen_version,
    prepare_qwen_home,
    qwen_command,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "qwen_permissions.json"
STEP_TIMEOUT = 60.0
STDOUT_LIMIT = 50 * 1024 * 1024  # one available_commands_update line can be ~570 KB

MODE_NOTIFICATION = "qwen/notify/session/mode-update"
PLAN_TEXT = "# Plan\n\n1. Create `hello.txt` with a greeting.\n2. Run the **tests**.\n"


def _question(text: str, header: str, labels: list[str], multi: bool) -> dict[str, Any]:
    # Qwen Code 0.24.4 refuses options without a non-empty description ("description must be a
    # non-empty string"), so the model never reaches the user with the issue's bare labels.
    options = [{"label": label, "description": f"Use {label}"} for label in labels]
    return {"question": text, "header": header, "options": options, "multiSelect": multi}


@dataclass(frozen=True)
class Scenario:
    """One tool call the fake model makes, how the client answers, and the mode it starts in."""

    name: str
    tool: str
    arguments: dict[str, Any]
    answer: dict[str, Any]
    mode: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def _selected(option_id: str, **extra: Any) -> dict[str, Any]:
    return {"outcome": {"outcome": "selected", "optionId": option_id}, **extra}


SCENARIOS = (
    Scenario(
        "question",
        "ask_user_question",
        {"questions": [_question("Which database?", "DB", ["PostgreSQL", "SQLite"], False)]},
        _selected("proceed_once", answers={"0": "SQLite"}),
    ),
    Scenario(
        "question_multi",
        "ask_user_question",
        {
            "questions": [
                _question("Which database?", "DB", ["PostgreSQL", "SQLite"], False),
                _question("Which features do you want?", "Features", ["Auth", "Search", "Export"], True),
            ]
        },
        # what Qwen Code's own dialogs send for a multi-select: the labels joined by ", "
        _selected("proceed_once", answers={"0": "SQLite", "1": "Auth, Export"}),
    ),
    Scenario("plan_exit", "exit_plan_mode", {"plan": PLAN_TEXT}, _selected("proceed_once"), mode="plan"),
    Scenario(
        "write",
        "write_file",
        {"file_path": "<workspace>/notes.txt", "content": "hello\n"},
        _selected("proceed_always"),
    ),
    Scenario(
        "shell",
        "run_shell_command",
        {"command": "touch made-by-shell.txt", "description": "Create an empty file"},
        _selected("proceed_once"),
    ),
    # last: a rejection ends the turn without asking the model again, so its scripted "Done."
    # is left over and must not be taken by a later scenario
    Scenario(
        "write_rejected",
        "write_file",
        {"file_path": "<workspace>/rejected.txt", "content": "no\n"},
        _selected("cancel"),
    ),
)


class Recorder:
    """The client side of the ACP connection: keeps every raw message, answers from a script."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []  # {"method", "params", "response"?} in order
        self.answers: dict[str, dict[str, Any]] = {}  # ACP session id -> the permission answer

    async def handle(self, method: str, params: Any, is_notification: bool) -> Any:
        entry: dict[str, Any] = {"method": method, "params": params}
        self.messages.append(entry)
        if method == "session/request_permission" and isinstance(params, dict):
            answer = self.answers.get(str(params.get("sessionId")))
            entry["response"] = answer or {"outcome": {"outcome": "cancelled"}}
            return entry["response"]
        if is_notification:
            return None
        raise RequestError.method_not_found(method)  # e.g. craft/drainMidTurnQueue


@contextlib.asynccontextmanager
async def qwen_agent(
    cli: Path, env: dict[str, str], cwd: Path, log: Path
) -> AsyncIterator[tuple[Connection, Recorder]]:
    """The pinned Qwen Code on stdio in its own process group, killed whole at the end."""
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *qwen_command(cli),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=str(cwd),
            start_new_session=True,
            limit=STDOUT_LIMIT,
        )
    assert proc.stdin is not None and proc.stdout is not None
    recorder = Recorder()
    conn = Connection(recorder.handle, proc.stdin, proc.stdout)
    try:
        yield conn, recorder
    finally:
        await conn.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def _request(conn: Connection, method: str, params: dict[str, Any], log: Path) -> Any:
    try:
        return await asyncio.wait_for(conn.send_request(method, params), STEP_TIMEOUT)
    except TimeoutError:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Qwen Code did not answer {method} in {STEP_TIMEOUT:.0f} s:\n{tail}") from None


def _tool_result(fake: FakeOpenAI, call_id: str) -> str | None:
    """The text of the tool message for ``call_id`` in the model's latest request, if any."""
    for body in reversed(fake.main_requests):
        for message in body.get("messages", []):
            if message.get("role") == "tool" and message.get("tool_call_id") == call_id:
                content = message.get("content")
                if isinstance(content, list):
                    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return str(content)
    return None


async def _run_scenario(
    conn: Connection, recorder: Recorder, fake: FakeOpenAI, workspace: Path, scenario: Scenario, log: Path
) -> dict[str, Any]:
    session = await _request(conn, "session/new", {"cwd": str(workspace), "mcpServers": []}, log)
    sid = session["sessionId"]
    if scenario.mode:
        await _request(conn, "session/set_mode", {"sessionId": sid, "modeId": scenario.mode}, log)
    recorder.answers[sid] = scenario.answer
    call_id = f"call_{scenario.name}"
    arguments = json.loads(json.dumps(scenario.arguments).replace("<workspace>", str(workspace)))
    fake.queue(fake_openai.tool_call(scenario.tool, arguments, call_id=call_id), fake_openai.text("Done."))
    start = len(recorder.messages)
    prompt = {"sessionId": sid, "prompt": [{"type": "text", "text": f"Run the {scenario.name} step"}]}
    reply = await _request(conn, "session/prompt", prompt, log)
    turn = [m for m in recorder.messages[start:] if (m["params"] or {}).get("sessionId") == sid]
    asked = [m for m in turn if m["method"] == "session/request_permission"]
    if len(asked) != 1:
        raise RuntimeError(f"{scenario.name}: expected one permission request, got {len(asked)}")
    at = turn.index(asked[0])
    return {
        "llm_tool_call": {"name": scenario.tool, "arguments": scenario.arguments, "id": call_id},
        "mode": scenario.mode,
        "request": asked[0]["params"],
        "response": asked[0]["response"],
        # the tool call before it asked, then what follows the answer: the tool's own updates,
        # mode changes and Qwen Code's mode notification (not the model's text, not command lists)
        "before": [m["params"]["update"] for m in turn[:at] if _is_tool_update(m, call_id)],
        "after": [_after_entry(m) for m in turn[at + 1 :] if _worth_keeping(m, call_id)],
        "tool_result": _tool_result(fake, call_id),
        "stop_reason": reply.get("stopReason"),
    }


def _is_tool_update(message: dict[str, Any], call_id: str) -> bool:
    update = (message["params"] or {}).get("update") or {}
    return message["method"] == "session/update" and update.get("toolCallId") == call_id


def _worth_keeping(message: dict[str, Any], call_id: str) -> bool:
    if message["method"] == MODE_NOTIFICATION:
        return True
    update = (message["params"] or {}).get("update") or {}
    return _is_tool_update(message, call_id) or update.get("sessionUpdate") == "current_mode_update"


def _after_entry(message: dict[str, Any]) -> dict[str, Any]:
    if message["method"] == "session/update":
        return {"update": message["params"]["update"]}
    return {"method": message["method"], "params": message["params"]}


async def record(cli: Path, root: Path) -> dict[str, Any]:
    """Run every scenario against one Qwen Code process; the raw, not yet normalised results."""
    home, workspace, log = root / "home", root / "ws", root / "qwen-stderr.txt"
    workspace.mkdir(parents=True)
    results: dict[str, Any] = {}
    async with serving_fake_openai() as fake:
        env = prepare_qwen_home(home, fake.base_url)
        async with qwen_agent(cli, env, workspace, log) as (conn, recorder):
            init = {
                "protocolVersion": 1,
                "clientCapabilities": {
                    "fs": {"readTextFile": False, "writeTextFile": False},
                    "terminal": False,
                },
                "clientInfo": {"name": "qwen-daemon-recorder", "version": "0"},
            }
            await _request(conn, "initialize", init, log)
            for scenario in SCENARIOS:
                results[scenario.name] = await _run_scenario(conn, recorder, fake, workspace, scenario, log)
    return dict(normalise(results, {str(workspace): "<workspace>", str(home): "<home>"}))


def normalise(value: Any, paths: dict[str, str]) -> Any:
    """Replace volatile values with placeholders: session ids, temporary paths, usage counts."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "sessionId" and isinstance(item, str):
                out[key] = "<session_id>"
            elif key in _VOLATILE_NUMBERS and isinstance(item, int | float) and not isinstance(item, bool):
                out[key] = 0
            else:
                out[key] = normalise(item, paths)
        return out
    if isinstance(value, list):
        return [normalise(item, paths) for item in value]
    if isinstance(value, str):
        for real, placeholder in sorted(paths.items(), key=lambda p: -len(p[0])):
            value = value.replace(real, placeholder)
        return re.sub(r"(Process Group PGID: )\d+", r"\g<1>0", value)
    return value


# token counts and durations in Qwen Code's _meta: they vary from run to run
_VOLATILE_NUMBERS = frozenset(
    {
        "promptTokens",
        "completionTokens",
        "totalTokens",
        "thoughtsTokens",
        "cachedTokens",
        "inputTokens",
        "outputTokens",
        "durationMs",
        "timestamp",
        "pid",
    }
)


#: values that are part of the protocol, not of one run: compared exactly by :func:`drift`
EXACT_KEYS = frozenset(
    {
        "optionId",
        "kind",
        "sessionUpdate",
        "status",
        "qwenInteractionKind",
        "toolName",
        "type",
        "currentModeId",
        "outcome",
        "method",
        "multiSelect",
        "phase",
    }
)


def signature(value: Any, key: str | None = None) -> Any:
    """The shape of a recorded value: keys and nesting, with only protocol values kept exactly.

    Texts (titles, option names, the model's words) and numbers may change without the fake
    becoming wrong; a renamed key, a moved field, a new option id or kind may not.
    """
    if isinstance(value, dict):
        return {k: signature(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [signature(item, key) for item in value]
    if key in EXACT_KEYS or value is None or isinstance(value, bool):
        return value
    return type(value).__name__


def drift(old: Any, new: Any, path: str = "") -> list[str]:
    """Where the shapes of two recordings differ, as readable paths (empty: the same shape)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = [f"{path}.{k}: only in the fixture" for k in sorted(old.keys() - new.keys())]
        out += [f"{path}.{k}: new in Qwen Code" for k in sorted(new.keys() - old.keys())]
        for k in sorted(old.keys() & new.keys()):
            out += drift(old[k], new[k], f"{path}.{k}")
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} items in the fixture, {len(new)} now"]
        return [
            line
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for line in drift(a, b, f"{path}[{i}]")
        ]
    return [] if old == new else [f"{path}: {old!r} in the fixture, {new!r} now"]


def fixture_document(scenarios: dict[str, Any]) -> dict[str, Any]:
    return {
        "about": "Recorded from real Qwen Code by tests/record_qwen_shapes.py; do not edit by hand.",
        "qwen_version": QWEN_VERSION,
        "scenarios": scenarios,
    }


async def record_fixture() -> dict[str, Any]:
    """Record a fresh fixture document from the pinned Qwen Code (several seconds)."""
    cli = find_pinned_qwen_cli()
    if cli is None:
        raise RuntimeError(f"Qwen Code {QWEN_VERSION} is not installed (run `make install`)")
    version = installed_qwen_version(cli)
    if version != QWEN_VERSION:
        raise RuntimeError(f"the installed Qwen Code is {version}, the pin is {QWEN_VERSION}")
    with tempfile.TemporaryDirectory(prefix="qwen-shapes-") as tmp:
        return fixture_document(await record(cli, Path(tmp)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare with the fixture instead of writing it")
    parser.add_argument("--output", type=Path, default=FIXTURE)
    args = parser.parse_args(argv)
    document = asyncio.run(record_fixture())
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if args.check:
        fixture = json.loads(args.output.read_text(encoding="utf-8"))
        changes = drift(signature(fixture), signature(document))
        for line in changes:
            print(line)
        print("the fixture's shapes match Qwen Code's" if not changes else f"{len(changes)} change(s)")
        return 0 if not changes else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

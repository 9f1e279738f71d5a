"""Questions, plan approvals and mode changes through the HTTP API, the WebSocket and the CLI.

The agent is the fake, which sends the requests real Qwen Code sent (tests/fixtures/), so what is
checked here is what a browser or the CLI sees of a real agent's question, and that a wrong answer
is refused before the agent hears anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from qwen_daemon.config import Paths
from qwen_daemon.daemon_files import read_token
from qwen_daemon.discovery import read_discovery
from qwen_daemon.server.openapi import document
from tests.support.daemon import Api, DaemonThread, fake_settings, serve
from tests.support.probe import cli, get_json, poll, start_daemon

pytestmark = pytest.mark.timeout(90)

QUESTIONS = {
    "questions": [
        {
            "question": "Which database?",
            "header": "DB",
            "options": [
                {"label": "PostgreSQL", "description": "a server"},
                {"label": "SQLite", "description": "a file"},
            ],
            "multiSelect": False,
        },
        {
            "question": "Which features?",
            "header": "Features",
            "options": [
                {"label": "Auth", "description": "log in"},
                {"label": "Export", "description": "CSV"},
            ],
            "multiSelect": True,
        },
    ]
}
ASK = "question " + json.dumps(QUESTIONS)
SHOWN = [
    {
        "question": "Which database?",
        "header": "DB",
        "options": [
            {"label": "PostgreSQL", "description": "a server"},
            {"label": "SQLite", "description": "a file"},
        ],
        "multi_select": False,
    },
    {
        "question": "Which features?",
        "header": "Features",
        "options": [{"label": "Auth", "description": "log in"}, {"label": "Export", "description": "CSV"}],
        "multi_select": True,
    },
]


def schema(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**document(), "$ref": f"#/components/schemas/{name}"})


def said(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "agent_message_chunk")


async def asked(api: Api, sid: str, script: str) -> dict[str, Any]:
    reply = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": script})
    assert reply.status == 202, reply.body
    [pending] = (await api.wait_state(sid, "awaiting_permission"))["pending_permissions"]
    return dict(pending)


async def test_a_question_is_shown_checked_and_forwarded(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        pending = await asked(api, sid, ASK)
        assert pending["questions"] == SHOWN
        schema("PendingPermission").validate(pending)
        assert "meta" not in pending and "plan" not in pending
        assert [o["option_id"] for o in pending["options"]] == ["proceed_once", "cancel"]
        events = await api.events(sid)
        [request] = [e for e in events if e["type"] == "permission_request"]
        assert request["questions"] == SHOWN and request["request_id"] == pending["request_id"]

        url = f"/api/sessions/{sid}/permissions/{pending['request_id']}"
        for answers, why in [
            ({"0": "SQLite"}, "missing 1 (Which features?)"),
            ({"0": "SQLite", "1": "Auth"}, "list of strings"),
            ({"0": ["SQLite"], "1": ["Auth"]}, "answer it with a string"),
            ({"0": "SQLite", "1": ["Auth"], "2": "x"}, "there is no question 2"),
            ({"0": 5, "1": ["Auth"]}, "must be a string"),
            ("SQLite", "must be an object"),
        ]:
            refused = await api.call("POST", url, {"option_id": "proceed_once", "answers": answers})
            assert refused.status == 400 and why in refused.body["error"]["message"], (answers, refused.body)
        # nothing reached the agent: the request is still pending, the agent said nothing
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["pending_permissions"] == [pending]
        assert said(await api.events(sid)) == ""

        answers = {"0": "SQLite", "1": ["Auth", "my own feature"]}
        schema("Answers").validate(answers)
        ok = await api.call("POST", url, {"option_id": "proceed_once", "answers": answers})
        assert ok.status == 200, ok.body
        await api.wait_state(sid, "idle")
        events = await api.events(sid)
        # Qwen Code reads one string per index: a multi-select's choices joined by ", "
        assert said(events) == 'answers: {"0": "SQLite", "1": "Auth, my own feature"}'
        [resolved] = [e for e in events if e["type"] == "permission_resolved"]
        assert resolved["answers"] == answers and resolved["option_id"] == "proceed_once"
        [done] = [e for e in events if e["type"] == "tool_call_update" and e["status"] == "completed"]
        assert done["content"][0]["content"]["text"].endswith(
            "**DB**: SQLite\n**Features**: Auth, my own feature"
        )

    await serve(tmp_path, body)


async def test_answers_on_a_request_without_questions_are_refused(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        pending = await asked(api, sid, "permission Write notes.txt")
        assert "questions" not in pending and "plan" not in pending
        url = f"/api/sessions/{sid}/permissions/{pending['request_id']}"
        refused = await api.call("POST", url, {"option_id": "proceed_once", "answers": {"0": "yes"}})
        assert refused.status == 400 and "asks no questions" in refused.body["error"]["message"]
        assert (await api.call("POST", url, {"option_id": "proceed_once", "answers": {}})).status == 200
        await api.wait_state(sid, "idle")

    await serve(tmp_path, body)


async def test_a_plan_approval_carries_the_plan_and_its_mode_change(tmp_path: Path) -> None:
    """Qwen Code switches modes itself when a plan is approved or edits are allowed for good; the
    stream shows it as a mode change and the session's mode follows."""
    plan = "# Plan\n\n1. Write `notes.txt`\n2. Run the tests"

    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws, mode="plan"))["id"]
        pending = await asked(api, sid, "plan-exit " + json.dumps(plan))
        assert pending["plan"] == plan and "questions" not in pending
        schema("PendingPermission").validate(pending)
        assert [o["option_id"] for o in pending["options"]] == [
            "restore_previous",
            "proceed_always",
            "proceed_once",
            "cancel",
        ]
        url = f"/api/sessions/{sid}/permissions/{pending['request_id']}"
        assert (await api.call("POST", url, {"option_id": "proceed_once"})).status == 200
        detail = await api.wait_state(sid, "idle")
        assert detail["mode"] == "default"
        events = await api.events(sid)
        asked_at = next(e["seq"] for e in events if e["type"] == "permission_request")
        modes = [e["mode_id"] for e in events if e["seq"] > asked_at and e["type"] == "mode_changed"]
        assert modes == ["default"]  # after the plan's approval, as Qwen Code sends it

        pending = await asked(api, sid, "permission Write notes.txt")
        url = f"/api/sessions/{sid}/permissions/{pending['request_id']}"
        assert (await api.call("POST", url, {"option_id": "proceed_always"})).status == 200
        detail = await api.wait_state(sid, "idle")
        assert detail["mode"] == "auto-edit" and detail["modes"]["current_mode_id"] == "auto-edit"
        last = [e for e in await api.events(sid) if e["type"] in ("mode_changed", "agent_update")][-2:]
        assert {k: last[0][k] for k in ("type", "mode_id")} == {
            "type": "mode_changed",
            "mode_id": "auto-edit",
        }
        assert last[1]["type"] == "agent_update" and last[1]["method"] == "qwen/notify/session/mode-update"

    await serve(tmp_path, body)


@pytest.mark.usefixtures("daemon_reaper")
def test_cli_answers_a_question(tmp_path: Path, paths: Paths) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with DaemonThread(fake_settings(tmp_path)) as served:
        daemon = served.daemon
        base, token = f"http://127.0.0.1:{daemon.port}/api/sessions", read_token(paths)
        sid = get_json(base, token=token, body={"cwd": str(workspace)}, timeout=30)["id"]
        get_json(f"{base}/{sid}/prompt", token=token, body={"text": ASK})

        def pending() -> list[dict[str, Any]]:
            return list(get_json(f"{base}/{sid}", token=token)["pending_permissions"])

        rid = poll(pending, 15, "the question")[0]["request_id"]
        refused = cli("answer", sid, rid, "--option", "proceed_once", "--answer", "0=SQLite")
        assert refused.returncode == 1 and "missing 1 (Which features?)" in refused.stderr, refused.stderr
        for bad in ("zero", "²=SQLite"):  # a usage error (2), said plainly, never a Python message
            refused = cli("answer", sid, rid, "--option", "proceed_once", "--answer", bad)
            assert refused.returncode == 2 and "e.g. --answer 0=SQLite" in refused.stderr, refused.stderr
        args = ["--answer", "0=SQLite", "--answer", "1=Auth", "--answer", "1=Export"]
        done = cli("answer", sid, rid, "--option", "proceed_once", *args)
        assert done.returncode == 0, done.stderr
        assert (
            done.stdout.strip() == f'{rid}  answered proceed_once  {{"0": "SQLite", "1": ["Auth", "Export"]}}'
        )
        poll(lambda: get_json(f"{base}/{sid}", token=token)["state"] == "idle", 15, "the turn's end")
        events = get_json(f"{base}/{sid}/events", token=token)["events"]
        assert said(events) == 'answers: {"0": "SQLite", "1": "Auth, Export"}'
        again = cli("answer", sid, rid, "--option", "cancel")
        assert again.returncode == 1 and "already answered" in again.stderr


@pytest.mark.usefixtures("daemon_reaper")
def test_cli_lists_pending_requests_without_the_agents_control_characters(
    tmp_path: Path, paths: Paths
) -> None:
    """``pending`` shows what ``answer`` needs (ids, options, questions and choices) against a
    daemon started as a user starts it; what the agent wrote is printed without escape sequences
    or bidi overrides, which could otherwise rewrite the user's terminal or disguise a choice."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hostile = json.loads(json.dumps(QUESTIONS))
    hostile["questions"][0]["question"] = "Which \x1b]0;pwned\x07database?\x1b[2J"
    hostile["questions"][0]["header"] = "DB\u202e"
    hostile["questions"][0]["options"][0]["description"] = "a \x1b[31mserver\x1b[0m\r\nfake: line"
    start_daemon()
    try:
        info = read_discovery(paths)
        assert info is not None
        base, token = info.url + "api/sessions", read_token(paths)
        sid = json.loads(cli("new", str(workspace), "--json").stdout)["id"]
        assert cli("pending", sid).stdout == f"{sid}  no pending requests\n"
        get_json(f"{base}/{sid}/prompt", token=token, body={"text": "question " + json.dumps(hostile)})

        def listed() -> str:
            res = cli("pending", sid)
            assert res.returncode == 0, res.stderr
            return res.stdout if "question 1" in res.stdout else ""

        shown = poll(listed, 15, "the pending question")
        [pending] = json.loads(cli("pending", sid, "--json").stdout)
        rid = pending["request_id"]
        assert pending["questions"][0]["question"] == hostile["questions"][0]["question"]  # JSON: as sent
        assert shown.splitlines() == [
            f"{rid}  Ask user 2 questions",
            "  options: proceed_once (Submit), cancel (Cancel)",
            "  question 0: [DB\\u202e] Which \\x1b]0;pwned\\x07database?\\x1b[2J (one choice)",
            "    - PostgreSQL: a \\x1b[31mserver\\x1b[0m\\x0d fake: line",
            "    - SQLite: a file",
            "  question 1: [Features] Which features? (several choices)",
            "    - Auth: log in",
            "    - Export: CSV",
        ]
        assert not any((ch < " " and ch != "\n") or "\x7f" <= ch <= "\x9f" for ch in shown), repr(shown)
        done = cli(
            "answer", sid, rid, "--option", "proceed_once", "--answer", "0=SQLite", "--answer", "1=Auth"
        )
        assert done.returncode == 0, done.stderr
        poll(lambda: get_json(f"{base}/{sid}", token=token)["state"] == "idle", 15, "the turn's end")
        assert cli("pending", sid, "--json").stdout.strip() == "[]"
        missing = cli("pending", "nosuchsession")
        assert missing.returncode == 1 and "no session" in missing.stderr, missing.stderr
    finally:
        assert cli("stop").returncode == 0

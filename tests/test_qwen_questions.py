"""End to end with the real, pinned Qwen Code: its questions answered through the daemon's API reach
the model, a plan approval shows the plan, and the mode changes Qwen Code makes show in the stream.

Why: the issue this answers was a product that passed its tests and failed with the real agent.
Here nothing stands in for Qwen Code; only the model is the fake OpenAI server, which records the
tool result Qwen Code sends it after the user's answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.agents.registry import pinned_qwen_cli
from qwen_daemon.config import Paths, Settings
from tests.support.daemon import Api, running_daemon
from tests.support.fake_openai import FakeOpenAI, serving_fake_openai, text, tool_call, write_file
from tests.support.qwen import AGENT_ENV, prepare_qwen_home

pytestmark = [pytest.mark.qwen, pytest.mark.timeout(180)]

QUESTIONS = {
    "questions": [
        {
            "question": "Which database?",
            "header": "DB",
            # Qwen Code refuses options without a description before it asks anything
            "options": [
                {"label": "PostgreSQL", "description": "A database server"},
                {"label": "SQLite", "description": "A single file"},
            ],
            "multiSelect": False,
        },
        {
            "question": "Which features?",
            "header": "Features",
            "options": [
                {"label": "Auth", "description": "Log in"},
                {"label": "Search", "description": "Find things"},
                {"label": "Export", "description": "CSV files"},
            ],
            "multiSelect": True,
        },
    ]
}


@pytest.fixture
async def fake_llm(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    if not pinned_qwen_cli().is_file():
        pytest.fail(f"the pinned Qwen Code is not installed at {pinned_qwen_cli()}; run `make install`")
    async with serving_fake_openai() as fake:  # on the test's loop: the tests only await
        env = prepare_qwen_home(isolated_home, fake.base_url)
        for name in AGENT_ENV:
            monkeypatch.setenv(name, env[name])
        yield fake


async def prompt(api: Api, sid: str, words: str) -> int:
    before = int((await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"])
    reply = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": words})
    assert reply.status == 202, reply.body
    return before


async def request_after(api: Api, sid: str, after: int) -> dict[str, Any]:
    return await api.wait_event(
        sid, lambda e: e["seq"] > after and e["type"] == "permission_request", timeout=90
    )


async def turn_end(api: Api, sid: str, after: int) -> None:
    await api.wait_event(sid, lambda e: e["seq"] > after and e["type"] == "turn_ended", timeout=90)
    await api.wait_state(sid, "idle")


def tool_result(fake: FakeOpenAI, call_id: str) -> str:
    """What Qwen Code told the model the tool returned (the tool message for ``call_id``)."""
    for body in reversed(fake.main_requests):
        for message in body.get("messages", []):
            if message.get("role") == "tool" and message.get("tool_call_id") == call_id:
                content = message.get("content")
                if isinstance(content, list):  # a list of parts, as for exit_plan_mode
                    return "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return str(content)
    raise AssertionError(f"the model never received a result for {call_id}")


def mode_changes(events: list[dict[str, Any]], after: int) -> list[str]:
    return [e["mode_id"] for e in events if e["seq"] > after and e["type"] == "mode_changed"]


async def test_real_qwen_question_answered_through_the_api_reaches_the_model(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()

    async def main() -> None:
        async with running_daemon(Settings(paths=Paths.from_platform(), port=0)) as api:
            sid = (await api.create(workspace))["id"]
            fake_llm.queue(tool_call("ask_user_question", QUESTIONS, call_id="call_ask"), text("Thanks."))
            before = await prompt(api, sid, "Set up the project")
            request = await request_after(api, sid, before)
            assert request["questions"] == [
                {
                    "question": "Which database?",
                    "header": "DB",
                    "options": [
                        {"label": "PostgreSQL", "description": "A database server"},
                        {"label": "SQLite", "description": "A single file"},
                    ],
                    "multi_select": False,
                },
                {
                    "question": "Which features?",
                    "header": "Features",
                    "options": [
                        {"label": "Auth", "description": "Log in"},
                        {"label": "Search", "description": "Find things"},
                        {"label": "Export", "description": "CSV files"},
                    ],
                    "multi_select": True,
                },
            ]
            assert "meta" not in request and "plan" not in request
            url = f"/api/sessions/{sid}/permissions/{request['request_id']}"
            asked_so_far = len(fake_llm.main_requests)
            refused = await api.call("POST", url, {"option_id": "proceed_once", "answers": {"0": "SQLite"}})
            assert refused.status == 400 and "missing 1" in refused.body["error"]["message"]
            answers = {"0": "SQLite", "1": ["Auth", "Export"]}
            ok = await api.call("POST", url, {"option_id": "proceed_once", "answers": answers})
            assert ok.status == 200, ok.body
            await turn_end(api, sid, before)
            assert len(fake_llm.main_requests) == asked_so_far + 1  # the refused answer went nowhere
            result = tool_result(fake_llm, "call_ask")
            assert "**DB**: SQLite" in result, result
            assert "**Features**: Auth, Export" in result, result

            # "Allow All Edits" switches Qwen Code to auto-edit: the stream and the session say so
            fake_llm.queue(write_file(str(workspace / "notes.txt"), "hi\n"), text("Written."))
            before = await prompt(api, sid, "Write notes.txt")
            request = await request_after(api, sid, before)
            assert "questions" not in request and "plan" not in request
            url = f"/api/sessions/{sid}/permissions/{request['request_id']}"
            assert (await api.call("POST", url, {"option_id": "proceed_always"})).status == 200
            await turn_end(api, sid, before)
            assert mode_changes(await api.events(sid), before) == ["auto-edit"]
            assert (await api.call("GET", f"/api/sessions/{sid}")).body["mode"] == "auto-edit"
            assert (workspace / "notes.txt").read_text() == "hi\n"

    await main()


async def test_real_qwen_plan_exit_shows_the_plan(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()
    plan = "# Plan\n\n1. Add `notes.txt`\n2. Run the **tests**\n"

    async def main() -> None:
        async with running_daemon(Settings(paths=Paths.from_platform(), port=0)) as api:
            sid = (await api.create(workspace, mode="plan"))["id"]
            fake_llm.queue(
                tool_call("exit_plan_mode", {"plan": plan}, call_id="call_plan"), text("Starting.")
            )
            before = await prompt(api, sid, "Plan it")
            request = await request_after(api, sid, before)
            assert request["plan"] == plan and "questions" not in request
            assert [o["option_id"] for o in request["options"]] == [
                "restore_previous",
                "proceed_always",
                "proceed_once",
                "cancel",
            ]
            detail = (await api.call("GET", f"/api/sessions/{sid}")).body
            assert detail["pending_permissions"][0]["plan"] == plan
            url = f"/api/sessions/{sid}/permissions/{request['request_id']}"
            assert (await api.call("POST", url, {"option_id": "proceed_always"})).status == 200
            await turn_end(api, sid, before)
            assert mode_changes(await api.events(sid), before) == ["auto-edit"]
            assert (await api.call("GET", f"/api/sessions/{sid}")).body["mode"] == "auto-edit"
            assert tool_result(fake_llm, "call_plan").startswith("User approved")

    await main()

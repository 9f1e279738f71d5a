"""Real Qwen Code asks a question (its ask_user_question tool, called by the fake LLM) and the
answer picked in the page reaches the model: the whole path the issue found broken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from qwen_daemon.agents.registry import pinned_qwen_cli
from qwen_daemon.config import Paths, Settings
from tests.support.browser import DaemonThread, Pages
from tests.support.fake_openai import running_fake_openai, text, tool_call
from tests.support.qwen import AGENT_ENV, prepare_qwen_home

pytestmark = [pytest.mark.qwen, pytest.mark.timeout(180)]

QWEN_TIMEOUT_MS = 90_000
QUESTION = {
    "question": "Which database?",
    "header": "DB",
    "options": [
        {"label": "PostgreSQL", "description": "A database server"},
        {"label": "SQLite", "description": "One file, no server"},
    ],
    "multiSelect": False,
}


def tool_results(requests: list[dict[str, Any]], call_id: str) -> list[str]:
    """The contents of the tool-result messages for ``call_id`` the model was sent."""
    found = []
    for body in requests:
        for message in body.get("messages") or []:
            if message.get("role") == "tool" and message.get("tool_call_id") == call_id:
                content = message.get("content")
                if isinstance(content, list):
                    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                found.append(str(content))
    return found


def test_real_qwen_question_answered_in_the_page_reaches_the_model(
    browser: Browser, tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pinned_qwen_cli().is_file():
        pytest.fail(f"the pinned Qwen Code is not installed at {pinned_qwen_cli()}; run `make install`")
    workspace = tmp_path / "project"
    workspace.mkdir()
    with running_fake_openai() as fake:
        env = prepare_qwen_home(isolated_home, fake.base_url)
        for name in AGENT_ENV:
            monkeypatch.setenv(name, env[name])
        daemon = DaemonThread(Settings(paths=Paths.from_platform(), port=0)).start()
        pages = Pages(browser, daemon)
        try:
            sid = str(daemon.run(daemon.api.create(workspace))["id"])
            page = pages.open(f"/s/{sid}")
            expect(page.locator("#state")).to_have_text("idle", timeout=QWEN_TIMEOUT_MS)

            fake.queue(
                tool_call("ask_user_question", {"questions": [QUESTION]}, call_id="call_question"),
                text("Going with SQLite."),
            )
            page.locator("#prompt").fill("Set up a database")
            page.locator("#prompt").press("Enter")
            prompt = page.locator(".permission.open")
            expect(prompt).to_be_visible(timeout=QWEN_TIMEOUT_MS)
            expect(prompt.get_by_role("heading")).to_have_text("The agent has a question")
            expect(prompt.locator("legend")).to_have_text("DBWhich database?")
            expect(prompt.locator(".choice-desc")).to_have_text(["A database server", "One file, no server"])
            expect(prompt.locator(".options button")).to_have_text(["Submit", "Cancel"])
            prompt.get_by_label("SQLite").check()
            prompt.get_by_role("button", name="Submit").click()

            expect(page.locator(".permission.resolved .outcome")).to_have_text("Submit")
            expect(page.locator(".msg.agent").last).to_have_text(
                "Going with SQLite.", timeout=QWEN_TIMEOUT_MS
            )
            expect(page.locator("#state")).to_have_text("idle", timeout=QWEN_TIMEOUT_MS)
            results = tool_results(fake.main_requests, "call_question")
            assert results, "the model never received the question's tool result"
            assert "**DB**: SQLite" in results[-1], results
            pages.check()
        finally:
            pages.close()
            daemon.stop()

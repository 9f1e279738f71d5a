"""The transcript's prompts in Chromium against the real daemon and the scripted fake agent (which
sends the permission requests real Qwen Code sends): questions with single- and multi-select
choices and "Other" answers, on desktop and at 360 px; a plan to approve, rendered as Markdown;
focus on the safe option; mode changes as lines; and a turn cut off by the daemon going away,
whose cards then say interrupted, not running."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from qwen_daemon.cli import wait_gone
from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from tests.support.browser import DaemonThread, Pages
from tests.support.daemon import fake_settings
from tests.support.probe import get_json, poll, start_daemon

pytestmark = pytest.mark.timeout(90)


def new_session(daemon: DaemonThread, workspace: Path) -> str:
    return str(daemon.run(daemon.api.create(workspace))["id"])


def prompt_via_api(daemon: DaemonThread, sid: str, text: str) -> None:
    reply = daemon.run(daemon.api.call("POST", f"/api/sessions/{sid}/prompt", {"text": text}))
    assert reply.status == 202, reply.body


def focused(page: Page) -> Any:
    """The focused element's text and option id."""
    return page.evaluate(
        "(({textContent, dataset}) => ({text: textContent, id: dataset.optionId}))(document.activeElement)"
    )


DB = {
    "question": "Which database should the service use?",
    "header": "DB",
    "options": [
        {"label": "PostgreSQL", "description": "A server; best for many writers"},
        {"label": "SQLite", "description": "One file, no server"},
    ],
    "multiSelect": False,
}
EXTRAS = {
    "question": "Which extras do you want?",
    "header": "Extras",
    "options": [
        {"label": "Migrations", "description": ""},
        {"label": "Backups", "description": "Nightly copies"},
        {"label": "Metrics", "description": ""},
    ],
    "multiSelect": True,
}


def ask(daemon: DaemonThread, sid: str, *questions: dict[str, Any]) -> None:
    """The fake agent asks ``questions`` through ask_user_question, as Qwen Code does."""
    prompt_via_api(daemon, sid, "question " + json.dumps({"questions": list(questions)}))


def sent_answers(page: Page) -> list[Any]:
    """Records the bodies of the permission answers the page POSTs (read at the end)."""
    bodies: list[Any] = []

    def on_request(request: Request) -> None:
        if "/permissions/" in request.url:
            bodies.append(request.post_data_json)

    page.on("request", on_request)
    return bodies


def test_questions_single_and_multi_select_reach_the_agent(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    bodies = sent_answers(page)
    ask(daemon, sid, DB, EXTRAS)
    prompt = page.locator(".permission.open")
    expect(prompt.get_by_role("heading")).to_have_text("The agent has a question")
    db, extras = prompt.locator("fieldset.question").all()
    expect(db.locator("legend")).to_have_text("DBWhich database should the service use?")
    expect(db.get_by_role("radio")).to_have_count(3)  # two labels and "Other"
    expect(db.locator(".choice-desc")).to_have_text(
        ["A server; best for many writers", "One file, no server"]
    )
    expect(extras.locator("legend .chip")).to_have_text("Extras")
    expect(extras.get_by_role("checkbox")).to_have_count(4)
    expect(prompt.locator(".options button")).to_have_text(["Submit", "Cancel"])
    expect(db.get_by_label("PostgreSQL")).to_be_focused()  # the first choice, not a button

    prompt.get_by_role("button", name="Submit").click()
    expect(prompt.locator(".prompt-status")).to_have_text("Answer every question first.")
    expect(prompt.locator("fieldset.missing")).to_have_count(2)
    db.get_by_label("SQLite").check()
    extras.get_by_label("Migrations").check()
    extras.get_by_label("Backups").check()
    other = extras.get_by_label("Other answer to: Which extras do you want?")
    other.fill("Docs")
    expect(extras.get_by_label("Other", exact=True)).to_be_checked()  # typing picks "Other"
    other.press("Enter")  # Enter submits with "Submit", the one allow-once option

    expect(page.locator(".permission.resolved .outcome")).to_have_text("Submit")
    expect(page.locator(".given-answers li")).to_have_text(["DBSQLite", "ExtrasMigrations, Backups, Docs"])
    expect(page.locator(".msg.agent").last).to_contain_text("answers:")
    assert bodies == [
        {"option_id": "proceed_once", "answers": {"0": "SQLite", "1": ["Migrations", "Backups", "Docs"]}}
    ]
    agent_saw = json.loads(page.locator(".msg.agent").last.inner_text().removeprefix("answers: "))
    assert agent_saw["0"] == "SQLite", agent_saw
    assert "Docs" in str(agent_saw["1"]) and "Backups" in str(agent_saw["1"]), agent_saw


def test_other_replaces_a_single_choice(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    bodies = sent_answers(page)
    ask(daemon, sid, DB)
    prompt = page.locator(".permission.open")
    prompt.get_by_label("PostgreSQL").check()
    prompt.get_by_label("Other answer to: Which database should the service use?").fill("DuckDB")
    expect(prompt.get_by_label("PostgreSQL")).not_to_be_checked()
    prompt.get_by_role("button", name="Submit").click()
    expect(page.locator(".msg.agent").last).to_have_text('answers: {"0": "DuckDB"}')
    assert bodies == [{"option_id": "proceed_once", "answers": {"0": "DuckDB"}}]


def test_questions_fit_a_360_px_screen(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}", width=360, height=740)
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    ask(daemon, sid, DB, EXTRAS)
    prompt = page.locator(".permission.open")
    expect(prompt.locator("fieldset.question")).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for box in (prompt.locator(".other-text").first, prompt.get_by_role("button", name="Submit")):
        bounds = box.bounding_box()
        assert bounds is not None and bounds["x"] >= 0 and bounds["x"] + bounds["width"] <= 360, bounds
    prompt.get_by_label("SQLite").check()
    prompt.get_by_label("Metrics").check()
    prompt.get_by_role("button", name="Submit").click()
    expect(page.locator(".permission.resolved .outcome")).to_have_text("Submit")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


PLAN = "# Ship the store\n\n1. Add a **SQLite** store\n2. Write the tests\n\n- keep `make test` green\n"


def test_plan_approval_shows_the_plan_as_markdown(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    prompt_via_api(daemon, sid, "mode plan\nplan-exit " + json.dumps(PLAN))
    prompt = page.locator(".permission.open")
    expect(prompt.get_by_role("heading", name="Approve the plan?")).to_be_visible()
    plan = prompt.locator(".plan-proposal")
    expect(plan.locator("h1")).to_have_text("Ship the store")
    expect(plan.locator("ol li")).to_have_text(["Add a SQLite store", "Write the tests"])
    expect(plan.locator("strong")).to_have_text("SQLite")
    expect(plan.locator("ul li code")).to_have_text("make test")
    expect(prompt).not_to_contain_text("# Ship")  # no raw copy of the Markdown beside it
    # four options; focus on the allow-once that keeps approving edits by hand, never "auto-accept"
    expect(prompt.locator(".options button")).to_have_count(4)
    assert focused(page)["id"] == "proceed_once"
    page.keyboard.press("Enter")
    expect(page.locator(".permission.resolved")).to_have_attribute("data-outcome", "proceed_once")
    expect(page.locator(".mode-note")).to_have_text(["Mode: Plan", "Mode: Default"])
    expect(page.locator("#state")).to_have_text("idle")


def test_focus_lands_on_allow_once_never_always(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    prompt_via_api(daemon, sid, "permission Write notes.txt")  # nothing focused: the prompt takes it
    prompt = page.locator(".permission.open")
    expect(prompt.locator(".options button")).to_have_text(["Allow All Edits", "Allow", "Reject"])
    expect(prompt.get_by_role("button", name="Allow", exact=True)).to_be_focused()
    assert focused(page) == {"text": "Allow", "id": "proceed_once"}
    page.keyboard.press("Enter")  # a stray Enter grants this once, nothing more
    expect(page.locator(".permission.resolved")).to_have_attribute("data-outcome", "proceed_once")
    expect(page.locator(".msg.agent").last).to_have_text("allowed proceed_once")
    expect(page.locator("#state")).to_have_text("idle")


def test_mode_changes_show_as_lines_named_like_the_selector(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    page.locator("#prompt").fill("say planning now\nmode plan")
    page.locator("#prompt").press("Enter")
    lines = page.locator(".mode-note")
    expect(lines).to_have_text(["Mode: Plan"])
    expect(page.locator("#state")).to_have_text("idle")
    # a switch made by the daemon (here through the API) is reported the same way
    reply = daemon.run(daemon.api.call("POST", f"/api/sessions/{sid}/mode", {"mode_id": "default"}))
    assert reply.status == 200, reply.body
    expect(lines).to_have_text(["Mode: Plan", "Mode: Default"])
    expect(page.locator("#mode")).to_have_value("default")
    # "Allow All Edits" on an edit switches the agent to auto-edit, as Qwen Code does
    page.locator("#prompt").fill("permission Write notes.txt")
    page.locator("#prompt").press("Enter")
    page.get_by_role("button", name="Allow All Edits").click()
    expect(lines).to_have_text(["Mode: Plan", "Mode: Default", "Mode: Auto-edit"])
    expect(page.locator("#state")).to_have_text("idle")
    page.reload()  # replayed from history, the lines are the same
    expect(page.locator(".mode-note")).to_have_text(["Mode: Plan", "Mode: Default", "Mode: Auto-edit"])
    before = page.locator("#transcript").inner_text()
    assert before.index("planning now") < before.index("Mode: Plan")


def crash_daemon_mid_turn(paths: Paths, workspace: Path, script: str) -> str:
    """A daemon process takes a turn that waits on a permission prompt and is killed with -9
    (nothing graceful); returns the session id. The next daemon recovers the cut-off turn."""
    start_daemon()
    info = read_discovery(paths)
    assert info is not None
    token = paths.token_file.read_text().strip()
    base = f"http://127.0.0.1:{info.port}/api/sessions"
    sid = str(get_json(base, token=token, body={"cwd": str(workspace)})["id"])
    get_json(f"{base}/{sid}/prompt", token=token, body={"text": script})

    def asked() -> bool:
        events = get_json(f"{base}/{sid}/events?after=0", token=token)["events"]
        return any(e["type"] == "permission_request" for e in events)

    poll(asked, 20, "the permission request")
    os.kill(info.pid, signal.SIGKILL)
    assert wait_gone(info.pid, 15), "the killed daemon is still alive"
    return sid


@pytest.mark.usefixtures("daemon_reaper")
def test_a_turn_cut_off_by_the_daemon_shows_interrupted_cards(
    browser: Browser, tmp_path: Path, paths: Paths, workspace: Path
) -> None:
    sid = crash_daemon_mid_turn(paths, workspace, "tool read notes.txt\npermission Write notes.txt")
    daemon = DaemonThread(fake_settings(tmp_path)).start()
    pages = Pages(browser, daemon)
    try:
        page = pages.open(f"/s/{sid}")
        expect(page.locator("#state")).to_have_text("idle")
        edit = page.get_by_role("article", name="edit: Write notes.txt")
        expect(edit).to_have_attribute("data-status", "interrupted")
        expect(edit.locator(".tool-status")).to_have_text("interrupted")
        read = page.get_by_role("article", name="read: notes.txt")
        expect(read).to_have_attribute("data-status", "completed")
        expect(page.locator(".tool-status", has_text="running")).to_have_count(0)
        expect(page.locator(".permission.resolved .outcome")).to_have_text(
            "Expired — the daemon restarted before it was answered"
        )
        expect(page.locator(".turn-note")).to_have_text(
            "Interrupted — the daemon stopped before the turn ended; prompt again to continue."
        )
        page.locator("#prompt").fill("say carrying on")
        page.locator("#prompt").press("Enter")
        expect(page.locator(".msg.agent").last).to_have_text("carrying on")
        pages.check()
    finally:
        pages.close()
        daemon.stop()


def test_a_graceful_stop_mid_turn_reads_interrupted_not_cancelled(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    prompt_via_api(daemon, sid, "tool read notes.txt\npermission Write notes.txt")
    expect(page.locator(".permission.open")).to_be_visible()
    port = daemon.api.daemon.port
    pages.allow(r"WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|status of (404|503)")
    daemon.stop()
    restarted = DaemonThread(daemon.settings, port=port).start()
    try:
        expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
        expect(page.locator(".turn-note")).to_have_text(
            "Interrupted — the daemon stopped before the turn ended; prompt again to continue."
        )
        expect(page.locator(".permission.open")).to_have_count(0)
        expect(page.locator(".tool-status", has_text="running")).to_have_count(0)
        expect(page.locator('.tool[data-status="pending"]')).to_have_count(0)
        expect(page.locator("#state")).to_have_text("idle")
    finally:
        restarted.stop()

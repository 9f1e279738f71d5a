"""The transcript's prompts in Chromium against the real daemon and the scripted fake agent:
permission prompts focus the safe option, mode changes show as lines, and a turn cut off by the
daemon going away leaves its cards marked interrupted, not running."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

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


def test_focus_lands_on_allow_once_never_always(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    prompt_via_api(daemon, sid, "permission Write notes.txt")  # nothing focused: the prompt takes it
    prompt = page.locator(".permission.open")
    expect(prompt.locator(".options button")).to_have_text(["Always allow", "Allow once", "Reject"])
    expect(prompt.get_by_role("button", name="Allow once")).to_be_focused()
    assert focused(page) == {"text": "Allow once", "id": "proceed_once"}
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
    page.reload()  # replayed from history, the lines are the same
    expect(page.locator(".mode-note")).to_have_text(["Mode: Plan", "Mode: Default"])
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

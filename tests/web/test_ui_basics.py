"""The web UI in Chromium against the real daemon and the scripted fake agent: login, dashboard,
streaming Markdown, tool cards, permission prompts and questions, cancel, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import DaemonThread, Pages
from tests.support.daemon import fake_settings

pytestmark = pytest.mark.timeout(90)


def new_session(daemon: DaemonThread, workspace: Path, title: str | None = None) -> str:
    extra = {"title": title} if title else {}
    return str(daemon.run(daemon.api.create(workspace, **extra))["id"])


def send(page: Page, text: str) -> None:
    """Put a prompt (a fake-agent script) in the box and press Enter."""
    box = page.locator("#prompt")
    box.fill(text)
    box.press("Enter")


def wait_idle(page: Page) -> None:
    expect(page.locator("#state")).to_have_text("idle")
    expect(page.locator("#working")).to_be_hidden()


def test_login_from_token_url_sets_the_cookie_and_drops_the_token(pages: Pages, daemon: DaemonThread) -> None:
    context = pages.context()
    page = pages.watch(context.new_page())
    response = page.goto(daemon.login_url)
    assert response is not None and response.status == 200
    assert page.url == daemon.base + "/"  # the token is gone from the address bar
    assert "token" not in page.evaluate("location.href + document.referrer")
    (cookie,) = context.cookies()
    assert cookie["name"] == f"qwen_daemon_{daemon.api.daemon.port}"
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert daemon.api.daemon.token not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it
    expect(page.get_by_role("heading", name="New session")).to_be_visible()
    expect(page.locator("#list-status")).to_have_text("No sessions yet. Create one above.")

    stranger = pages.watch(pages.context().new_page())
    pages.allow(r"status of 401")
    response = stranger.goto(daemon.base + "/")
    assert response is not None and response.status == 401
    expect(stranger.get_by_role("heading", name="Log in to qwen-daemon")).to_be_visible()
    expect(stranger.locator("pre.command")).to_have_text("qwen-daemon url")


MARKDOWN = (
    "\n\n# Result\n\nSome **bold** words and `code`.\n\n- first\n- second\n\n"
    "```python\ndef f(x):\n    return x * 2\n```\n\n"
    "| name | size |\n|:--|--:|\n| a.txt | 12 |\n| b.txt | 7 |\n\n"
    "See [the docs](https://example.com/docs).\n"
)


def test_create_a_session_and_see_the_reply_stream_in_as_markdown(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    page = pages.open()
    page.get_by_label("Workspace folder").fill(str(workspace))
    page.get_by_label("Title").fill("Docs work")
    page.get_by_role("button", name="Create session").click()
    page.wait_for_url(re.compile(r"/s/[\w-]+$"))
    expect(page.locator("#session-title")).to_have_text("Docs work")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    wait_idle(page)
    expect(page.locator("#empty")).to_be_visible()

    box = page.locator("#prompt")
    box.press_sequentially("say typed with")
    box.press("Shift+Enter")  # a new line, not a send
    box.press_sequentially("md " + json.dumps(MARKDOWN))
    assert box.input_value().count("\n") == 1
    box.press("Enter")
    expect(box).to_have_value("")

    reply = page.locator(".msg.agent").last
    expect(reply.locator("h1")).to_have_text("Result")
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("ul > li")).to_have_text(["first", "second"])
    expect(reply.locator("pre code")).to_have_text("def f(x):\n    return x * 2\n")
    expect(reply.locator("table tbody tr")).to_have_count(2)
    expect(reply.locator("td.align-right").first).to_have_text("12")
    link = reply.get_by_role("link", name="the docs")
    expect(link).to_have_attribute("href", "https://example.com/docs")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator(".msg.agent")).to_have_count(1)
    expect(reply.locator("p").first).to_have_text("typed with")
    wait_idle(page)
    expect(page.locator("#empty")).to_be_hidden()

    page.get_by_role("link", name="All sessions").click()
    row = page.locator(".session-row")
    expect(row).to_have_count(1)
    expect(row.locator(".session-title")).to_have_text("Docs work")
    expect(row.locator(".badge")).to_have_text("idle")
    expect(row.locator(".cwd")).to_have_text(str(workspace))
    expect(row.locator("time")).to_have_text("active just now")
    expect(page.get_by_role("button", name=f"Use workspace {workspace}")).to_be_visible()


def test_permission_prompt_offers_the_agents_options_and_completes_the_tool(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    send(page, "tool read notes.txt\npermission Write notes.txt")
    prompt = page.locator(".permission.open")
    expect(prompt).to_be_visible()
    expect(prompt.get_by_role("heading")).to_have_text("Permission needed")
    buttons = prompt.locator(".options button")
    expect(buttons).to_have_text(["Allow All Edits", "Allow", "Reject"])
    assert [b.get_attribute("data-option-id") for b in buttons.all()] == [
        "proceed_always",
        "proceed_once",
        "cancel",
    ]
    expect(page.locator("#state")).to_have_text("needs you")
    tool = page.get_by_role("article", name="edit: Write notes.txt")
    expect(tool).to_have_attribute("data-status", "pending")
    expect(page.get_by_role("article", name="read: notes.txt")).to_have_attribute("data-status", "completed")

    prompt.get_by_role("button", name="Allow", exact=True).click()
    resolved = page.locator(".permission.resolved")
    expect(resolved).to_have_attribute("data-outcome", "proceed_once")
    expect(resolved.locator(".outcome")).to_have_text("Allow")
    expect(tool).to_have_attribute("data-status", "completed")
    diff = tool.locator(".tool-body .diff")  # the completion carries the edit's diff, as Qwen's does
    expect(diff.locator(".path")).to_have_text(f"{workspace / 'notes.txt'} (new file)")
    expect(diff.locator(".line.add")).to_have_text("+ hello")
    expect(page.locator(".msg.agent").last).to_have_text("allowed proceed_once")
    wait_idle(page)
    expect(page.locator(".permission.open")).to_have_count(0)


def test_question_prompt_sends_the_chosen_answers(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    send(page, "question Ship it today?")
    prompt = page.locator(".permission.open")
    expect(prompt.get_by_role("heading")).to_have_text("The agent has a question")
    expect(prompt.locator("legend")).to_have_text("QuestionShip it today?")
    expect(prompt.locator(".options button")).to_have_text(["Submit", "Cancel"])
    prompt.get_by_role("button", name="Submit").click()
    expect(prompt.locator(".prompt-status")).to_have_text("Answer every question first.")
    prompt.get_by_label("Yes").check()
    prompt.get_by_role("button", name="Submit").click()
    expect(page.locator(".msg.agent").last).to_have_text('answers: {"0": "Yes"}')
    expect(page.locator(".permission.resolved .outcome")).to_have_text("Submit")


def test_cancel_a_running_turn_and_a_refused_prompt_keeps_its_text(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    send(page, "say working on it\nwait")
    expect(page.locator("#state")).to_have_text("running")
    expect(page.locator("#working")).to_be_visible()
    cancel = page.get_by_role("button", name="Cancel")
    expect(cancel).to_be_visible()
    expect(page.locator(".msg.agent")).to_have_text("working on it")

    pages.allow(r"status of 409")
    send(page, "a second prompt while busy")  # the daemon refuses it with 409
    expect(page.locator("#composer-note")).to_contain_text("still working on the last prompt")
    expect(page.locator("#prompt")).to_have_value("a second prompt while busy")

    page.locator("#prompt").press("Escape")
    expect(page.locator(".turn-note")).to_have_text("Turn cancelled.")
    wait_idle(page)
    expect(cancel).to_be_hidden()
    page.get_by_role("button", name="Send").click()  # the kept text goes out now
    expect(page.locator(".msg.user")).to_have_count(2)
    expect(page.locator(".msg.agent").last).to_have_text("echo: a second prompt while busy")


def test_agent_errors_are_shown_with_what_to_do(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    send(page, "error Authentication required")
    card = page.locator(".error-card")
    expect(card.locator(".error-message")).to_contain_text("Authentication required")
    expect(card.locator(".hint")).to_contain_text("OPENAI_API_KEY")
    wait_idle(page)

    page.goto(daemon.base + "/")
    page.get_by_label("Workspace folder").fill("relative/path")
    page.get_by_role("button", name="Create session").click()
    pages.allow(r"status of 400")
    expect(page.locator("#create-error")).to_contain_text("must be an absolute path")


def test_agent_html_is_shown_as_text_never_run(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    hostile = (
        '<script>window.pwned = 1</script>\n\n<img src=x onerror="window.pwned = 2">\n\n'
        '[click](javascript:window.pwned=3) <iframe src="/"></iframe> ![pic](https://example.com/p.png)\n'
    )
    send(page, "md " + json.dumps(hostile) + "\nsay <b onmouseover=alert(1)>bold?</b>")
    reply = page.locator(".msg.agent").first
    expect(reply).to_contain_text("<script>window.pwned = 1</script>")
    expect(reply).to_contain_text('<img src=x onerror="window.pwned = 2">')
    expect(reply).to_contain_text("<b onmouseover=alert(1)>bold?</b>")
    expect(page.locator(".msg.user")).to_contain_text("<script>")
    wait_idle(page)
    transcript = page.locator("#transcript")
    assert transcript.locator("script, img, iframe, b").count() == 0
    assert transcript.locator('a[href^="javascript"]').count() == 0
    expect(transcript.get_by_role("link", name="pic")).to_have_attribute("href", "https://example.com/p.png")
    assert page.evaluate("window.pwned") is None


DIFF_VIEW = """async ([old_text, new_text]) => {
  const cards = await import("/static/js/cards.js");
  const view = cards.diffView({ path: "f.py", old_text, new_text });
  return {
    lines: [...view.querySelectorAll(".line")].map((l) => `${l.classList[1]}|${l.textContent}`),
    head: view.querySelector(".diff-head").textContent,
  };
}"""


def test_diffs_show_changed_lines_with_context_and_fold_the_rest(pages: Pages) -> None:
    page = pages.open()
    old = "".join(f"line {i}\n" for i in range(1, 21))
    new = old.replace("line 10\n", "line ten\n") + "line 21\n"
    view = page.evaluate(DIFF_VIEW, [old, new])
    assert view["lines"] == [
        "fold|⋯ 6 unchanged lines",
        *[f"ctx|  line {i}" for i in (7, 8, 9)],
        "del|- line 10",
        "add|+ line ten",
        *[f"ctx|  line {i}" for i in (11, 12, 13)],
        "fold|⋯ 4 unchanged lines",
        *[f"ctx|  line {i}" for i in (18, 19, 20)],
        "add|+ line 21",
    ]
    assert view["head"] == "f.py+2 \u22121"
    created = page.evaluate(DIFF_VIEW, ["", "a\nb\n"])
    assert created == {"lines": ["add|+ a", "add|+ b"], "head": "f.py (new file)+2 \u22120"}


def test_an_agent_that_cannot_start_is_explained(
    browser: Browser, tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_AGENT_AUTH_REQUIRED", "1")  # session/new fails like Qwen without a key
    served = DaemonThread(fake_settings(tmp_path)).start()
    pages = Pages(browser, served)
    try:
        page = pages.open()
        pages.allow(r"status of 502")
        page.get_by_label("Workspace folder").fill(str(workspace))
        page.get_by_role("button", name="Create session").click()
        error = page.locator("#create-error")
        expect(error).to_contain_text("The agent could not start: Authentication required")
        expect(error.locator(".hint")).to_contain_text("OPENAI_API_KEY")
        expect(page.locator(".session-row .badge")).to_have_text("failed")
        error.get_by_role("link", name="Open the failed session").click()
        expect(page.locator("#banner")).to_contain_text("This session has failed")
        expect(page.locator("#banner .failure")).to_contain_text("Authentication required")
        expect(page.locator(".error-card .error-message")).to_contain_text("Authentication required")
        expect(page.locator("#prompt")).to_be_disabled()
        pages.check()
    finally:
        pages.close()
        served.stop()

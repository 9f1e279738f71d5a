"""The pages around the transcript, in Chromium against the real daemon and the fake agent:
rename and archive on the dashboard and the session page, the Archived section, reopening a
failed session, the mode selector after a restart, and honest banners — the daemon out of reach,
the session gone, the browser logged out — placed where the user looks, at 1280 and 360 px."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from qwen_daemon.agents.credentials import HINT
from qwen_daemon.config import AgentSpec
from tests.support.browser import DaemonThread, Pages
from tests.support.daemon import FAKE_AGENT, Api

pytestmark = pytest.mark.timeout(120)

#: Console noise a stopped daemon causes (refused sockets and fetches); nothing else is allowed.
DAEMON_DOWN = r"WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|status of (404|503)"


def new_session(daemon: DaemonThread, workspace: Path, **extra: Any) -> str:
    return str(daemon.run(daemon.api.create(workspace, **extra))["id"])


def detail(daemon: DaemonThread, sid: str) -> dict[str, Any]:
    reply = daemon.run(daemon.api.call("GET", f"/api/sessions/{sid}"))
    assert reply.status == 200, reply.body
    return dict(reply.body)


def send(page: Page, text: str) -> None:
    page.locator("#prompt").fill(text)
    page.locator("#prompt").press("Enter")


def wait_idle(page: Page) -> None:
    expect(page.locator("#state")).to_have_text("idle")
    expect(page.locator("#working")).to_be_hidden()


def expect_in_view(page: Page, locator: Locator) -> None:
    """``locator`` is visible and wholly inside the viewport (not scrolled away, not cut off)."""
    expect(locator).to_be_visible()
    expect(locator).to_be_in_viewport(ratio=1)
    box = locator.bounding_box()
    size = page.viewport_size
    assert box is not None and size is not None
    assert box["x"] >= 0 and box["y"] >= 0, box
    assert box["x"] + box["width"] <= size["width"] and box["y"] + box["height"] <= size["height"], box


@contextmanager
def restarted(daemon: DaemonThread, pages: Pages, **changes: Any) -> Iterator[DaemonThread]:
    """Stop ``daemon`` and start it again on the same port (with ``changes`` to its settings)."""
    port = daemon.api.daemon.port
    pages.allow(DAEMON_DOWN)
    daemon.stop()
    again = DaemonThread(dataclasses.replace(daemon.settings, **changes), port=port).start()
    try:
        yield again
    finally:
        again.stop()


async def turns_ended(api: Api, sid: str, count: int, timeout: float = 15.0) -> None:
    """Wait until ``count`` turns have ended and the session is no longer busy."""
    deadline = time.monotonic() + timeout
    while True:
        ended = [e for e in await api.events(sid) if e["type"] == "turn_ended"]
        state = (await api.call("GET", f"/api/sessions/{sid}")).body["state"]
        if len(ended) >= count and state not in ("running", "awaiting_permission"):
            return
        assert time.monotonic() < deadline, f"{len(ended)} turns ended, state {state}"
        await asyncio.sleep(0.02)


def fail_by_crashing(daemon: DaemonThread, sid: str) -> None:
    """Three agent crashes within a minute: the daemon marks the session failed."""
    for turn in range(1, 4):
        reply = daemon.run(daemon.api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "crash"}))
        assert reply.status == 202, reply.body
        daemon.run(turns_ended(daemon.api, sid, turn))
    daemon.run(daemon.api.wait_state(sid, "failed"))


# --- the dashboard -------------------------------------------------------------------------------


def test_the_dashboard_renames_archives_and_unarchives(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    keep = new_session(daemon, workspace, title="Keep me")
    old = new_session(daemon, workspace, title="Old work")
    page = pages.open()
    rows = page.locator("#sessions .session-row")
    expect(rows).to_have_count(2)
    expect(page.locator("#archived-section")).to_be_hidden()  # nothing archived yet

    # rename: Escape keeps the old title, Enter saves the new one
    page.get_by_role("button", name="Rename session Keep me").click()
    box = page.get_by_label("New title for session Keep me")
    expect(box).to_be_focused()
    box.fill("Not this")
    box.press("Escape")
    expect(box).to_have_count(0)
    expect(page.locator(f'[data-session-id="{keep}"] .session-title')).to_have_text("Keep me")
    page.get_by_role("button", name="Rename session Keep me").click()
    box.fill("   Renamed   twice ")
    box.press("Enter")
    expect(page.locator(f'[data-session-id="{keep}"] .session-title')).to_have_text("Renamed twice")
    assert detail(daemon, keep)["title"] == "Renamed twice"

    # an empty title and a refused save are explained; the box keeps what was typed
    page.get_by_role("button", name="Rename session Old work").click()
    box = page.get_by_label("New title for session Old work")
    box.fill("  ")
    box.press("Enter")
    expect(page.locator(".edit-error")).to_contain_text("A title cannot be empty")
    box.fill("Too late")
    assert daemon.run(daemon.api.call("DELETE", f"/api/sessions/{old}")).status == 204
    pages.allow(r"status of 404")
    box.press("Enter")
    expect(page.locator(".edit-error")).to_contain_text("Not renamed:")
    expect(box).to_have_value("Too late")
    box.press("Escape")
    expect(rows).to_have_count(1)  # the list caught up once the edit was over

    # archive from the list: it moves to the Archived section, which starts collapsed
    page.get_by_role("button", name="Archive session Renamed twice").click()
    expect(rows).to_have_count(0)
    section = page.locator("#archived-section")
    expect(section).to_be_visible()
    expect(section.locator("summary")).to_have_text("Archived (1)")
    expect(section).not_to_have_attribute("open", "")
    expect(page.locator("#list-note")).to_contain_text("archived")
    assert detail(daemon, keep)["archived"] is True
    listed = daemon.run(daemon.api.call("GET", "/api/sessions?archived=true")).body["sessions"]
    assert [s["id"] for s in listed] == [keep]

    section.locator("summary").click()
    archived_row = section.locator(".session-row")
    expect(archived_row.locator(".session-title")).to_have_text("Renamed twice")
    page.reload()  # the section and its rows come from the daemon, not from this tab
    section.locator("summary").click()
    section.get_by_role("button", name="Unarchive session Renamed twice").click()
    expect(rows).to_have_count(1)
    expect(section).to_be_hidden()
    assert detail(daemon, keep)["archived"] is False


# --- the session page ----------------------------------------------------------------------------


def test_the_session_page_renames_and_archives(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace, title="First title")
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")

    page.get_by_role("button", name="Rename session").click()
    box = page.get_by_label("New title for this session")
    expect(box).to_have_value("First title")
    box.fill("Second title")
    box.press("Escape")
    expect(page.locator("#session-title")).to_have_text("First title")
    expect(page.locator("#state")).to_have_text("idle")  # Escape in the box cancels nothing else
    page.get_by_role("button", name="Rename session").click()
    box.fill("Second title")
    box.press("Enter")
    expect(page.locator("#session-title")).to_have_text("Second title")
    expect(page).to_have_title("Second title · qwen-daemon")
    expect(page.get_by_role("button", name="Rename session")).to_be_focused()
    assert detail(daemon, sid)["title"] == "Second title"

    archive = page.locator("#archive")
    expect(archive).to_have_text("Archive")
    archive.click()
    expect(archive).to_have_text("Unarchive")
    expect(page.locator("#composer-note")).to_contain_text("Archived")
    assert detail(daemon, sid)["archived"] is True
    page.reload()
    expect(archive).to_have_text("Unarchive")

    send(page, "say still here")  # a prompt brings an archived session back
    expect(page.locator(".msg.agent")).to_have_text("still here")
    expect(archive).to_have_text("Archive")
    assert detail(daemon, sid)["archived"] is False


def test_a_failed_session_shows_why_and_reopens(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    fail_by_crashing(daemon, sid)
    banner = page.locator("#banner")
    expect(banner).to_contain_text("This session has failed")
    expect(banner.locator(".failure")).to_contain_text("keeps crashing")
    expect_in_view(page, banner)
    expect(page.locator("#prompt")).to_be_disabled()
    expect(page.locator("#state")).to_have_text("failed")

    page.reload()  # a fresh page knows the reason at once
    expect(banner.locator(".failure")).to_contain_text("keeps crashing")
    banner.get_by_role("button", name="Reopen").click()
    expect(banner).to_be_hidden()
    wait_idle(page)
    assert detail(daemon, sid)["failure"] is None
    send(page, "say back again")
    expect(page.locator(".msg.agent").last).to_have_text("back again")
    wait_idle(page)


def test_reopening_a_session_whose_agent_is_gone_is_explained(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    spare = AgentSpec("spare", (sys.executable, FAKE_AGENT))
    agents = {**daemon.settings.agents, "spare": spare}
    with restarted(daemon, pages, agents=agents) as with_spare:
        sid = new_session(with_spare, workspace, agent="spare")
        with restarted(with_spare, pages, agents=daemon.settings.agents):
            page = pages.open(f"/s/{sid}")
            banner = page.locator("#banner")
            expect(banner).to_contain_text("This session has failed")
            expect(banner.locator(".failure")).to_contain_text("spare")
            pages.allow(r"status of 409")
            banner.get_by_role("button", name="Reopen").click()
            error = banner.locator(".reopen-error")
            expect(error).to_contain_text("Cannot reopen:")
            expect(error).to_contain_text("spare")
            expect(error.locator(".hint")).to_contain_text("no longer in the daemon's configuration")
            expect(banner.locator(".failure")).to_contain_text("spare")  # the reason stays
            expect(page.locator("#prompt")).to_be_disabled()


def test_an_old_closed_session_reopens_from_its_page(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    """Sessions the former idle timer closed are read-only until reopened from their page."""
    sid = new_session(daemon, workspace, title="Closed long ago")
    port = daemon.api.daemon.port
    daemon.stop()
    db = sqlite3.connect(daemon.settings.paths.database)
    db.execute("UPDATE sessions SET state = 'closed', closed_at = ? WHERE id = ?", (time.time() - 60, sid))
    db.commit()
    db.close()
    again = DaemonThread(daemon.settings, port=port).start()
    try:
        page = pages.open(f"/s/{sid}")
        banner = page.locator("#banner")
        expect(banner).to_contain_text("This session is closed; its history stays readable here.")
        expect_in_view(page, banner)
        expect(page.locator("#prompt")).to_be_disabled()
        banner.get_by_role("button", name="Reopen").click()
        expect(banner).to_be_hidden()
        wait_idle(page)
        send(page, "say open again")
        expect(page.locator(".msg.agent").last).to_have_text("open again")
    finally:
        again.stop()


def test_the_mode_selector_is_there_after_a_restart_before_any_prompt(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    mode = page.get_by_label("Mode", exact=True)
    expect(mode.locator("option")).to_have_text(["Default", "Plan"])
    with restarted(daemon, pages):
        expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
        expect(mode.locator("option")).to_have_text(["Default", "Plan"])  # the open page kept it
        fresh = pages.open(f"/s/{sid}", context=page.context)  # a page opened after the restart
        expect(fresh.get_by_label("Mode", exact=True).locator("option")).to_have_text(["Default", "Plan"])
        expect(fresh.get_by_label("Mode", exact=True)).to_have_value("default")
        fresh.get_by_label("Mode", exact=True).select_option("plan")
        expect(fresh.locator("#mode-field")).to_have_attribute("data-mode", "plan")


# --- honest banners ------------------------------------------------------------------------------


def test_while_the_daemon_is_away_the_pages_say_so_and_keep_the_text(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace, title="Long job")
    page = pages.open(f"/s/{sid}")
    phone = pages.open(f"/s/{sid}", width=360, height=740)
    dashboard = pages.open("/", context=page.context)
    send(page, "permission Write report.md")  # the turn waits for an answer: Cancel and spinner show
    expect(page.locator("#cancel")).to_be_enabled()
    expect(page.locator("#working")).to_have_text("Waiting for your answer")  # not "Agent is working…"
    expect(dashboard.locator("#sessions .badge")).to_have_text("needs you")
    for view in (page, phone):
        view.locator("#prompt").fill("say typed while away")

    port = daemon.api.daemon.port
    pages.allow(DAEMON_DOWN + "|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE")
    daemon.stop()
    for view in (page, phone):
        away = view.locator("#away")
        expect(away).to_contain_text("Can't reach the daemon — reconnecting")
        expect_in_view(view, away)
        expect(view.locator("#send")).to_be_disabled()
        expect(view.locator("#prompt")).to_be_enabled()
        expect(view.locator("#prompt")).to_have_value("say typed while away")
        expect(view.locator("#state")).to_have_text("unknown")  # no longer "needs you" or "running"
        expect(view.locator("#working")).to_be_hidden()
        expect(view.get_by_label("Mode", exact=True)).to_be_disabled()
    expect(page.locator("#cancel")).to_be_disabled()
    page.locator("#prompt").press("Enter")  # Enter does not send either, and says why
    expect(page.locator("#composer-note")).to_contain_text("Not sent: the daemon cannot be reached")
    expect(page.locator("#prompt")).to_have_value("say typed while away")
    expect(dashboard.locator("#away")).to_contain_text("Can't reach the daemon — reconnecting")
    expect_in_view(dashboard, dashboard.locator("#away"))
    expect(dashboard.locator("#sessions .badge")).to_have_text("unknown")

    again = DaemonThread(daemon.settings, port=port).start()
    try:
        for view in (page, phone, dashboard):
            # "Retry now" where the page's own timer has not already reconnected (it may have: a
            # Playwright click on a button that vanishes meanwhile would wait for it forever)
            view.evaluate(
                """() => { const retry = [...document.querySelectorAll("#away button")]
                    .find((b) => b.textContent.includes("Retry now") && b.checkVisibility());
                  if (retry) retry.click(); }"""
            )
            expect(view.locator("#away")).to_be_hidden()
        expect(dashboard.locator("#sessions .badge")).to_have_text("idle")
        for view in (page, phone):
            wait_idle(view)  # the daemon's stop ended the turn
            expect(view.locator("#prompt")).to_have_value("say typed while away")
            expect(view.locator("#send")).to_be_enabled()
        page.locator("#prompt").press("Enter")
        expect(page.locator(".msg.agent").last).to_have_text("typed while away")
        expect(page.locator("#prompt")).to_have_value("")
        expect(phone.locator(".msg.agent").last).to_have_text("typed while away")
    finally:
        again.stop()


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (360, 740)])
def test_gone_and_logged_out_banners_show_where_the_user_looks(
    pages: Pages, daemon: DaemonThread, workspace: Path, width: int, height: int
) -> None:
    doomed = new_session(daemon, workspace, title="Doomed")
    kept = new_session(daemon, workspace, title="Kept")
    context = pages.context(width=width, height=height)
    views = {sid: pages.open(f"/s/{sid}", context=context) for sid in (doomed, kept)}
    for view in views.values():
        send(view, "\n".join(f"tool read notes-{i}.txt" for i in range(40)))  # a long page
        expect(view.locator(".tool")).to_have_count(40)
        wait_idle(view)
        assert view.evaluate("document.documentElement.scrollHeight") > 2 * height
        view.evaluate("window.scrollTo(0, 0)")  # reading from the top: the banner must still show

    pages.allow(r"status of 404")  # the page asks whether the session still exists: it does not
    assert daemon.run(daemon.api.call("DELETE", f"/api/sessions/{doomed}")).status == 204
    page = views[doomed]
    banner = page.locator("#banner")
    expect(banner).to_contain_text("This session no longer exists: it was deleted.")
    expect(banner).not_to_contain_text("restart")
    expect_in_view(page, banner)
    expect(page.locator("#prompt")).to_be_disabled()
    expect(page.locator("#away")).to_be_hidden()

    pages.allow(r"status of 401|WebSocket connection to .* failed")
    daemon.call(daemon.api.daemon.rotate_token)
    page = views[kept]
    banner = page.locator("#banner")
    expect(banner).to_contain_text("This browser is no longer logged in to the daemon")
    expect(banner).to_contain_text("qwen-daemon url")
    expect_in_view(page, banner)
    expect(page.locator("#send")).to_be_disabled()
    expect(page.locator("#away")).to_be_hidden()
    views[doomed].get_by_role("link", name="All sessions").last.click()
    expect(views[doomed].get_by_role("heading", name="Log in to qwen-daemon")).to_be_visible()


def test_an_unknown_session_page_says_it_may_have_been_deleted(pages: Pages, daemon: DaemonThread) -> None:
    pages.allow(r"status of 404")
    page = pages.open("/s/no-such-session")
    expect(page.get_by_role("heading", name="No such session")).to_be_visible()
    text = page.locator("main")
    expect(text).to_contain_text("It may have been deleted")
    expect(text).to_contain_text("kept, across daemon restarts, until you delete them")
    expect(text).not_to_contain_text("memory")
    page.get_by_role("link", name="All sessions").click()
    expect(page.get_by_role("heading", name="New session")).to_be_visible()


# --- review fixes -------------------------------------------------------------------------------


def action_lines(row: Locator) -> int:
    """On how many lines a dashboard row's visible action buttons sit."""
    tops = row.locator(".row-actions").evaluate(
        "box => [...box.children].filter(b => b.offsetParent)"
        ".map(b => Math.round(b.getBoundingClientRect().top))"
    )
    return len(set(tops))


def test_an_archived_session_that_needs_you_stays_in_sight_and_rows_fit_360(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    """Archived while it runs, it then asks: the dashboard must not fold it into the collapsed
    Archived section. And at 360 px an archived row keeps Open / Rename / Unarchive / Delete on one line."""
    asking = new_session(daemon, workspace, title="Asks later")
    resting = new_session(daemon, workspace, title="Resting")
    new_session(daemon, workspace, title="In use")
    reply = daemon.run(
        daemon.api.call("POST", f"/api/sessions/{asking}/prompt", {"text": "permission Write a.md"})
    )
    assert reply.status == 202, reply.body
    daemon.run(daemon.api.wait_state(asking, "awaiting_permission"))
    for sid in (asking, resting):
        assert daemon.run(daemon.api.call("PATCH", f"/api/sessions/{sid}", {"archived": True})).status == 200
    page = pages.open("/", width=360, height=740)
    row = page.locator(f'#sessions [data-session-id="{asking}"]')
    expect(row.locator(".badge")).to_have_text("needs you")
    expect(row.locator(".archived-chip")).to_have_text("archived")
    expect(row.get_by_role("button", name="Unarchive session Asks later")).to_be_visible()
    section = page.locator("#archived-section")
    expect(section.locator("summary")).to_have_text("Archived (1)")
    section.locator("summary").click()
    expect(section.locator(".session-row")).to_have_count(1)
    for each in page.locator(".session-row").all():
        assert action_lines(each) == 1, each.inner_text()
        box, width = each.bounding_box(), page.viewport_size
        assert box is not None and width is not None and box["x"] + box["width"] <= width["width"]
    row.get_by_role("button", name="Delete session Asks later").click()  # asks: "Confirm delete"
    expect(row.get_by_role("button", name="Confirm: delete session Asks later")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # may wrap, never overflow


def test_the_credentials_hint_says_reopen_works_without_a_restart(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    page = pages.open("/")
    hint = "async (m) => (await import('/static/js/util.js')).errorHint(m)"
    daemons_own = page.evaluate(hint, HINT)  # the message already says where credentials go
    assert "no restart is needed" in daemons_own and "Reopen" in daemons_own, daemons_own
    assert "create a new session" not in daemons_own and "security.auth" not in daemons_own
    bare = page.evaluate(hint, "Authentication required")
    assert "~/.qwen/settings.json" in bare and "no restart is needed" in bare, bare

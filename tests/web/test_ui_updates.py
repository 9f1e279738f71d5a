"""A session page follows what changes elsewhere (another tab, the dashboard, the CLI): a rename or
(un)archive arrives as a ``session_updated`` event, and nothing older undoes it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.support.browser import DaemonThread, Pages
from tests.web.test_ui_pages import new_session


def test_a_change_made_elsewhere_reaches_the_open_session_page(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    """PATCH from another tab or the CLI emits session_updated: the title and Archive button follow,
    and the transcript shows nothing for it."""
    sid = new_session(daemon, workspace, title="Before")
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    daemon.run(daemon.api.call("PATCH", f"/api/sessions/{sid}", {"title": "After", "archived": True}))
    expect(page.locator("#session-title")).to_have_text("After")
    expect(page).to_have_title("After · qwen-daemon")
    expect(page.locator("#archive")).to_have_text("Unarchive")
    daemon.run(daemon.api.call("PATCH", f"/api/sessions/{sid}", {"archived": False}))
    expect(page.locator("#archive")).to_have_text("Archive")
    expect(page.locator("#transcript > *")).to_have_count(0)
    fresh = pages.open(f"/s/{sid}", context=page.context)  # replayed, the events leave it as it is now
    expect(fresh.locator("#session-title")).to_have_text("After")
    expect(fresh.locator("#archive")).to_have_text("Archive")


def test_a_detail_answered_before_an_update_does_not_undo_it(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    """The page fetches the session's detail at each connect; when that answer is slow (a loaded
    machine, a phone) and an archive happens meanwhile, the older answer must not put the Archive
    button back. The detail's answer is held here until the update has been shown."""
    sid = new_session(daemon, workspace, title="Before")
    context = pages.context()
    held: list[tuple[Any, Any]] = []
    context.route(f"{daemon.base}/api/sessions/{sid}", lambda route: held.append((route, route.fetch())))
    page = pages.open(f"/s/{sid}", context=context)
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    deadline = time.monotonic() + 15
    while not held:
        assert time.monotonic() < deadline, "the page never asked for the session's detail"
        page.wait_for_timeout(20)
    daemon.run(daemon.api.call("PATCH", f"/api/sessions/{sid}", {"title": "After", "archived": True}))
    expect(page.locator("#session-title")).to_have_text("After")
    expect(page.locator("#archive")).to_have_text("Unarchive")
    with page.expect_response(f"{daemon.base}/api/sessions/{sid}"):
        for route, response in held:
            route.fulfill(response=response)  # archived: false, from before the update
    page.wait_for_timeout(500)  # a negative check: give the old answer time to (wrongly) land
    expect(page.locator("#archive")).to_have_text("Unarchive")

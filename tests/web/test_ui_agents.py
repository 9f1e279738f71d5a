"""Choosing the agent and its mode in the browser: the dashboard's agent (and initial mode) choice,
and the session page's mode selector, kept live by the stream whoever switches the mode.

Two named agents besides the built-in ``qwen`` (here the fake agent too): ``fake``, the scripted
fake agent, advertises the modes ``default`` and ``plan``; ``tiny``, the default agent here,
advertises none.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from qwen_daemon.config import AgentSpec
from tests.support.browser import DaemonThread, Pages
from tests.support.daemon import FAKE_AGENT, fake_settings

pytestmark = pytest.mark.timeout(90)

TINY_AGENT = str(Path(__file__).resolve().parent.parent / "tiny_agent.py")


@pytest.fixture
def daemon(request: pytest.FixtureRequest, tmp_path: Path, isolated_home: Path) -> Iterator[DaemonThread]:
    """Instead of conftest's: the named agents ``fake`` and ``tiny``, ``tiny`` the default; spares
    off unless the test passes ``spare_agents`` as the fixture's parameter."""
    agents = {
        "fake": AgentSpec("fake", (sys.executable, FAKE_AGENT)),
        "tiny": AgentSpec("tiny", (sys.executable, TINY_AGENT)),
    }
    spares = getattr(request, "param", 0)
    settings = fake_settings(tmp_path, agents=agents, default_agent="tiny", spare_agents=spares)
    served = DaemonThread(settings).start()
    try:
        yield served
    finally:
        served.stop()


def session_json(daemon: DaemonThread, sid: str) -> dict[str, Any]:
    reply = daemon.run(daemon.api.call("GET", f"/api/sessions/{sid}"))
    assert reply.status == 200, reply.body
    return dict(reply.body)


def new_session(daemon: DaemonThread, workspace: Path, agent: str) -> str:
    return str(daemon.run(daemon.api.create(workspace, agent=agent))["id"])


def mode_select(page: Page) -> Any:
    return page.get_by_label("Mode", exact=True)


def expect_mode(page: Page, mode: str) -> None:
    """The page shows ``mode`` as the session's: the daemon said so (answer or stream event)."""
    expect(page.locator("#mode-field")).to_have_attribute("data-mode", mode)
    expect(mode_select(page)).to_have_value(mode)


def create_from_dashboard(page: Page, workspace: Path) -> str:
    page.get_by_role("button", name="Create session").click()
    page.wait_for_url(re.compile(r"/s/[\w-]+$"))
    return page.url.rsplit("/", 1)[1]


def test_the_dashboard_creates_a_session_with_the_chosen_agent_and_mode(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    page = pages.open()
    agent = page.get_by_label("Agent", exact=True)
    expect(agent.locator("option")).to_have_text(["fake", "qwen", "tiny (default)"])
    expect(agent).to_have_value("tiny")
    expect(mode_select(page)).to_be_hidden()  # no agent has run yet: no modes are known

    page.get_by_label("Workspace folder").fill(str(workspace))
    agent.select_option("fake")
    sid = create_from_dashboard(page, workspace)
    created = session_json(daemon, sid)
    assert created["agent"] == "fake" and created["mode"] == "default"
    expect(page.locator("#agent-name")).to_have_text("fake")
    expect_mode(page, "default")

    # fake has run now, so the dashboard knows its modes and offers them for the next session
    page.get_by_role("link", name="All sessions").click()
    row = page.locator(f'.session-row[data-session-id="{sid}"]')
    expect(row.locator(".agent-chip")).to_have_text("fake")
    expect(row.locator(".mode-chip")).to_have_text("default")
    page.get_by_label("Workspace folder").fill(str(workspace))
    agent.select_option("fake")
    mode = mode_select(page)
    expect(mode.locator("option")).to_have_text(["agent\u2019s default", "Default", "Plan"])
    mode.select_option("plan")
    agent.select_option("tiny")
    expect(mode).to_be_hidden()  # tiny advertises no modes
    agent.select_option("fake")
    mode.select_option("plan")
    planned = create_from_dashboard(page, workspace)
    assert session_json(daemon, planned)["agent"] == "fake"
    assert session_json(daemon, planned)["mode"] == "plan"
    expect_mode(page, "plan")

    page.get_by_role("link", name="All sessions").click()
    page.get_by_label("Workspace folder").fill(str(workspace))
    expect(agent).to_have_value("tiny")  # the default again on a fresh page
    tiny = create_from_dashboard(page, workspace)
    assert session_json(daemon, tiny)["agent"] == "tiny"
    expect(page.locator("#agent-name")).to_have_text("tiny")


@pytest.mark.parametrize("daemon", [1], indirect=True)
def test_choosing_a_workspace_warms_its_agent_and_create_uses_it(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    manager = daemon.api.daemon.manager
    page = pages.open()
    status = page.locator("#warm-status")
    page.get_by_label("Agent", exact=True).select_option("fake")
    expect(status).to_be_hidden()  # no workspace yet
    page.get_by_label("Workspace folder").fill(str(workspace))
    page.get_by_label("Workspace folder").press("Tab")  # leaving the field settles the choice
    expect(status).to_have_text("fake is ready: a session here starts at once.")
    spare_pids = daemon.call(lambda: [h.pid for h in manager.pool.spares.values()])
    assert len(spare_pids) == 1

    sid = create_from_dashboard(page, workspace)
    assert daemon.call(lambda: manager.get(sid).host.pid) == spare_pids[0], "Create used the warm agent"
    assert session_json(daemon, sid)["agent"] == "fake"

    # a folder that does not exist warms nothing and says nothing: Create explains it
    page.get_by_role("link", name="All sessions").click()
    pages.allow(r"status of 400")
    page.get_by_label("Workspace folder").fill(str(workspace / "missing"))
    with page.expect_response(re.compile(r"/api/agents/tiny/warm$")) as answered:
        page.get_by_label("Agent", exact=True).select_option("tiny")
    assert answered.value.status == 400
    expect(status).to_be_hidden()
    page.get_by_role("button", name="Create session").click()
    expect(page.locator("#create-error")).to_contain_text("missing")


def test_the_session_page_switches_modes_and_follows_switches_made_elsewhere(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace, "fake")
    page = pages.open(f"/s/{sid}")
    other = pages.open(f"/s/{sid}", context=page.context)  # a second tab
    mode = mode_select(page)
    expect(mode.locator("option")).to_have_text(["Default", "Plan"])
    expect_mode(page, "default")
    expect(page.locator("#agent-name")).to_have_text("fake")

    mode.select_option("plan")
    expect_mode(page, "plan")
    assert session_json(daemon, sid)["mode"] == "plan"
    expect_mode(other, "plan")  # the other tab heard it from the stream

    reply = daemon.run(daemon.api.call("POST", f"/api/sessions/{sid}/mode", {"mode_id": "default"}))
    assert reply.status == 200, reply.body
    expect_mode(page, "default")
    expect_mode(other, "default")

    other.locator("#prompt").fill("mode plan")  # the agent itself switches (fake-agent script)
    other.locator("#prompt").press("Enter")
    expect_mode(page, "plan")
    expect(page.locator("#state")).to_have_text("idle")

    # keyboard only: from the prompt box back to the selector, then the arrow keys
    page.locator("#prompt").focus()
    page.keyboard.press("Shift+Tab")
    expect(mode).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect_mode(page, "default")
    assert session_json(daemon, sid)["mode"] == "default"
    expect(mode).to_be_focused()


def test_a_refused_mode_switch_is_explained_and_the_selector_stays_true(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace, "fake")
    page = pages.open(f"/s/{sid}")
    expect_mode(page, "default")

    def ask_for_yolo(route: Route) -> None:  # as if the page offered a mode the agent does not have
        route.continue_(post_data=json.dumps({"mode_id": "yolo"}))

    page.route("**/api/sessions/*/mode", ask_for_yolo)
    pages.allow(r"status of 400")
    mode_select(page).select_option("plan")
    note = page.locator("#composer-note")
    expect(note).to_have_text(
        "Mode not changed to Plan: mode 'yolo' is not offered; choose one of: default, plan"
    )
    expect(note).to_have_class(re.compile(r"\bnote-error\b"))
    expect_mode(page, "default")
    assert session_json(daemon, sid)["mode"] == "default"

    page.unroute("**/api/sessions/*/mode")
    mode_select(page).select_option("plan")
    expect_mode(page, "plan")
    expect(note).to_be_hidden()


def test_an_agent_without_modes_gets_no_selector(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace, "tiny")
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#agent-name")).to_have_text("tiny")
    page.locator("#prompt").fill("hello")
    page.locator("#prompt").press("Enter")
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator("#state")).to_have_text("idle")
    # the page has long asked the daemon for the session's modes by now: tiny has none
    expect(page.locator("#mode-field")).to_be_hidden()
    assert session_json(daemon, sid)["modes"] is None


def test_agent_and_mode_fit_a_360_px_screen_in_the_light_theme(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace, "fake")
    context = pages.context(width=360, height=740, color_scheme="light")
    page = pages.open("/", context=context)
    expect(page.get_by_label("Agent", exact=True)).to_be_visible()
    expect(page.locator(".session-row .agent-chip")).to_have_text("fake")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    page.goto(f"{daemon.base}/s/{sid}")
    expect_mode(page, "default")
    mode = mode_select(page)
    expect(mode).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    box = mode.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    # themed like the text boxes: the light page background, not the browser's default
    colors = page.evaluate(
        """() => [getComputedStyle(document.getElementById("mode")).backgroundColor,
                  getComputedStyle(document.getElementById("prompt")).backgroundColor]"""
    )
    assert colors == ["rgb(246, 247, 249)", "rgb(246, 247, 249)"]
    mode.select_option("plan")
    expect_mode(page, "plan")

"""The pages a phone user sees, at 360 by 740 px in Chromium: the dashboard's top bar on one line (its
buttons icons with their names), nothing wider than the screen, tap targets of 40 px and more, a
pairing QR code big enough to scan with its quiet zone (on the dark theme too), the current device
marked on the Devices page, and coloured buttons whose text can be read in both themes."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.support.browser import DaemonThread, Pages

pytestmark = pytest.mark.timeout(120)

PHONE: dict[str, Any] = {"width": 360, "height": 740}

#: What a finger taps: buttons, button-like links, the back arrow, selects, chips, switch labels.
TAPPABLE = ".btn, .back, select, .chip-btn, .notify-label"

#: Each visible tap target smaller than 40 by 40 px, as "name WxH".
SMALL_TARGETS = """(selector) => [...document.querySelectorAll(selector)]
  .map((e) => [e, e.getBoundingClientRect()])
  .filter(([e, r]) => r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== "hidden")
  .filter(([e, r]) => r.width < 40 || r.height < 40)
  .map(([e, r]) => [(e.getAttribute("aria-label") || e.textContent).trim(), r])
  .map(([name, r]) => `${name} ${Math.round(r.width)}x${Math.round(r.height)}`)"""

#: WCAG contrast ratio of an element's text colour on its own background colour.
CONTRAST = """(e) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const linear = (v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    const [r, g, b] = rgb(c).map((v) => linear(v / 255));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const style = getComputedStyle(e);
  const [a, b] = [lum(style.color), lum(style.backgroundColor)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


def new_session(daemon: DaemonThread, workspace: Path, title: str) -> str:
    return str(daemon.run(daemon.api.create(workspace, title=title))["id"])


def ask_permission(daemon: DaemonThread, sid: str) -> None:
    body = {"text": "permission Write notes.txt"}
    reply = daemon.run(daemon.api.call("POST", f"/api/sessions/{sid}/prompt", body))
    assert reply.status == 202, reply.body
    daemon.run(daemon.api.wait_state(sid, "awaiting_permission"))


def fits(page: Page) -> None:
    """Nothing on the page is wider than the phone's screen."""
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def tap_sized(page: Page) -> None:
    assert page.evaluate(SMALL_TARGETS, TAPPABLE) == []


def box(locator: Locator) -> dict[str, float]:
    found = locator.bounding_box()
    assert found is not None
    return {"x": found["x"], "y": found["y"], "width": found["width"], "height": found["height"]}


def test_the_dashboard_top_bar_is_one_line_of_named_buttons_on_a_phone(
    pages: Pages, daemon: DaemonThread
) -> None:
    context = pages.context(**PHONE)
    context.grant_permissions(["notifications"], origin=daemon.base)
    page = pages.open("/", context=context)
    bar = page.locator(".topbar")
    items = [
        page.locator(".topbar .brand"),
        page.get_by_role("button", name="Add a device"),
        page.get_by_role("link", name="Devices"),
        page.get_by_role("button", name="Notifications for this device: off"),
    ]
    for item in items:
        expect(item).to_be_visible()
    expect(page.locator(".topbar .version")).to_be_hidden()  # no room for it on a phone
    assert box(bar)["height"] <= 60  # one line (two would be ~100 px)
    middle = box(bar)["y"] + box(bar)["height"] / 2
    for item in items:
        found = box(item)
        assert abs(found["y"] + found["height"] / 2 - middle) < 4, found
        assert found["x"] >= 0 and found["x"] + found["width"] <= PHONE["width"], found
    for item in items[1:]:
        assert box(item)["width"] >= 40 and box(item)["height"] >= 40, box(item)
    fits(page)
    tap_sized(page)

    page.get_by_role("button", name="Add a device").click()  # still works as the words said
    expect(page.locator("#pair-panel svg.qr")).to_be_visible()
    page.get_by_role("link", name="Devices").click()
    expect(page.get_by_role("heading", name="Devices")).to_be_visible()


def test_on_a_wide_screen_the_top_bar_shows_its_words_and_the_version(pages: Pages) -> None:
    page = pages.open("/", width=1280, height=800)
    expect(page.locator(".topbar .version")).to_be_visible()
    for label in page.locator(".topbar .btn-label").all():
        assert box(label)["width"] > 30, label.inner_text()  # not the icons alone


def test_every_page_fits_a_phone_with_tap_sized_targets(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    asking = new_session(daemon, workspace, "Write the release notes")
    new_session(daemon, workspace, "Refactor the parser")
    ask_permission(daemon, asking)
    context = pages.context(**PHONE)
    context.grant_permissions(["notifications"], origin=daemon.base)
    page = pages.open("/", context=context)
    expect(page.locator(".session-row")).to_have_count(2)
    page.locator("#cwd").fill(str(workspace))  # the Recent chips show
    fits(page)
    tap_sized(page)

    page.get_by_role("button", name="Add a device").click()
    expect(page.locator("#pair-panel svg.qr")).to_be_visible()
    page.locator("#notify").click()
    expect(page.get_by_role("switch", name="Notify me on this device")).to_be_enabled()
    fits(page)
    tap_sized(page)

    page.goto(f"{daemon.base}/s/{asking}")
    expect(page.locator(".permission.open .options .btn").first).to_be_visible()
    page.locator("#notify").click()
    expect(page.locator("#notify-panel")).to_be_visible()
    fits(page)
    tap_sized(page)

    page.goto(f"{daemon.base}/devices")
    expect(page.locator(".device-row")).to_have_count(1)
    fits(page)
    tap_sized(page)


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_the_pairing_qr_code_is_big_enough_to_scan_with_its_quiet_zone(pages: Pages, scheme: str) -> None:
    page = pages.open("/", **PHONE, color_scheme=scheme)
    page.get_by_role("button", name="Add a device").click()
    qr = page.locator("#pair-panel .pair-qr")
    svg = qr.locator("svg.qr")
    expect(svg).to_be_visible()
    drawn = box(svg)
    assert drawn["width"] >= 200 and drawn["height"] >= 200, drawn
    expect(qr).to_be_in_viewport(ratio=1)
    # segno draws with scale 4 and a border of 2 modules: the viewBox gives the module count
    modules = svg.evaluate("s => s.viewBox.baseVal.width / 4")
    module = drawn["width"] / modules
    padding = qr.evaluate("e => parseFloat(getComputedStyle(e).paddingLeft)")
    assert padding + 2 * module >= 4 * module, (padding, module)  # a light margin of 4 modules
    assert qr.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 255, 255)"
    expect(page.locator(".pair-countdown")).to_have_text(re.compile(r"Expires in [12]:\d\d"))
    fits(page)


def test_the_devices_page_marks_this_browser(pages: Pages, daemon: DaemonThread) -> None:
    daemon.call(lambda: daemon.api.daemon.devices.create("Chrome on Android"))
    page = pages.open("/devices", **PHONE, color_scheme="dark")
    mine = page.locator('.device-row[data-current="true"]')
    other = page.locator('.device-row[data-current="false"]')
    expect(other).to_have_count(1)
    expect(mine.locator(".current-chip")).to_have_text("this browser")
    border = "e => getComputedStyle(e).borderTopColor"
    assert mine.evaluate(border) != other.evaluate(border)  # set apart, not only by a word
    fits(page)
    tap_sized(page)


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_coloured_buttons_keep_their_text_readable(
    pages: Pages, daemon: DaemonThread, workspace: Path, scheme: str
) -> None:
    """Allow on a permission prompt, Confirm log out, Confirm delete: 4.5:1 or more in both themes."""
    sid = new_session(daemon, workspace, "Asks")
    ask_permission(daemon, sid)
    daemon.call(lambda: daemon.api.daemon.devices.create("Chrome on Android"))
    context = pages.context(**PHONE, color_scheme=scheme)
    page = pages.open(f"/s/{sid}", context=context)
    allow = page.locator(".permission.open .opt-allow_once")
    expect(allow).to_be_visible()
    assert allow.evaluate(CONTRAST) >= 4.5

    page.goto(f"{daemon.base}/devices")
    other = page.locator('.device-row[data-current="false"]')
    other.get_by_role("button", name="Log out Chrome on Android").click()
    confirm = other.get_by_role("button", name="Confirm: log out chrome on android")
    expect(confirm).to_be_visible()
    assert confirm.evaluate(CONTRAST) >= 4.5

    page.goto(daemon.base + "/")
    row = page.locator(f'[data-session-id="{sid}"]')
    row.get_by_role("button", name="Delete session Asks").click()
    confirm = row.get_by_role("button", name="Confirm: delete session Asks")
    expect(confirm).to_be_visible()
    assert confirm.evaluate(CONTRAST) >= 4.5


def test_panels_open_in_sight_from_a_scrolled_page(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    """The bell on a session page scrolled to its latest message, "Add a device" on a dashboard
    scrolled to its last session: what they open is on the screen, not above it or under the bar."""
    sid = new_session(daemon, workspace, "Long")
    long = "md " + json.dumps("\n\n".join(f"Paragraph {n}." for n in range(1, 41)))
    reply = daemon.run(daemon.api.call("POST", f"/api/sessions/{sid}/prompt", {"text": long}))
    assert reply.status == 202, reply.body
    for n in range(4):
        new_session(daemon, workspace, f"Other {n}")
    context = pages.context(**PHONE)
    context.grant_permissions(["notifications"], origin=daemon.base)
    page = pages.open(f"/s/{sid}", context=context)
    expect(page.locator(".msg.agent").last).to_contain_text("Paragraph 40.")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    assert page.evaluate("window.scrollY") > 0
    page.locator("#notify").click()
    switch = page.get_by_role("switch", name="Notify me on this device")
    expect(switch).to_be_in_viewport(ratio=1)
    middle = box(switch)
    on_top = page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y)?.closest('.notify-label') !== null",
        [middle["x"] + middle["width"] / 2, middle["y"] + middle["height"] / 2],
    )
    assert on_top  # not covered by the sticky top bar

    page.goto(daemon.base + "/")
    expect(page.locator(".session-row")).to_have_count(5)
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    assert page.evaluate("window.scrollY") > 0
    page.get_by_role("button", name="Add a device").click()
    expect(page.locator("#pair-panel svg.qr")).to_be_in_viewport(ratio=1)


def test_the_devices_page_lists_this_browser_first(pages: Pages, daemon: DaemonThread) -> None:
    for name in ("Chrome on Android", "Firefox on Linux"):
        daemon.call(functools.partial(daemon.api.daemon.devices.create, name))
    page = pages.open("/devices", **PHONE)  # this browser's device is the last made
    rows = page.locator(".device-row")
    expect(rows).to_have_count(3)
    expect(rows.first).to_have_attribute("data-current", "true")


def test_a_device_is_renamed_with_a_save_button_a_phone_can_tap(pages: Pages, daemon: DaemonThread) -> None:
    """A phone's keyboard may show no Enter key: while the name box is open, Rename says Save."""
    daemon.call(lambda: daemon.api.daemon.devices.create("Chrome on Android"))
    page = pages.open("/devices", **PHONE)
    other = page.locator('.device-row[data-current="false"]')
    other.get_by_role("button", name="Rename Chrome on Android").click()
    page.get_by_label("New name for Chrome on Android").fill("Kitchen phone")
    other.get_by_role("button", name="Save the name of Chrome on Android").click()
    expect(other.locator(".device-name")).to_have_text("Kitchen phone")
    expect(other.get_by_role("button", name="Rename Kitchen phone")).to_be_visible()
    names = [d["name"] for d in daemon.run(daemon.api.call("GET", "/api/devices")).body["devices"]]
    assert "Kitchen phone" in names


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_the_notify_switch_shows_keyboard_focus(pages: Pages, daemon: DaemonThread, scheme: str) -> None:
    context = pages.context(**PHONE, color_scheme=scheme)
    context.grant_permissions(["notifications"], origin=daemon.base)
    page = pages.open("/", context=context)
    page.locator("#notify").click()
    switch = page.get_by_role("switch", name="Notify me on this device")
    expect(switch).to_be_enabled()
    page.locator("#notify").focus()
    page.keyboard.press("Tab")
    expect(switch).to_be_focused()
    ring = switch.evaluate(
        "e => [getComputedStyle(e).outlineStyle, parseFloat(getComputedStyle(e).outlineWidth)]"
    )
    assert ring[0] == "solid" and ring[1] >= 2, ring

"""Devices and pairing in Chromium: "Add a device" shows a QR code and its URL; opening the URL in a
fresh browser and pressing its page's button logs it in as a device with the code gone from the
address bar; the Devices page
renames and logs out; and a phone reaches the daemon through a reverse proxy under a public name.

Chromium resolves ``phone.test`` to 127.0.0.1 (``--host-resolver-rules``): the proxy the test runs
there forwards with that public Host, as ``tailscale serve`` or ``cloudflared`` would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.testing
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import DaemonThread, Pages, launched_browser
from tests.support.daemon import fake_settings
from tests.support.proxy import ReverseProxy

pytestmark = pytest.mark.timeout(120)

PUBLIC_NAME = "phone.test"
PHONE: dict[str, Any] = {
    "width": 393,
    "height": 851,
    "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "is_mobile": True,
    "has_touch": True,
}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """This module's Chromium also resolves the public name to loopback (the proxy is there)."""
    rules = f"--host-resolver-rules=MAP {PUBLIC_NAME} 127.0.0.1"
    with launched_browser(tmp_path_factory.mktemp("browser-home"), [rules]) as (_playwright, launched):
        yield launched


def devices(daemon: DaemonThread) -> list[dict[str, Any]]:
    return list(daemon.run(daemon.api.call("GET", "/api/devices")).body["devices"])


def show_code(page: Page) -> str:
    """Press "Add a device" and return the pairing URL the panel shows (with its QR code)."""
    page.get_by_role("button", name="Add a device").click()
    panel = page.locator("#pair-panel")
    expect(panel.locator("svg.qr path").first).to_be_attached()
    expect(panel.locator(".pair-countdown")).to_have_text(re.compile(r"Expires in [12]:\d\d"))
    box = panel.locator("svg.qr").bounding_box()
    assert box is not None and box["width"] > 100  # drawn at a scannable size, not collapsed
    return str(panel.locator(".pair-url").inner_text())


def pair_here(page: Page, url: str, base: str) -> None:
    """Open a pairing URL and press "Log in this browser", as a person does: the page alone spends
    nothing (a link preview fetches it too); the button's POST logs in and lands on ``base``/."""
    response = page.goto(url)
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", name="Log this browser in?")).to_be_visible()
    page.wait_for_url(base + "/pair")  # the code left the address bar (it waits in the form)
    page.get_by_role("button", name="Log in this browser").click()
    page.wait_for_url(base + "/")


def test_a_pairing_url_logs_a_fresh_browser_in_as_a_device(pages: Pages, daemon: DaemonThread) -> None:
    page = pages.open()
    url = show_code(page)
    assert url.startswith(f"{daemon.base}/pair?code=")
    # 127.0.0.1 is this computer only: the panel says how a phone gets an address it can open
    expect(page.locator(".pair-local")).to_contain_text("works only on this computer")
    expect(page.locator(".pair-local")).to_contain_text("public_url")
    page.get_by_role("button", name="New code").click()
    expect(page.locator(".pair-url")).not_to_have_text(url)
    old, url = url, page.locator(".pair-url").inner_text()

    phone_context = pages.context(**PHONE)
    phone = pages.watch(phone_context.new_page())
    pair_here(phone, url, daemon.base)
    assert phone.url == daemon.base + "/"  # the code left the address bar (and the history)
    assert "code" not in phone.evaluate("location.href + document.referrer + history.length")
    expect(phone.get_by_role("heading", name="New session")).to_be_visible()
    (cookie,) = phone_context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert [d["name"] for d in devices(daemon)] == ["Chrome on Linux", "Chrome on Android"]

    phone.goto(daemon.base + "/devices")
    mine = phone.locator('.device-row[data-current="true"]')
    expect(mine).to_contain_text("Chrome on Android")
    expect(mine).to_contain_text("this browser")

    pages.allow(r"status of 410")
    stranger = pages.watch(pages.context().new_page())
    reused = stranger.goto(url)
    assert reused is not None and reused.status == 410
    expect(stranger.get_by_role("heading", name="This pairing code was already used")).to_be_visible()
    pair_here(stranger, old, daemon.base)  # "New code" does not void the one it replaced (a sixth would)
    assert stranger.url == daemon.base + "/"
    assert len(devices(daemon)) == 3


def test_the_devices_page_renames_and_logs_out(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = str(daemon.run(daemon.api.create(workspace, title="Watched"))["id"])
    laptop = pages.open("/devices")
    code = daemon.run(daemon.api.call("POST", "/api/pairing", {})).body
    phone_context = pages.context(**PHONE)
    phone = pages.watch(phone_context.new_page())
    pair_here(phone, code["url"], daemon.base)
    phone.goto(f"{daemon.base}/s/{sid}")
    expect(phone.locator("#conn")).to_have_attribute("data-status", "connected")

    rows = laptop.locator(".device-row")
    expect(rows).to_have_count(2)
    other = laptop.locator('.device-row[data-current="false"]')
    other.get_by_role("button", name="Rename Chrome on Android").click()
    box = laptop.get_by_label("New name for Chrome on Android")
    box.fill("Kitchen phone")
    box.press("Enter")
    expect(other.locator(".device-name")).to_have_text("Kitchen phone")
    assert "Kitchen phone" in [d["name"] for d in devices(daemon)]

    pages.allow(r"status of 401|WebSocket connection to .* failed")
    other.get_by_role("button", name="Log out Kitchen phone").click()
    other.get_by_role("button", name="Confirm: log out kitchen phone").click()
    expect(rows).to_have_count(1)
    banner = phone.locator("#banner")  # its WebSocket was closed with 4001: it says why
    expect(banner).to_contain_text("This browser is no longer logged in to the daemon")
    assert len(devices(daemon)) == 1
    assert phone.goto(daemon.base + "/").status == 401  # type: ignore[union-attr]

    mine = laptop.locator('.device-row[data-current="true"]')
    mine.get_by_role("button", name="Log out this browser").click()
    mine.get_by_role("button", name="Confirm: log out this browser").click()
    expect(laptop.locator("#devices-banner")).to_contain_text("This browser is logged out")
    expect(laptop.locator("#devices-banner")).to_contain_text("qwen-daemon url")
    assert devices(daemon) == []


def test_a_phone_logs_in_through_a_reverse_proxy_under_the_public_name(
    browser: Browser, tmp_path: Path, isolated_home: Path, workspace: Path
) -> None:
    sock, proxy_port = tornado.testing.bind_unused_port()
    public = f"http://{PUBLIC_NAME}:{proxy_port}"
    daemon = DaemonThread(fake_settings(tmp_path, public_url=public)).start()
    proxy = ReverseProxy(sock, daemon.api.daemon.port)
    pages = Pages(browser, daemon)
    try:
        daemon.run(proxy.start())
        daemon.run(daemon.api.create(workspace, title="From the phone"))
        laptop = pages.open()  # on 127.0.0.1, by the token URL
        url = show_code(laptop)
        assert url.startswith(f"{public}/pair?code=")  # the QR code holds the public address
        expect(laptop.locator(".pair-local")).to_have_count(0)  # a phone can open it: no warning

        phone = pages.watch(pages.context(**PHONE).new_page())
        pair_here(phone, url, public)  # a form POST over plain http: Origin null, no Sec-Fetch-Site
        assert phone.url == f"{public}/"
        expect(phone.get_by_role("link", name="From the phone")).to_be_visible()
        phone.get_by_role("link", name="From the phone").click()
        expect(phone.locator("#conn")).to_have_attribute("data-status", "connected")  # WebSocket too
        phone.locator("#prompt").fill("say hello through the tunnel")
        phone.locator("#prompt").press("Enter")
        expect(phone.locator(".msg.agent").last).to_have_text("hello through the tunnel")
        names = [d["name"] for d in devices(daemon)]
        assert "Chrome on Android" in names

        pages.allow(r"status of 401|WebSocket connection to .* failed")
        phone_id = next(d["id"] for d in devices(daemon) if d["name"] == "Chrome on Android")
        assert daemon.run(daemon.api.call("DELETE", f"/api/devices/{phone_id}")).status == 204
        # its WebSocket closes (4001) and the cookie is refused (401), both through the proxy
        expect(phone.locator("#banner")).to_contain_text("no longer logged in")
        pages.check()
    finally:
        pages.close()
        daemon.run(proxy.stop())
        daemon.stop()

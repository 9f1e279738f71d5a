"""The installable app and Web Push in Chromium: the service worker registers and controls every
page, the manifest is installable (Chromium reports no installability errors), a push delivered
through the DevTools protocol shows its notification, "Allow once" on it answers a real pending
permission request of the fake agent (and an answered or expired one says so), a click opens the
session, the session page tells the daemon when it is visible. "Notify me on this
device" is in ``test_ui_notify.py``.

Two things a test cannot do with a real browser here, and what it does instead:
- Click a notification: nothing in the DevTools protocol does. The test dispatches the
  ``notificationclick`` event the browser would, in the service worker, built from the real
  notification (``getNotifications()``). Chromium lets a worker open or focus a window only during
  a *real* click, so for those the test records the worker's ``clients.openWindow`` /
  ``WindowClient.focus`` calls instead of letting them fail.
- Subscribe at a push service: Chromium's is Google's (FCM), unreachable offline, so a real
  ``pushManager.subscribe`` fails here (tested: the page says so). The on/off/test flow replaces
  ``PushManager.prototype.subscribe`` with one returning a subscription whose endpoint is a push
  service the test runs on loopback, with real P-256 keys so the daemon can encrypt to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    BrowserContext,
    Page,
    WebSocket,
    expect,
)

from tests.support.browser import (
    DaemonThread,
    Pages,
    wait_for_js,
)
from tests.support.daemon import frames_in
from tests.support.push_browser import (
    CLICK,
    FAKE_VISIBILITY,
    NOTIFICATIONS,
    RECORD_WINDOWS,
    Push,
    controlled,
    new_session,
    notifications,
    pending_request,
    permission_payload,
    prompt_via_api,
    service_worker,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def push_page(pages: Pages, daemon: DaemonThread) -> Iterator[Page]:
    """The dashboard, controlled by the service worker, with notifications allowed."""
    context = pages.context()
    context.grant_permissions(["notifications"], origin=daemon.base)
    page = pages.open("/", context=context)
    controlled(page)
    yield page


# --- the worker and the manifest ---------------------------------------------------------------


def test_the_service_worker_registers_with_scope_root_and_controls_every_page(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open("/")
    controlled(page)
    registration = page.evaluate(
        "navigator.serviceWorker.ready.then((r) => ({scope: r.scope, script: r.active.scriptURL}))"
    )
    assert registration == {"scope": daemon.base + "/", "script": daemon.base + "/sw.js"}
    page.goto(f"{daemon.base}/s/{sid}")
    controlled(page)
    assert page.evaluate("navigator.serviceWorker.controller.scriptURL") == daemon.base + "/sw.js"
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")  # nothing it broke


def test_the_manifest_is_installable_and_its_icons_load(
    pages: Pages, profile: BrowserContext, daemon: DaemonThread
) -> None:
    page = pages.open("/", context=profile)
    controlled(page)
    cdp = page.context.new_cdp_session(page)
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["url"] == daemon.base + "/manifest.webmanifest"
    assert manifest["errors"] == []
    assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
    data = json.loads(manifest["data"])
    assert data["name"] == "qwen-daemon"
    assert (data["start_url"], data["scope"], data["display"]) == ("/", "/", "standalone")
    assert data["theme_color"] and data["background_color"]
    purposes = {(icon["sizes"], icon["purpose"]) for icon in data["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= purposes
    # every icon is there, public (a launcher fetches them without cookies) and the size it says
    for icon in data["icons"]:
        raw = daemon.run(raw_get(daemon, icon["src"]))  # no cookie, no token
        if icon["type"] == "image/png":
            assert raw[:8] == b"\x89PNG\r\n\x1a\n", icon["src"]
            width = int.from_bytes(raw[16:20], "big")
            height = int.from_bytes(raw[20:24], "big")
            assert f"{width}x{height}" == icon["sizes"], icon["src"]
    # the page links what iOS and the browser chrome use too
    assert (
        page.locator('link[rel="apple-touch-icon"]').get_attribute("href")
        == "/static/icons/apple-touch-icon.png"
    )
    assert page.locator('meta[name="theme-color"]').count() >= 1


async def raw_get(daemon: DaemonThread, path: str) -> bytes:
    response = await daemon.api.http.fetch(daemon.base + path, raise_error=False)
    assert response.code == 200, path
    return bytes(response.body)


# --- pushes and their notifications -------------------------------------------------------------


def test_a_push_shows_its_notification(push_page: Page, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    push = Push(push_page)
    push.deliver(
        {
            "title": "The agent finished",
            "body": "Push test",
            "url": f"/s/{sid}",
            "tag": f"turn-{sid}",
            "kind": "turn_ended",
            "session_id": sid,
            "request_id": None,
            "actions": [],
        }
    )
    [shown] = notifications(push_page)
    assert (shown["title"], shown["body"], shown["tag"]) == ("The agent finished", "Push test", f"turn-{sid}")
    assert shown["actions"] == [] and shown["requireInteraction"] is False
    assert shown["data"]["url"] == f"/s/{sid}"
    assert shown["icon"].endswith("/static/icons/icon-192.png")
    assert shown["badge"].endswith("/static/icons/badge-96.png")


def test_a_permission_push_offers_allow_once_and_deny_never_always(
    push_page: Page, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    payload = permission_payload(sid, "r1")
    payload["actions"] = [
        {"action": "proceed_always", "title": "Allow always"},
        *payload["actions"],
    ]
    Push(push_page).deliver(payload)
    [shown] = notifications(push_page)
    assert shown["actions"] == [
        {"action": "proceed_once", "title": "Allow once"},
        {"action": "cancel", "title": "Deny"},
    ]
    assert shown["requireInteraction"] is True


def test_allow_once_on_the_notification_answers_the_real_pending_request(
    push_page: Page, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    prompt_via_api(daemon, sid, "permission Write notes.txt\nsay after the answer")
    request = pending_request(daemon, sid)
    request_id = request["request_id"]
    Push(push_page).deliver(permission_payload(sid, request_id))
    notifications(push_page)
    worker = service_worker(push_page.context)
    worker.evaluate(RECORD_WINDOWS)
    worker.evaluate(CLICK, {"tag": f"permission-{request_id}", "action": "proceed_once"})
    resolved = daemon.run(
        daemon.api.wait_event(
            sid, lambda e: e["type"] == "permission_resolved" and e["request_id"] == request_id
        )
    )
    assert resolved["option_id"] == "proceed_once"
    daemon.run(daemon.api.wait_event(sid, lambda e: e["type"] == "turn_ended"))
    texts = "".join(
        e.get("text", "") for e in daemon.run(daemon.api.events(sid)) if e["type"] == "agent_message_chunk"
    )
    assert "allowed proceed_once" in texts and "after the answer" in texts  # the agent went on
    # answered: the notification is gone, nothing else was shown or opened
    assert push_page.evaluate(f"({NOTIFICATIONS}).then((l) => l.length)") == 0
    assert worker.evaluate("self.windowCalls") == []


def test_deny_on_the_notification_rejects_the_request(
    push_page: Page, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    prompt_via_api(daemon, sid, "permission Write notes.txt\nsay never said")
    request_id = pending_request(daemon, sid)["request_id"]
    Push(push_page).deliver(permission_payload(sid, request_id))
    notifications(push_page)
    worker = service_worker(push_page.context)
    worker.evaluate(RECORD_WINDOWS)
    worker.evaluate(CLICK, {"tag": f"permission-{request_id}", "action": "cancel"})
    resolved = daemon.run(
        daemon.api.wait_event(
            sid, lambda e: e["type"] == "permission_resolved" and e["request_id"] == request_id
        )
    )
    assert resolved["option_id"] == "cancel"


def test_an_already_answered_request_says_so_and_opens_the_session(
    push_page: Page, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    prompt_via_api(daemon, sid, "permission Write notes.txt")
    request_id = pending_request(daemon, sid)["request_id"]
    Push(push_page).deliver(permission_payload(sid, request_id))
    notifications(push_page)
    answered = daemon.run(
        daemon.api.call("POST", f"/api/sessions/{sid}/permissions/{request_id}", {"option_id": "cancel"})
    )
    assert answered.status == 200, answered.body  # answered elsewhere (another device, the CLI)
    worker = service_worker(push_page.context)
    worker.evaluate(RECORD_WINDOWS)
    worker.evaluate(CLICK, {"tag": f"permission-{request_id}", "action": "proceed_once"})
    [shown] = notifications(push_page)
    assert shown["title"] == "That request was already answered or has expired"
    assert shown["actions"] == [] and shown["data"]["url"] == f"/s/{sid}"
    assert worker.evaluate("self.windowCalls") == [["open", f"{daemon.base}/s/{sid}"]]
    events = daemon.run(daemon.api.events(sid))
    assert [e["option_id"] for e in events if e["type"] == "permission_resolved"] == ["cancel"]


def test_a_request_that_never_existed_says_so_too(
    push_page: Page, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    Push(push_page).deliver(permission_payload(sid, "gone-long-ago"))
    notifications(push_page)
    worker = service_worker(push_page.context)
    worker.evaluate(RECORD_WINDOWS)
    worker.evaluate(CLICK, {"tag": "permission-gone-long-ago", "action": "proceed_once"})
    [shown] = notifications(push_page)
    assert shown["title"] == "That request was already answered or has expired"


def test_a_logged_out_device_is_told_instead_of_answering(
    push_page: Page, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    prompt_via_api(daemon, sid, "permission Write notes.txt")
    request_id = pending_request(daemon, sid)["request_id"]
    Push(push_page).deliver(permission_payload(sid, request_id))
    notifications(push_page)
    push_page.context.clear_cookies()
    worker = service_worker(push_page.context)
    worker.evaluate(RECORD_WINDOWS)
    worker.evaluate(CLICK, {"tag": f"permission-{request_id}", "action": "proceed_once"})
    [shown] = notifications(push_page)
    assert shown["title"] == "Not answered: this device is no longer logged in"
    assert worker.evaluate("self.windowCalls") == [["open", f"{daemon.base}/s/{sid}"]]
    assert daemon.run(daemon.api.call("GET", f"/api/sessions/{sid}")).body["state"] == "awaiting_permission"


def test_a_click_on_the_notification_focuses_the_open_session_or_opens_it(
    pages: Pages, push_page: Page, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    other = new_session(daemon, workspace, title="Other")
    pages.open(f"/s/{sid}", context=push_page.context)  # a window already showing the session
    push = Push(push_page)
    worker = service_worker(push_page.context)
    worker.evaluate(RECORD_WINDOWS)
    for target in (sid, other):
        push.deliver(
            {
                "title": "Done",
                "body": "",
                "url": f"/s/{target}",
                "tag": f"t-{target}",
                "kind": "turn_ended",
                "session_id": target,
                "request_id": None,
                "actions": [],
            }
        )
        notifications(push_page)
        worker.evaluate(CLICK, {"tag": f"t-{target}", "action": ""})
    assert worker.evaluate("self.windowCalls") == [
        ["focus", f"{daemon.base}/s/{sid}"],
        ["open", f"{daemon.base}/s/{other}"],
    ]
    assert push_page.evaluate(f"({NOTIFICATIONS}).then((l) => l.length)") == 0  # clicked: closed


def test_a_push_for_another_site_url_opens_the_dashboard(push_page: Page, daemon: DaemonThread) -> None:
    Push(push_page).deliver(
        {"title": "Odd", "body": "", "url": "https://evil.example/x", "tag": "odd", "kind": "test"}
    )
    notifications(push_page)
    worker = service_worker(push_page.context)
    worker.evaluate(RECORD_WINDOWS)
    worker.evaluate(CLICK, {"tag": "odd", "action": ""})
    assert worker.evaluate("self.windowCalls") == [["focus", f"{daemon.base}/"]]  # the open dashboard


def test_with_push_off_a_hidden_session_page_notifies_through_the_worker(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    """The tab's own notification (push off) goes through the service worker — Android Chrome
    refuses ``new Notification()`` — and is closed once the page is looked at again."""
    sid = new_session(daemon, workspace, title="Background job")
    context = pages.context()
    context.grant_permissions(["notifications"], origin=daemon.base)
    context.add_init_script(FAKE_VISIBILITY)
    page = pages.open(f"/s/{sid}", context=context)
    controlled(page)
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    page.evaluate("setVisibility('hidden')")
    prompt_via_api(daemon, sid, "permission Write report.md")
    [shown] = notifications(page)
    assert (shown["title"], shown["body"]) == ("The agent needs your answer", "Write report.md")
    assert shown["tag"] == f"qwen-daemon-{sid}" and shown["data"]["url"] == f"/s/{sid}"
    page.evaluate("setVisibility('visible')")
    wait_for_js(page, f"({NOTIFICATIONS}).then((l) => l.length === 0)")


# --- visibility -----------------------------------------------------------------------------------


def test_the_session_page_tells_the_daemon_when_it_is_visible(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    context = pages.context()
    context.add_init_script(FAKE_VISIBILITY)
    page = pages.open("/", context=context)
    sent: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []

    def on_websocket(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: received.extend(frames_in(payload)))

    page.on("websocket", on_websocket)
    page.goto(f"{daemon.base}/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")

    def visibility() -> list[bool]:
        return [frame["visible"] for frame in sent if frame.get("type") == "visibility"]

    for _ in range(200):
        if visibility():
            break
        page.wait_for_timeout(25)
    assert visibility() == [True]  # as the socket opened
    page.evaluate("setVisibility('hidden')")
    page.evaluate("setVisibility('visible')")
    for _ in range(200):
        if len(visibility()) == 3:
            break
        page.wait_for_timeout(25)
    assert visibility() == [True, False, True]
    assert all(str(frame["id"]).startswith("vis-") for frame in sent if frame.get("type") == "visibility")
    # each reconnect says it again: the daemon's record belongs to the connection
    daemon.drop_websockets()
    for _ in range(400):
        if len(visibility()) == 4:
            break
        page.wait_for_timeout(25)
    assert visibility() == [True, False, True, True]
    # whatever the daemon answers (an error frame before it knows the frame type), nothing shows
    page.wait_for_timeout(200)
    replies = [f for f in received if str(f.get("id", "")).startswith("vis-")]
    assert replies, "the daemon answers visibility frames"
    expect(page.locator("#composer-note")).to_be_hidden()
    expect(page.locator("#banner")).to_be_hidden()

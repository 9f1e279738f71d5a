"""The installable app and Web Push in Chromium: the service worker registers and controls every
page, the manifest is installable (Chromium reports no installability errors), a push delivered
through the DevTools protocol shows its notification, "Allow once" on it answers a real pending
permission request of the fake agent (and an answered or expired one says so), a click opens the
session, the session page tells the daemon when it is visible, and "Notify me on this device"
shows its state and turns push on and off.

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

import base64
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import (
    Browser,
    BrowserContext,
    CDPSession,
    Page,
    Playwright,
    Route,
    WebSocket,
    Worker,
    expect,
)

from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    UI_TIMEOUT_MS,
    DaemonThread,
    Pages,
    launched_browser,
    wait_for_js,
)
from tests.support.daemon import fake_settings

pytestmark = pytest.mark.timeout(90)

#: The notifications the service worker shows, as plain objects (the page asks the registration).
NOTIFICATIONS = """navigator.serviceWorker.ready
  .then((reg) => reg.getNotifications())
  .then((list) => list.map((n) => ({
    title: n.title, body: n.body, tag: n.tag, data: n.data, requireInteraction: n.requireInteraction,
    icon: n.icon, badge: n.badge, actions: n.actions.map((a) => ({action: a.action, title: a.title})),
  })))"""

#: Dispatch the click the browser would (see the module doc), and wait for what it started.
CLICK = """async ({tag, action}) => {
  const [notification] = await self.registration.getNotifications({ tag });
  if (!notification) throw new Error(`no notification tagged ${tag}`);
  const event = new NotificationEvent("notificationclick", { notification, action });
  const started = [];
  Object.defineProperty(event, "waitUntil", { value: (promise) => started.push(promise) });
  self.dispatchEvent(event);
  await Promise.all(started);
}"""

#: Record the windows the worker opens or focuses (Chromium allows neither outside a real click).
RECORD_WINDOWS = """() => {
  self.windowCalls = [];
  self.clients.openWindow = async (url) => { self.windowCalls.push(["open", url]); return null; };
  WindowClient.prototype.focus = async function () {
    self.windowCalls.push(["focus", this.url]);
    return this;
  };
}"""

#: Headless Chromium is always "visible": let the test hide the page.
FAKE_VISIBILITY = """
let visibility = "visible";
const define = (name, get) => Object.defineProperty(Document.prototype, name, { get, configurable: true });
define("visibilityState", () => visibility);
define("hidden", () => visibility !== "visible");
window.setVisibility = (value) => {
  visibility = value;
  document.dispatchEvent(new Event("visibilitychange"));
};
"""


def new_session(daemon: DaemonThread, workspace: Path, title: str = "Push test") -> str:
    return str(daemon.run(daemon.api.create(workspace, title=title))["id"])


def prompt_via_api(daemon: DaemonThread, sid: str, text: str) -> None:
    reply = daemon.run(daemon.api.call("POST", f"/api/sessions/{sid}/prompt", {"text": text}))
    assert reply.status == 202, reply.body


def pending_request(daemon: DaemonThread, sid: str) -> dict[str, Any]:
    """The permission request the fake agent is waiting on (the latest one)."""
    daemon.run(daemon.api.wait_state(sid, "awaiting_permission"))
    asked = [e for e in daemon.run(daemon.api.events(sid)) if e["type"] == "permission_request"]
    return dict(asked[-1])


def controlled(page: Page) -> None:
    """Wait until the service worker controls ``page`` and has finished activating.

    It claims clients *while* it activates, so control alone can come first; a push delivered to a
    worker still ``activating`` may be dropped by Chromium (seen once under a loaded full run).
    """
    wait_for_js(
        page,
        "navigator.serviceWorker.controller !== null && navigator.serviceWorker.ready"
        ".then((r) => r.active !== null && r.active.state === 'activated')",
    )


def service_worker(context: BrowserContext) -> Worker:
    for worker in context.service_workers:
        if worker.url.endswith("/sw.js"):
            return worker
    return context.wait_for_event("serviceworker", lambda w: w.url.endswith("/sw.js"))


class Push:
    """Delivers pushes to the page's service worker registration through the DevTools protocol."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.registrations: dict[str, dict[str, Any]] = {}
        self.cdp: CDPSession = page.context.new_cdp_session(page)
        self.cdp.on("ServiceWorker.workerRegistrationUpdated", self._updated)
        self.cdp.send("ServiceWorker.enable")

    def _updated(self, params: dict[str, Any]) -> None:
        for registration in params["registrations"]:
            self.registrations[registration["registrationId"]] = registration

    def registration(self) -> tuple[str, str]:
        """(origin, registrationId) of the live registration whose scope is ``/``."""
        origin = self.page.evaluate("location.origin")
        for _ in range(400):
            for reg_id, registration in self.registrations.items():
                if registration["scopeURL"] == origin + "/" and not registration["isDeleted"]:
                    return origin, reg_id
            self.page.wait_for_timeout(25)
        raise AssertionError(f"no service worker registration for {origin}/: {self.registrations}")

    def deliver(self, payload: dict[str, Any]) -> None:
        origin, reg_id = self.registration()
        self.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": origin, "registrationId": reg_id, "data": json.dumps(payload)},
        )


def notifications(page: Page, count: int = 1) -> list[dict[str, Any]]:
    """The shown notifications, once there are ``count`` of them."""
    found: list[dict[str, Any]] = wait_for_js(
        page, f"({NOTIFICATIONS}).then((l) => l.length >= {count} && l)"
    )
    return found


def permission_payload(sid: str, request_id: str, title: str = "Write notes.txt") -> dict[str, Any]:
    """A permission push as the daemon sends it (the contract with the server side)."""
    return {
        "title": "The agent needs your answer",
        "body": title,
        "url": f"/s/{sid}",
        "tag": f"permission-{request_id}",
        "kind": "permission",
        "session_id": sid,
        "request_id": request_id,
        "actions": [{"action": "proceed_once", "title": "Allow once"}, {"action": "cancel", "title": "Deny"}],
    }


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Playwright, Browser]]:
    with launched_browser(tmp_path_factory.mktemp("browser-home")) as launched:
        yield launched


@pytest.fixture(scope="module")
def browser(chromium: tuple[Playwright, Browser]) -> Browser:
    """The module's Chromium (as in conftest), from a launch that keeps Playwright at hand."""
    return chromium[1]


@pytest.fixture
def profile(chromium: tuple[Playwright, Browser], pages: Pages, tmp_path: Path) -> BrowserContext:
    """A context with a profile on disk, as a user's browser has: Playwright's ordinary contexts are
    incognito, where Chromium installs no app (``in-incognito``) and refuses push subscriptions."""
    playwright, _ = chromium
    context = playwright.chromium.launch_persistent_context(
        tmp_path / "profile",
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    pages.contexts.append(context)  # closed with the test's pages
    return context


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
        ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

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


# --- "Notify me on this device" -------------------------------------------------------------------


def p256_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    raw = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return private, base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def open_notify(page: Page) -> None:
    page.locator("#notify").click()
    expect(page.locator("#notify-panel")).to_be_visible()


def test_notify_me_says_when_the_browser_blocks_notifications(pages: Pages, daemon: DaemonThread) -> None:
    context = pages.context()
    page = pages.open("/", context=context)
    cdp = context.new_cdp_session(page)
    target = cdp.send("Target.getTargetInfo")["targetInfo"]
    cdp.send(
        "Browser.setPermission",
        {
            "permission": {"name": "notifications"},
            "setting": "denied",
            "origin": daemon.base,
            "browserContextId": target["browserContextId"],
        },
    )
    page.reload()
    open_notify(page)
    expect(page.locator("#notify-state")).to_contain_text("Blocked by the browser")
    expect(page.get_by_role("switch", name="Notify me on this device")).to_be_disabled()
    expect(page.locator("#notify")).to_have_attribute("data-state", "blocked")


def test_notify_me_says_why_when_the_push_service_cannot_be_reached(
    pages: Pages, profile: BrowserContext, daemon: DaemonThread
) -> None:
    """Real ``pushManager.subscribe``: headless Chromium offline cannot reach FCM, and says so."""
    context = profile
    context.grant_permissions(["notifications"], origin=daemon.base)
    page = pages.open("/", context=context)
    controlled(page)
    _, public_key = p256_key()

    def key(route: Route) -> None:  # the daemon's key, whether or not this daemon has push yet
        route.fulfill(
            status=200, content_type="application/json", body=json.dumps({"public_key": public_key})
        )

    page.route("**/api/push/key", key)
    open_notify(page)
    expect(page.locator("#notify-state")).to_contain_text("Off.")
    switch = page.get_by_role("switch", name="Notify me on this device")
    expect(switch).to_be_enabled()
    expect(page.locator("#notify-test")).to_be_disabled()
    switch.check()
    # Chromium waits for an unreachable push service forever: the page gives up after 20 s
    expect(page.locator("#notify-message")).to_contain_text(
        "could not subscribe at its push service", timeout=40_000
    )
    expect(page.locator("#notify-message")).to_contain_text("no answer within 20 s")
    expect(page.locator("#notify-state")).to_contain_text("Off.")
    expect(switch).not_to_be_checked()


def test_notify_me_fits_a_phone_screen(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    context = pages.context(width=360, height=740)
    context.grant_permissions(["notifications"], origin=daemon.base)
    for path in ("/", f"/s/{sid}"):
        page = pages.open(path, context=context)
        open_notify(page)
        expect(page.get_by_role("switch", name="Notify me on this device")).to_be_visible()
        expect(page.locator("#notify-test")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.close()


class PushService:
    """A stand-in for the browser's push service on loopback: takes every push (201) and keeps it,
    for the test to decrypt with the subscription's private key (as the browser would)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Subscriber:
    """What the browser keeps for one subscription: the endpoint, its key pair and auth secret."""

    def __init__(self, service: PushService, name: str) -> None:
        self.private, self.p256dh = p256_key()
        self.secret = os.urandom(16)
        self.auth = base64.urlsafe_b64encode(self.secret).rstrip(b"=").decode()
        self.endpoint = f"{service.url}/push/{name}"

    def init_script(self) -> str:
        return FAKE_PUSH_MANAGER % json.dumps(
            {"endpoint": self.endpoint, "p256dh": self.p256dh, "auth": self.auth}
        )

    def decrypt(self, push: dict[str, Any]) -> dict[str, Any]:
        """The payload, decrypted as the browser's push service client would (RFC 8291)."""
        plain = http_ece.decrypt(
            push["body"], private_key=self.private, auth_secret=self.secret, version="aes128gcm"
        )
        payload: dict[str, Any] = json.loads(plain)
        return payload


#: A PushManager whose subscriptions point at the loopback push service (see the module doc).
FAKE_PUSH_MANAGER = """
(() => {
  const { endpoint, p256dh, auth } = %s;
  const decode = (s) => {
    const padded = s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - s.length %% 4) %% 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  };
  const makeSubscription = (key) => ({
    endpoint,
    expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: key },
    getKey: (name) => decode(name === "p256dh" ? p256dh : auth).buffer,
    toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh, auth } }),
    unsubscribe: async () => { localStorage.removeItem("fake-push"); return true; },
  });
  PushManager.prototype.subscribe = async function (options) {
    const key = new Uint8Array(options.applicationServerKey);
    localStorage.setItem("fake-push", JSON.stringify(Array.from(key)));
    window.subscribedWith = options;
    return makeSubscription(key.buffer);
  };
  PushManager.prototype.getSubscription = async function () {
    const key = localStorage.getItem("fake-push");
    return key ? makeSubscription(new Uint8Array(JSON.parse(key)).buffer) : null;
  };
})();
"""


@pytest.fixture
def push_service() -> Iterator[PushService]:
    service = PushService()
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def push_daemon(tmp_path: Path, isolated_home: Path) -> Iterator[DaemonThread]:
    """A daemon that accepts http:// push endpoints on loopback (the test's push service)."""
    served = DaemonThread(fake_settings(tmp_path, push_insecure_endpoints=True)).start()
    try:
        yield served
    finally:
        served.stop()


def test_notify_me_turns_push_on_sends_a_test_and_turns_it_off(
    browser: Any, push_daemon: DaemonThread, push_service: PushService
) -> None:
    """Needs the daemon's push routes (/api/push/...)."""
    pages = Pages(browser, push_daemon)
    try:
        subscriber = Subscriber(push_service, "this-device")
        context = pages.context()
        context.grant_permissions(["notifications"], origin=push_daemon.base)
        context.add_init_script(subscriber.init_script())
        page = pages.open("/", context=context)
        controlled(page)
        open_notify(page)
        switch = page.get_by_role("switch", name="Notify me on this device")
        expect(page.locator("#notify-state")).to_contain_text("Off.")
        switch.check()
        expect(page.locator("#notify-state")).to_contain_text("On.")
        expect(page.locator("#notify")).to_have_attribute("data-state", "on")
        # subscribed with the daemon's key, and the daemon has the subscription
        key = push_daemon.run(push_daemon.api.call("GET", "/api/push/key")).body["public_key"]
        used = page.evaluate(
            "btoa(String.fromCharCode(...new Uint8Array(window.subscribedWith.applicationServerKey)))"
        )
        assert base64.b64decode(used) == base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        assert page.evaluate("window.subscribedWith.userVisibleOnly") is True
        listed = push_daemon.run(push_daemon.api.call("GET", "/api/push/subscriptions")).body["subscriptions"]
        assert [s["endpoint_origin"] for s in listed] == [push_service.url]
        # a reload finds it on (the daemon still has it)
        page.reload()
        open_notify(page)
        expect(page.locator("#notify-state")).to_contain_text("On.")
        page.locator("#notify-test").click()
        expect(page.locator("#notify-message")).to_contain_text("Test sent")
        for _ in range(400):
            if push_service.received:
                break
            page.wait_for_timeout(25)
        assert push_service.received and push_service.received[0]["path"] == "/push/this-device"
        assert subscriber.decrypt(push_service.received[0])["kind"] == "test"
        # off: deleted at the daemon, unsubscribed in the browser
        switch.uncheck()
        expect(page.locator("#notify-state")).to_contain_text("Off.")
        assert (
            push_daemon.run(push_daemon.api.call("GET", "/api/push/subscriptions")).body["subscriptions"]
            == []
        )
        assert (
            page.evaluate("navigator.serviceWorker.ready.then((r) => r.pushManager.getSubscription())")
            is None
        )
        expect(page.locator("#notify-test")).to_be_disabled()
        pages.check()
    finally:
        pages.close()


def test_notify_me_turns_off_when_the_daemon_dropped_the_subscription(
    browser: Any, push_daemon: DaemonThread, push_service: PushService
) -> None:
    """Needs the daemon's push routes (/api/push/...)."""
    pages = Pages(browser, push_daemon)
    try:
        context = pages.context()
        context.grant_permissions(["notifications"], origin=push_daemon.base)
        context.add_init_script(Subscriber(push_service, "dropped").init_script())
        page = pages.open("/", context=context)
        controlled(page)
        open_notify(page)
        page.get_by_role("switch", name="Notify me on this device").check()
        expect(page.locator("#notify-state")).to_contain_text("On.")
        [sub] = push_daemon.run(push_daemon.api.call("GET", "/api/push/subscriptions")).body["subscriptions"]
        gone = push_daemon.run(push_daemon.api.call("DELETE", f"/api/push/subscriptions/{sub['id']}"))
        assert gone.status == 204
        page.reload()
        open_notify(page)
        expect(page.locator("#notify-state")).to_contain_text("Off.")
        expect(page.locator("#notify-message")).to_contain_text("no longer had this device's subscription")
        pages.check()
    finally:
        pages.close()


def wait_pushes(
    page: Page, service: PushService, count: int, timeout_ms: int = 15_000
) -> list[dict[str, Any]]:
    for _ in range(timeout_ms // 25):
        if len(service.received) >= count:
            break
        page.wait_for_timeout(25)
    assert len(service.received) >= count, f"{len(service.received)} pushes arrived, wanted {count}"
    return service.received[:count]


def test_the_daemons_own_push_reaches_the_worker_and_allow_once_answers(
    browser: Any, push_daemon: DaemonThread, push_service: PushService, workspace: Path
) -> None:
    """Needs the daemon's push routes and notifier. End to end: "Notify me" on, the agent asks, the
    daemon pushes to the loopback push service, the test decrypts it as the browser's push client
    would and hands it to the worker (DevTools), and "Allow once" answers the real request.
    Meanwhile a page showing the session (visible) keeps the daemon from pushing about it."""
    pages = Pages(browser, push_daemon)
    try:
        subscriber = Subscriber(push_service, "phone")
        context = pages.context()
        context.grant_permissions(["notifications"], origin=push_daemon.base)
        context.add_init_script(subscriber.init_script())
        context.add_init_script(FAKE_VISIBILITY)
        page = pages.open("/", context=context)
        controlled(page)
        open_notify(page)
        page.get_by_role("switch", name="Notify me on this device").check()
        expect(page.locator("#notify-state")).to_contain_text("On.")
        sid = new_session(push_daemon, workspace, title="Phone test")
        # the session open and visible on this device: no push about it
        watcher = pages.open(f"/s/{sid}", context=context)
        expect(watcher.locator("#conn")).to_have_attribute("data-status", "connected")
        watcher.wait_for_timeout(300)  # its visibility frame is in
        prompt_via_api(push_daemon, sid, "permission Write watched.txt")
        first = pending_request(push_daemon, sid)["request_id"]
        watcher.wait_for_timeout(1000)
        assert push_service.received == []
        answered = push_daemon.run(
            push_daemon.api.call(
                "POST", f"/api/sessions/{sid}/permissions/{first}", {"option_id": "proceed_once"}
            )
        )
        assert answered.status == 200
        push_daemon.run(push_daemon.api.wait_state(sid, "idle"))
        # hidden (the phone locked): the next request is pushed
        watcher.evaluate("setVisibility('hidden')")
        watcher.wait_for_timeout(300)
        prompt_via_api(push_daemon, sid, "permission Write notes.txt\nsay after the answer")
        request_id = pending_request(push_daemon, sid)["request_id"]
        [push] = wait_pushes(page, push_service, 1)
        payload = subscriber.decrypt(push)
        assert payload["kind"] == "permission" and payload["request_id"] == request_id
        assert payload["url"] == f"/s/{sid}"
        assert [a["title"] for a in payload["actions"]] == ["Allow once", "Deny"]
        Push(page).deliver(payload)
        [shown] = notifications(page)
        assert [a["title"] for a in shown["actions"]] == ["Allow once", "Deny"]
        worker = service_worker(context)
        worker.evaluate(RECORD_WINDOWS)
        allow = payload["actions"][0]["action"]
        worker.evaluate(CLICK, {"tag": payload["tag"], "action": allow})
        resolved = push_daemon.run(
            push_daemon.api.wait_event(
                sid, lambda e: e["type"] == "permission_resolved" and e["request_id"] == request_id
            )
        )
        assert resolved["option_id"] == allow == "proceed_once"
        push_daemon.run(push_daemon.api.wait_event(sid, lambda e: e["type"] == "turn_ended" and e["seq"] > 0))
        assert worker.evaluate("self.windowCalls") == []
        pages.check()
    finally:
        pages.close()

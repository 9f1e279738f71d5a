"""'Notify me on this device' in Chromium: its state (blocked, push service unreachable, on, off), a
test push, a subscription the daemon dropped, and the daemon's own push end to end through the
worker, with a session page that is watching (no push) and then hidden (pushed).

Chromium's push service (FCM) is unreachable offline, so the on/off flow replaces
``PushManager.prototype.subscribe`` with one whose endpoint is a push service this test runs on
loopback, with real P-256 keys so the daemon encrypts to it (see ``test_ui_push.py``'s module doc).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import http_ece
import pytest
import tornado.httpserver
import tornado.testing
import tornado.web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import (
    BrowserContext,
    Page,
    Route,
    expect,
)

from tests.support.browser import (
    DaemonThread,
    Pages,
)
from tests.support.daemon import fake_settings
from tests.support.loop_thread import LoopThread
from tests.support.push_browser import (
    CLICK,
    FAKE_VISIBILITY,
    RECORD_WINDOWS,
    Push,
    controlled,
    new_session,
    notifications,
    pending_request,
    prompt_via_api,
    service_worker,
)

pytestmark = pytest.mark.timeout(90)

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
        self.served = LoopThread(self.serve, "push-service")
        self.url = f"http://127.0.0.1:{self.served.start()}"

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[int]:
        """Listen on a free loopback port (yielded) until :meth:`close`."""
        sock, port = tornado.testing.bind_unused_port()
        server = tornado.httpserver.HTTPServer(
            tornado.web.Application([(r"/.*", _Take, {"received": self.received})])
        )
        server.add_sockets([sock])
        try:
            yield port
        finally:
            server.stop()
            await server.close_all_connections()

    def close(self) -> None:
        self.served.stop()


class _Take(tornado.web.RequestHandler):
    def initialize(self, received: list[dict[str, Any]]) -> None:
        self.received = received

    def post(self) -> None:
        request = self.request
        self.received.append({"path": request.uri, "headers": dict(request.headers), "body": request.body})
        self.set_status(201)


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

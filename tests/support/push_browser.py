"""What the Chromium push tests share: the notifications a worker shows, DevTools push delivery,
dispatching a notification click inside the worker, and the daemon calls the tests make."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import (
    BrowserContext,
    CDPSession,
    Page,
    Worker,
)

from tests.support.browser import (
    DaemonThread,
    wait_for_js,
)

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
    """Wait until the service worker has finished activating and controls ``page``.

    It claims the pages open when it activates, but ``clients.claim()`` cannot take a page whose
    navigation was already on its way (the login's redirect, say): that page stays uncontrolled
    until it loads again, as in any browser. Seen 1 run in ~20; the page is then reloaded once.
    And control alone can come before ``activated`` (it claims *while* activating), when a
    push delivered to it may be dropped.
    """
    ready = "navigator.serviceWorker.ready.then((r) => r.active !== null && r.active.state === 'activated')"
    wait_for_js(page, ready)
    if not page.evaluate("navigator.serviceWorker.controller !== null"):
        page.reload()
        wait_for_js(page, f"navigator.serviceWorker.controller !== null && {ready}")


def service_worker(context: BrowserContext) -> Worker:
    for worker in context.service_workers:
        if worker.url.endswith("/sw.js"):
            return worker
    registered: Worker = context.wait_for_event("serviceworker", lambda w: w.url.endswith("/sw.js"))
    return registered


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
        """Hand ``payload`` to the worker as its push service would, until its notification shows.

        DevTools' delivery is the test's stand-in for the push service, and twice in loaded full
        runs one was dropped without a word (no notification, no error; never reproduced alone).
        A push service redelivers what was not acknowledged, so this does too — at most three
        times, each with the same tag (a notification that did show is replaced, not doubled).
        A worker that never shows it still fails the test."""
        origin, reg_id = self.registration()
        tag = payload.get("tag")
        for _attempt in range(3):
            self.cdp.send(
                "ServiceWorker.deliverPushMessage",
                {"origin": origin, "registrationId": reg_id, "data": json.dumps(payload)},
            )
            if not isinstance(tag, str) or self._shown(tag, within=8.0):
                return

    def _shown(self, tag: str, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.page.evaluate(
                f"({NOTIFICATIONS}).then((l) => l.some((n) => n.tag === {json.dumps(tag)}))"
            ):
                return True
            self.page.wait_for_timeout(50)
        return False


def notifications(page: Page, count: int = 1) -> list[dict[str, Any]]:
    """The shown notifications, once there are ``count`` of them."""
    found: list[dict[str, Any]] = wait_for_js(
        page, f"({NOTIFICATIONS}).then((l) => l.length >= {count} && l)", timeout=30.0
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

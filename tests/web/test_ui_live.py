"""The web UI never loses a line: reloads, server-side drops, half-open sockets, two tabs, hidden
tabs (title marker and notifications), deletion elsewhere, and a 360 px phone screen."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.support.browser import DaemonThread, Pages, wait_for_js
from tests.support.push_browser import FAKE_VISIBILITY

pytestmark = pytest.mark.timeout(90)

#: Records every value the connection indicator takes (test-side: the product has no such log).
RECORD_CONN = """() => {
  const conn = document.getElementById("conn");
  window.connSeen = [conn.dataset.status];
  new MutationObserver(() => window.connSeen.push(conn.dataset.status))
    .observe(conn, { attributes: true, attributeFilter: ["data-status"] });
}"""

#: Lets a test hide the tab and see notifications (headless Chromium is always "visible"); the
#: real worker path is tested in test_ui_push.py.
FAKE_VISIBILITY_AND_NOTIFICATIONS = (
    """
window.notes = [];
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.notes.push([title, (options || {}).body]); }
  close() {}
};
// the page shows its notifications through the service worker (Android refuses new Notification())
ServiceWorkerRegistration.prototype.showNotification = async function (title, options) {
  window.notes.push([title, (options || {}).body]);
};
"""
    + FAKE_VISIBILITY
)


def new_session(daemon: DaemonThread, workspace: Path, title: str | None = None) -> str:
    extra = {"title": title} if title else {}
    return str(daemon.run(daemon.api.create(workspace, **extra))["id"])


def prompt_via_api(daemon: DaemonThread, sid: str, text: str) -> None:
    reply = daemon.run(daemon.api.call("POST", f"/api/sessions/{sid}/prompt", {"text": text}))
    assert reply.status == 202, reply.body


def send(page: Page, text: str) -> None:
    page.locator("#prompt").fill(text)
    page.locator("#prompt").press("Enter")


def wait_idle(page: Page) -> None:
    expect(page.locator("#state")).to_have_text("idle")
    expect(page.locator("#working")).to_be_hidden()


def chunk_numbers(page: Page) -> list[int]:
    text = page.locator(".msg.agent").all_inner_texts()
    return [int(n) for n in re.findall(r"chunk (\d+)", "\n".join(text))]


def test_reload_keeps_the_whole_history(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    send(
        page,
        "think first a thought\nplan Read;Write\nsay hello there\ntool read a.txt\npermission Write b.txt",
    )
    page.get_by_role("button", name="Allow", exact=True).click()
    expect(page.locator(".msg.agent").last).to_have_text("allowed proceed_once")
    wait_idle(page)
    before = page.locator("#transcript").inner_text()
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    expect(page.locator(".msg.agent").last).to_have_text("allowed proceed_once")
    assert page.locator("#transcript").inner_text() == before
    expect(page.locator(".thought")).to_have_count(1)
    expect(page.locator(".thought")).not_to_have_attribute("open", "")
    expect(page.locator(".plan-entry")).to_have_text(["☐Read (pending)", "☐Write (pending)"])
    expect(page.locator(".tool")).to_have_count(2)
    # answered in this tab before the reload: not reported as answered elsewhere
    expect(page.locator(".permission.resolved .outcome")).to_have_text("Allow")


def test_server_side_drop_reconnects_without_duplicates_or_gaps(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    page.evaluate(RECORD_CONN)
    send(page, "stream 60 40")
    expect(page.locator(".msg.agent")).to_contain_text("chunk 12")
    assert daemon.drop_websockets() == 1
    wait_for_js(page, "window.connSeen.includes('reconnecting')")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    wait_idle(page)
    expect(page.locator(".msg.agent")).to_contain_text("chunk 60")
    assert chunk_numbers(page) == list(range(1, 61))  # every chunk, once, in order
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator(".msg.agent")).to_have_count(1)
    seen = page.evaluate("window.connSeen")
    assert seen[-1] == "connected" and "reconnecting" in seen


def test_heartbeat_replaces_a_half_open_connection(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    context = pages.context()
    page = pages.watch(context.new_page())
    page.clock.install()
    page.goto(daemon.login_url)
    page.goto(f"{daemon.base}/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    page.evaluate(RECORD_CONN)

    def go_deaf() -> None:  # the socket stays open but nothing is answered: half-open
        for ws in daemon.api.daemon.websockets:
            ws.on_message = lambda message: None  # type: ignore[method-assign]

    daemon.call(go_deaf)
    page.clock.fast_forward(16_000)  # the ping goes out and is never acked
    page.clock.fast_forward(11_000)  # ack deadline passed: the client gives the socket up
    wait_for_js(page, "window.connSeen.includes('reconnecting')")
    page.clock.fast_forward(1_000)  # first backoff step
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    prompt_via_api(daemon, sid, "say still here")
    expect(page.locator(".msg.agent")).to_have_text("still here")


def test_two_tabs_stay_in_sync_and_see_each_others_answers(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace)
    first = pages.open(f"/s/{sid}")
    second = pages.open(f"/s/{sid}", context=first.context)
    send(first, "say from the first tab\npermission Edit shared.txt")
    for page in (first, second):
        expect(page.locator(".permission.open .options button")).to_have_text(
            ["Allow All Edits", "Allow", "Reject"]
        )
        expect(page.locator(".msg.user")).to_have_count(1)
    second.get_by_role("button", name="Allow", exact=True).click()
    expect(second.locator(".permission.resolved .outcome")).to_have_text("Allow")
    expect(first.locator(".permission.resolved .outcome")).to_have_text(
        "Allow (answered in another tab or client)"
    )
    for page in (first, second):
        expect(page.get_by_role("article", name="edit: Edit shared.txt")).to_have_attribute(
            "data-status", "completed"
        )
        wait_idle(page)
        # the agent's last words may still be on their way to one tab when both show idle
        expect(page.locator(".msg.agent").last).to_contain_text("allowed proceed_once")
    assert (
        first.locator("#transcript").inner_text().replace(" (answered in another tab or client)", "")
        == second.locator("#transcript").inner_text()
    )


def test_hidden_tab_gets_a_title_marker_and_notifications(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace, title="Background job")
    context = pages.context()
    context.add_init_script(FAKE_VISIBILITY_AND_NOTIFICATIONS)
    page = pages.open(f"/s/{sid}", context=context)
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    assert page.title() == "Background job · qwen-daemon"
    page.evaluate("setVisibility('hidden')")
    prompt_via_api(daemon, sid, "permission Write report.md")
    expect(page).to_have_title("● Background job · qwen-daemon")
    wait_for_js(page, "window.notes.length === 1")
    assert page.evaluate("window.notes") == [["The agent needs your answer", "Write report.md"]]
    page.evaluate("setVisibility('visible')")
    expect(page).to_have_title("Background job · qwen-daemon")
    page.get_by_role("button", name="Allow", exact=True).click()
    wait_idle(page)
    assert page.evaluate("window.notes.length") == 1  # the turn ended while visible: no notice
    page.evaluate("setVisibility('hidden')")
    prompt_via_api(daemon, sid, "say done")
    wait_for_js(page, "window.notes.length === 2")
    assert page.evaluate("window.notes[1]") == ["The agent finished", "Background job"]
    expect(page).to_have_title("● Background job · qwen-daemon")


def test_deleting_on_the_dashboard_ends_the_open_session_view(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    sid = new_session(daemon, workspace, title="Doomed")
    view = pages.open(f"/s/{sid}")
    expect(view.locator("#conn")).to_have_attribute("data-status", "connected")
    dashboard = pages.open("/", context=view.context)
    pages.allow(r"status of 404")  # the view asks whether the session still exists: it does not
    row = dashboard.locator(".session-row")
    row.get_by_role("button", name="Delete session Doomed").click()
    row.get_by_role("button", name="Confirm: delete session Doomed").click()
    expect(dashboard.locator(".session-row")).to_have_count(0)
    expect(view.locator("#banner")).to_contain_text("This session no longer exists: it was deleted.")
    expect(view.locator("#prompt")).to_be_disabled()


LONG_MARKDOWN = (
    "A very long word: " + "x" * 300 + "\n\n"
    "```\n" + "long code line " * 40 + "\n```\n\n"
    "| " + " | ".join(f"column {i}" for i in range(12)) + " |\n|" + "---|" * 12 + "\n"
    "| " + " | ".join(f"value {i}" for i in range(12)) + " |\n\n"
    "https://example.com/" + "a/" * 80 + "\n"
)


def test_nothing_overflows_horizontally_at_360_px(pages: Pages, daemon: DaemonThread, tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-directory-name-" * 4) / "project"
    deep.mkdir(parents=True)
    sid = new_session(daemon, deep, title="A session title that is much too long for a phone screen")
    page = pages.open("/", width=360, height=740)
    expect(page.locator(".session-row")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.goto(f"{daemon.base}/s/{sid}")
    send(
        page,
        "md "
        + json.dumps(LONG_MARKDOWN)
        + "\ntool execute "
        + "very-long-command-name " * 10
        + "\npermission Write "
        + "/deep/path" * 20,
    )
    expect(page.locator(".permission.open")).to_be_visible()
    expect(page.locator(".msg.agent table")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.evaluate("document.body.scrollWidth") <= 360


def test_daemon_restart_reconnects_and_the_view_carries_on(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    """Sessions are durable: after a restart the page resumes from its last seq, nothing lost or doubled."""
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    send(page, "say before the restart")
    wait_idle(page)
    send(page, "permission Write later.txt")
    expect(page.locator(".permission.open")).to_be_visible()
    page.evaluate(RECORD_CONN)
    port = daemon.api.daemon.port
    pages.allow(r"WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|status of (404|503)")
    daemon.stop()
    expect(page.locator("#conn")).to_have_attribute("data-status", "offline")
    restarted = DaemonThread(daemon.settings, port=port).start()
    try:
        expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
        # a graceful stop cancelled the turn: its request is shown resolved, not left hanging
        expect(page.locator(".permission.open")).to_have_count(0)
        expect(page.locator(".permission.resolved .outcome")).to_contain_text("Cancelled")
        wait_idle(page)
        send(page, "say after the restart")
        expect(page.locator(".msg.agent").last).to_have_text("after the restart")
        texts = page.locator(".msg.agent").all_inner_texts()
        assert texts.count("before the restart") == 1 and texts.count("after the restart") == 1, texts
        assert page.locator(".msg.user").count() == 3
    finally:
        restarted.stop()


def test_lost_and_repeated_frames_are_repaired_by_seq(
    pages: Pages, daemon: DaemonThread, workspace: Path
) -> None:
    """A frame lost in transit is refetched from /events; a repeated one is shown once. Frames
    travel as lines of a message (several when the daemon queued them in one loop turn): the
    route drops or repeats one line and passes the rest on."""
    sid = new_session(daemon, workspace)
    context = pages.context()
    page = pages.watch(context.new_page())
    tampered: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            assert isinstance(message, str)
            passed: list[str] = []
            for line in message.split("\n"):
                text = json.loads(line).get("text")
                if text == "chunk 5\n":
                    tampered.append("dropped")
                    continue
                passed.append(line)
                if text == "chunk 9\n":
                    tampered.append("repeated")
                    passed.append(line)
            if passed:
                ws.send("\n".join(passed))

        server.on_message(from_server)

    page.route_web_socket(re.compile(r"/ws\?after="), route)
    page.goto(daemon.login_url)
    page.goto(f"{daemon.base}/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    send(page, "stream 20")
    wait_idle(page)
    expect(page.locator(".msg.agent")).to_contain_text("chunk 20")
    assert tampered == ["dropped", "repeated"]
    assert chunk_numbers(page) == list(range(1, 21))


def test_network_loss_shows_offline_and_recovers(pages: Pages, daemon: DaemonThread, workspace: Path) -> None:
    sid = new_session(daemon, workspace)
    page = pages.open(f"/s/{sid}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    pages.allow(r"ERR_INTERNET_DISCONNECTED|WebSocket connection to .* failed")
    page.context.set_offline(True)
    expect(page.locator("#conn")).to_have_attribute("data-status", "offline")
    expect(page.locator("#conn")).to_have_text("Offline")
    prompt_via_api(daemon, sid, "say while you were away")
    page.context.set_offline(False)
    expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
    expect(page.locator(".msg.agent")).to_have_text("while you were away")
    wait_idle(page)

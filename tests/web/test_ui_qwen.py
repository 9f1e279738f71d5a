"""The browser flow against the real, pinned Qwen Code (talking to the fake OpenAI server): a
reply, a permission prompt, and Qwen Code's own modes listed and switched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from qwen_daemon.agents.registry import pinned_qwen_cli
from qwen_daemon.config import Paths, Settings
from tests.support.browser import DaemonThread, Pages
from tests.support.fake_openai import running_fake_openai, text, write_file
from tests.support.qwen import AGENT_ENV, prepare_qwen_home

pytestmark = [pytest.mark.qwen, pytest.mark.timeout(180)]

QWEN_TIMEOUT_MS = 90_000


def session_mode(daemon: DaemonThread, sid: str) -> str:
    reply = daemon.run(daemon.api.call("GET", f"/api/sessions/{sid}"))
    assert reply.status == 200, reply.body
    return str(reply.body["mode"])


def test_real_qwen_streams_markdown_asks_permission_and_switches_modes_in_the_browser(
    browser: Browser, tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pinned_qwen_cli().is_file():
        pytest.fail(f"the pinned Qwen Code is not installed at {pinned_qwen_cli()}; run `make install`")
    workspace = tmp_path / "project"
    workspace.mkdir()
    target = workspace / "allowed.txt"
    with running_fake_openai() as fake:
        env = prepare_qwen_home(isolated_home, fake.base_url)
        for name in AGENT_ENV:
            monkeypatch.setenv(name, env[name])
        daemon = DaemonThread(Settings(paths=Paths.from_platform(), port=0)).start()
        pages = Pages(browser, daemon)
        try:
            page = pages.open()
            page.get_by_label("Workspace folder").fill(str(workspace))
            expect(page.get_by_label("Agent", exact=True)).to_have_value("qwen")  # the one agent
            page.get_by_role("button", name="Create session").click()
            page.wait_for_url(re.compile(r"/s/[\w-]+$"), timeout=QWEN_TIMEOUT_MS)
            expect(page.locator("#state")).to_have_text("idle", timeout=QWEN_TIMEOUT_MS)
            sid = page.url.rsplit("/", 1)[1]

            # the modes Qwen Code advertises are offered, the session's own one chosen
            expect(page.locator("#agent-name")).to_have_text("qwen")
            mode = page.get_by_label("Mode", exact=True)
            expect(mode).to_be_visible()
            offered = mode.locator("option").evaluate_all("options => options.map((o) => o.value)")
            assert {"plan", "default", "auto-edit", "yolo"} <= set(offered), offered
            assert session_mode(daemon, sid) == "default"
            expect(page.locator("#mode-field")).to_have_attribute("data-mode", "default")
            expect(mode).to_have_value("default")

            fake.queue(text("Hello from **the fake model**, streamed in pieces.", pieces=4))
            page.locator("#prompt").fill("Say hello")
            page.locator("#prompt").press("Enter")
            reply = page.locator(".msg.agent").last
            expect(reply.locator("strong")).to_have_text("the fake model", timeout=QWEN_TIMEOUT_MS)
            expect(reply).to_have_text("Hello from the fake model, streamed in pieces.")
            expect(page.locator("#state")).to_have_text("idle", timeout=QWEN_TIMEOUT_MS)

            fake.queue(write_file(str(target), "alpha\n"), text("Wrote it."))
            page.locator("#prompt").fill("Create allowed.txt")
            page.locator("#prompt").press("Enter")
            prompt = page.locator(".permission.open")
            expect(prompt).to_be_visible(timeout=QWEN_TIMEOUT_MS)
            expect(prompt.locator(".diff .line.add")).to_have_text("+ alpha")
            options = prompt.locator(".options button")
            assert "proceed_once" in [b.get_attribute("data-option-id") for b in options.all()]
            prompt.locator('[data-option-id="proceed_once"]').click()
            expect(page.locator(".permission.resolved")).to_have_attribute("data-outcome", "proceed_once")
            expect(page.locator('.tool[data-status="completed"]').first).to_be_visible(
                timeout=QWEN_TIMEOUT_MS
            )
            expect(page.locator(".msg.agent").last).to_have_text("Wrote it.", timeout=QWEN_TIMEOUT_MS)
            expect(page.locator("#state")).to_have_text("idle", timeout=QWEN_TIMEOUT_MS)
            assert target.read_text() == "alpha\n"

            # switching Qwen Code's mode from the page, and seeing a switch made through the API
            mode.select_option("plan")
            expect(page.locator("#mode-field")).to_have_attribute(
                "data-mode", "plan", timeout=QWEN_TIMEOUT_MS
            )
            assert session_mode(daemon, sid) == "plan"
            switched = daemon.run(
                daemon.api.call("POST", f"/api/sessions/{sid}/mode", {"mode_id": "auto-edit"})
            )
            assert switched.status == 200, switched.body
            expect(page.locator("#mode-field")).to_have_attribute("data-mode", "auto-edit")
            expect(mode).to_have_value("auto-edit")
            pages.check()
        finally:
            pages.close()
            daemon.stop()

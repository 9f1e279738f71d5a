"""A full disk in the browser: the session page says the daemon cannot save, and carries on after.

Issue 14, finding 6, from the user's side: the seq-less ``storage_unavailable`` frame the daemon
sends while commits fail must reach the person watching, near the prompt box, instead of the
stream just stopping; once space returns the held events arrive and the page is usable again.
The daemon's state directory is a tmpfs the test mounts (see ``tests/hardening/test_disk_full.py``
for the rules on when that is possible).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.browser import DaemonThread, Pages
from tests.support.daemon import fake_settings
from tests.support.probe import poll
from tests.support.smallfs import fill

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def daemon(tmp_path: Path, isolated_home: Path, small_fs: Path) -> Iterator[DaemonThread]:
    """The web tests' daemon, with its state directory on the small filesystem."""
    served = DaemonThread(fake_settings(tmp_path)).start()
    try:
        yield served
    finally:
        served.stop()


def test_a_full_disk_is_said_near_the_prompt_and_the_stream_resumes(
    pages: Pages,
    daemon: DaemonThread,
    small_fs: Path,
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    sid = str(daemon.run(daemon.api.create(workspace))["id"])
    page = pages.open(f"/s/{sid}")
    page.locator("#prompt").fill("stream 100000 5")
    page.locator("#prompt").press("Enter")
    expect(page.locator("#transcript")).to_contain_text("chunk 20")

    filler = fill(small_fs)
    note = page.locator("#composer-note")
    expect(note).to_contain_text("cannot save right now", timeout=60_000)
    expect(note).to_contain_text("database or disk is full")
    expect(note).to_be_in_viewport()

    filler.unlink()
    # the held chunks follow in order once a commit succeeds; cancel ends the endless stream
    poll(lambda: daemon.run(daemon.api.call("GET", "/health")).body["status"] == "ok", 60, "recovery")
    last = int(daemon.run(daemon.api.call("GET", f"/api/sessions/{sid}")).body["last_seq"])
    recent = daemon.run(daemon.api.call("GET", f"/api/sessions/{sid}/events?after={last - 10}")).body
    chunks = [e["text"].strip() for e in recent["events"] if e["type"] == "agent_message_chunk"]
    assert chunks, recent
    expect(page.locator("#transcript")).to_contain_text(chunks[-1], timeout=60_000)
    page.locator("#cancel").click()
    expect(page.locator("#state")).to_have_text("idle", timeout=30_000)

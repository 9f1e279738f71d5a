"""Fixtures for the web UI tests: one Chromium per module, a fresh daemon and pages per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright

from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    UI_TIMEOUT_MS,
    DaemonThread,
    Pages,
    launched_browser,
)
from tests.support.daemon import fake_settings


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Playwright, Browser]]:
    """Shared by the module's tests (launching Chromium is the slow part); contexts isolate them."""
    with launched_browser(tmp_path_factory.mktemp("browser-home")) as launched:
        yield launched


@pytest.fixture(scope="module")
def browser(chromium: tuple[Playwright, Browser]) -> Browser:
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
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def daemon(tmp_path: Path, isolated_home: Path) -> Iterator[DaemonThread]:
    """A daemon hosting the scripted fake agent, on its own thread."""
    served = DaemonThread(fake_settings(tmp_path)).start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def pages(browser: Browser, daemon: DaemonThread) -> Iterator[Pages]:
    """Logged-in pages; any console error or page exception not allowed by the test fails it."""
    opened = Pages(browser, daemon)
    try:
        yield opened
        opened.check()
    finally:
        opened.close()

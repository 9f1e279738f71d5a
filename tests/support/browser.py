"""Browser-test support: a daemon on its own thread and loop, and Playwright pages logged in to it.

Why a thread: Playwright's sync API runs its own event loop on the test thread, and the daemon
needs a loop that keeps running while the test blocks in Playwright calls. So the daemon lives in
a background thread (:class:`tests.support.daemon.DaemonThread`), and the test hands it
coroutines with its ``run``.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``make test``); Playwright's own browser
download is not used. A missing Chromium fails the tests: a skipped browser suite would hide that
the UI is untested.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.support.daemon import DaemonThread as DaemonThread  # re-exported: the browser tests' daemon

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
#: Without the background-networking flags Chromium keeps dialling out on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long a UI expectation may take (fake agent turns finish in well under a second).
UI_TIMEOUT_MS = 15_000
expect.set_options(timeout=UI_TIMEOUT_MS)


def wait_for_js(page: Page, expression: str, timeout: float = UI_TIMEOUT_MS / 1000) -> Any:
    """Poll ``expression`` in the page until it is truthy; returns its value.

    Playwright's ``wait_for_function`` compiles its predicate with ``eval``, which our CSP (rightly)
    forbids, so poll with ``evaluate`` (run by the DevTools protocol, outside the CSP) instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout:.0f} s: {expression}")
        page.wait_for_timeout(25)


class Pages:
    """Opens logged-in pages; records console errors and uncaught exceptions of every page.

    At the end of a test :meth:`check` fails on any error not explicitly allowed: a CSP violation
    or a JavaScript exception is a bug even when the visible test passed.
    """

    def __init__(self, browser: Browser, daemon: DaemonThread) -> None:
        self.browser = browser
        self.daemon = daemon
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        """Tolerate console errors matching ``pattern`` (e.g. a refused reconnect while down)."""
        self.allowed.append(re.compile(pattern))

    def context(self, width: int = 1280, height: int = 900, **options: Any) -> BrowserContext:
        context = self.browser.new_context(viewport={"width": width, "height": height}, **options)
        context.set_default_timeout(UI_TIMEOUT_MS)
        self.contexts.append(context)
        return context

    def watch(self, page: Page) -> Page:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"console: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        return page

    def open(self, path: str = "/", *, context: BrowserContext | None = None, **options: Any) -> Page:
        """A new page at ``path``, logged in (the first page of a context logs in by token URL)."""
        if context is None:
            context = self.context(**options)
        page = self.watch(context.new_page())
        if not context.cookies():
            page.goto(self.daemon.login_url)
            page.wait_for_url(self.daemon.base + "/")
        if path != "/" or page.url != self.daemon.base + "/":
            page.goto(self.daemon.base + path)
        return page

    def check(self) -> None:
        unexpected = [e for e in self.errors if not any(p.search(e) for p in self.allowed)]
        assert not unexpected, "errors in the browser:\n" + "\n".join(unexpected)

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()


@contextmanager
def launched_browser(home: Path, extra_args: Sequence[str] = ()) -> Iterator[tuple[Playwright, Browser]]:
    """Start Playwright's driver and Debian's Chromium with HOME and XDG dirs under ``home``
    (``extra_args``: more Chromium flags, e.g. ``--host-resolver-rules`` for a public name)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`make test` installs it as root: apt-get install -y chromium)"
        )
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args], env={**os.environ, **env}
        )
        try:
            yield playwright, browser
        finally:
            browser.close()
    finally:
        playwright.stop()

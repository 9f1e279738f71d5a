"""Browser-test support: a daemon on its own thread and loop, and Playwright pages logged in to it.

Why a thread: Playwright's sync API runs its own event loop on the test thread, and the daemon
needs a loop that keeps running while the test blocks in Playwright calls. So the daemon lives in
a background thread (``asyncio.run`` there), and the test hands it coroutines with :meth:`run`.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``make test``); Playwright's own browser
download is not used. A missing Chromium fails the tests: a skipped browser suite would hide that
the UI is untested.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import tornado.netutil
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from qwen_daemon.config import Settings
from qwen_daemon.runtime import Daemon
from tests.support.daemon import Api, running_daemon

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


class DaemonThread:
    """A started :class:`Daemon` (via ``running_daemon``) served from a background thread."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        """``port``: listen there (e.g. to restart on the port a page knows), else any free port."""
        self.settings = settings
        self.port = port
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._api: Api | None = None
        self._thread = threading.Thread(target=self._main, name="daemon-thread", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread by start()/stop()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self.port is None:
            async with running_daemon(self.settings) as api:
                self._api = api
                self._ready.set()
                await self._stop.wait()
            return
        daemon = Daemon(self.settings)
        await daemon.start(sockets=tornado.netutil.bind_sockets(self.port, "127.0.0.1"))
        self._api = Api(daemon)
        try:
            self._ready.set()
            await self._stop.wait()
        finally:
            self._api.http.close()
            await daemon.shutdown()

    def start(self) -> DaemonThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("the daemon did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the daemon thread did not stop"
        if self._error is not None:
            raise self._error

    @property
    def api(self) -> Api:
        assert self._api is not None
        return self._api

    @property
    def base(self) -> str:
        return self.api.base

    @property
    def login_url(self) -> str:
        return f"{self.base}/?token={self.api.daemon.token}"

    def run(self, awaitable: Awaitable[T], timeout: float = 30.0) -> T:
        """Run a coroutine on the daemon's loop and return its result."""
        assert self._loop is not None

        async def wrap() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run a plain function on the daemon's loop thread (daemon state is not thread-safe)."""

        async def wrap() -> T:
            return fn()

        return self.run(wrap(), timeout)

    def drop_websockets(self) -> int:
        """Cut every open WebSocket from the server side, without a close frame (like a network
        drop); returns how many there were."""

        def cut() -> int:
            sockets = list(self.api.daemon.websockets)
            for ws in sockets:
                connection: Any = ws.ws_connection
                if connection is not None:
                    connection.stream.close()
            return len(sockets)

        return self.call(cut)

    def websocket_count(self) -> int:
        return self.call(lambda: len(self.api.daemon.websockets))


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

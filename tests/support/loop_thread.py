"""The one way a test serves something from a background thread: an async context manager entered
on its own event loop there, until the test stops it.

Why a thread at all: most tests are ``async def`` and run on pytest-asyncio's loop, servers
included. A few drive a server from synchronous code that blocks: Playwright's sync API (it runs
its own loop on the test thread), a CLI run as a subprocess and waited for, a bench script. The
server's loop must keep running while that code blocks, so it runs here, and the test hands it
coroutines with :meth:`LoopThread.run` (the served objects are not thread-safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class LoopThread(Generic[T]):
    """``serve()`` entered on a fresh loop in a daemon thread; :meth:`start` returns what it yields.

    The thread runs ``asyncio.run``, so the loop, its tasks and any listening socket are closed
    before :meth:`stop` returns: nothing leaks into the next test. An error on that thread (at
    start or while serving) is raised again on the test's thread by :meth:`start` or :meth:`stop`.
    """

    def __init__(self, serve: Callable[[], AbstractAsyncContextManager[T]], name: str) -> None:
        self._serve = serve
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._value: T | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to the test thread by start()/stop()
            self._error = exc
        finally:
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._serve() as value:
            self._value = value
            self._ready.set()
            await self._stop.wait()

    def start(self, timeout: float = 30.0) -> T:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise AssertionError(f"{self._thread.name} did not start within {timeout:.0f} s")
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value

    def stop(self, timeout: float = 60.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self._thread.name} did not stop within {timeout:.0f} s"
        if self._error is not None:
            raise self._error

    def run(self, awaitable: Awaitable[R], timeout: float = 30.0) -> R:
        """Run a coroutine on the served loop and return its result."""
        assert self._loop is not None

        async def wrap() -> R:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result(timeout)

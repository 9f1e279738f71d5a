"""Session managers and stores as the daemon runs them: every session stored, in a temporary database.

Production never runs a session without its SQLite store (events are committed before any client
sees them, answers to permission requests reach the agent only once stored), so tests do not
either: this is the one place tests get a manager or a store from, and the database lives under
the test's own ``tmp_path`` (through ``Settings.paths``), so nothing outlives the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from qwen_daemon.config import Settings
from qwen_daemon.sessions.manager import SessionManager
from qwen_daemon.sessions.persistence import Persistence
from qwen_daemon.sessions.store import Store


@asynccontextmanager
async def loaded_manager(
    settings: Settings, env: Mapping[str, str] | None = None
) -> AsyncIterator[SessionManager]:
    """A manager with its store open (``load()``) and its housekeeping started; shut down after."""
    manager = SessionManager(settings, env=env)
    manager.load()
    manager.start()
    try:
        yield manager
    finally:
        await manager.shutdown()


def temp_persistence(directory: Path) -> Persistence:
    """A store in a fresh database file under ``directory``; the caller closes it (``.close()``)."""
    return Persistence(Store(directory / "sessions.db"))

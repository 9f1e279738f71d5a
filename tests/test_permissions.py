"""The permission registry on its own: a real store (a temp SQLite file), no agent, no session."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.errors import BadRequest, PermissionAlreadyAnswered, PermissionNotFound, StorageUnavailable
from qwen_daemon.sessions.permissions import ANSWERED_MEMORY, CANCELLED, PermissionRegistry
from qwen_daemon.sessions.persistence import Persistence
from qwen_daemon.sessions.store import Store
from tests.support.sessions import temp_persistence

ASK: dict[str, Any] = {
    "sessionId": "agent-1",
    "toolCall": {"toolCallId": "t1", "title": "Write notes.txt", "kind": "edit"},
    "options": [
        {"optionId": "proceed_once", "name": "Allow", "kind": "allow_once"},
        {"optionId": "cancel", "name": "Reject", "kind": "reject_once"},
    ],
}


class Recorder:
    """What the registry tells its session: the events it emits and each time it settles."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.settled = 0

    def emit(self, type_: str, **fields: Any) -> None:
        self.events.append((type_, fields))

    def settle(self) -> None:
        self.settled += 1

    def types(self) -> list[str]:
        return [t for t, _ in self.events]


@pytest.fixture
async def persist(tmp_path: Path) -> AsyncIterator[Persistence]:
    persist = temp_persistence(tmp_path)
    yield persist
    persist.close()


def registry(persist: Persistence) -> tuple[PermissionRegistry, Recorder]:
    seen = Recorder()
    return PermissionRegistry("s1", persist, seen.emit, seen.settle), seen


def stored(persist: Persistence, request_id: str) -> str | None:
    persist.flush()
    return persist.store.permission_status("s1", request_id)


async def test_a_request_is_stored_and_announced_then_the_first_answer_wins(persist: Persistence) -> None:
    permissions, seen = registry(persist)
    pending = permissions.add(ASK)
    assert permissions.pending == {pending.request_id: pending}
    assert seen.types() == ["permission_request"]
    assert seen.events[0][1]["request_id"] == pending.request_id
    assert [o["option_id"] for o in seen.events[0][1]["options"]] == ["proceed_once", "cancel"]
    assert stored(persist, pending.request_id) == "pending"

    permissions.answer(pending.request_id, "proceed_once")
    assert permissions.pending == {} and seen.settled == 1
    assert seen.events[-1] == (
        "permission_resolved",
        {"request_id": pending.request_id, "option_id": "proceed_once"},
    )
    result = await asyncio.wait_for(pending.future, 5)  # released once committed
    assert result == {"outcome": {"outcome": "selected", "optionId": "proceed_once"}}
    assert stored(persist, pending.request_id) == "answered"

    with pytest.raises(PermissionAlreadyAnswered, match="already answered"):
        permissions.answer(pending.request_id, "cancel")
    with pytest.raises(PermissionNotFound):
        permissions.answer("never-made", "cancel")


async def test_an_answer_is_released_to_the_agent_only_once_committed(persist: Persistence) -> None:
    permissions, _ = registry(persist)
    pending = permissions.add(ASK)
    permissions.answer(pending.request_id, "proceed_once")
    assert not pending.future.done(), "nothing is committed before the loop turns"
    await asyncio.wait_for(pending.future, 5)


async def test_a_cancel_releases_at_once_without_waiting_for_the_commit(persist: Persistence) -> None:
    permissions, seen = registry(persist)
    first, second = permissions.add(ASK), permissions.add(ASK)
    permissions.resolve_all()
    assert first.future.result() == CANCELLED and second.future.result() == CANCELLED
    assert seen.types().count("permission_resolved") == 2 and seen.settled == 1  # settled once, at the end
    assert all(e[1]["option_id"] is None for e in seen.events if e[0] == "permission_resolved")
    with pytest.raises(PermissionAlreadyAnswered):  # a late answer to a cancelled request
        permissions.answer(first.request_id, "proceed_once")


async def test_a_bad_answer_changes_nothing(persist: Persistence) -> None:
    permissions, seen = registry(persist)
    pending = permissions.add(ASK)
    with pytest.raises(BadRequest, match="not offered"):
        permissions.answer(pending.request_id, "not-offered")
    with pytest.raises(BadRequest, match="asks no questions"):
        permissions.answer(pending.request_id, "proceed_once", {"0": "x"})
    assert pending.request_id in permissions.pending and not pending.future.done()
    assert seen.types() == ["permission_request"] and seen.settled == 0


async def test_a_withdrawn_request_is_cancelled_once(persist: Persistence) -> None:
    permissions, seen = registry(persist)
    pending = permissions.add(ASK)
    permissions.withdraw(pending)
    permissions.withdraw(pending)  # already resolved: nothing more happens
    assert pending.future.result() == CANCELLED
    assert seen.types() == ["permission_request", "permission_resolved"] and seen.settled == 1


async def test_expired_requests_are_recorded_and_refused_with_their_own_reason(persist: Persistence) -> None:
    permissions, seen = registry(persist)
    permissions.expire([{"request_id": "old-1", "tool_call": {}}])
    assert seen.events == [
        ("permission_resolved", {"request_id": "old-1", "option_id": None, "expired": True})
    ]
    assert stored(persist, "old-1") == "expired"
    with pytest.raises(PermissionAlreadyAnswered, match="expired when the daemon restarted"):
        permissions.answer("old-1", "proceed_once")


async def test_answers_older_than_memory_are_found_in_the_store(persist: Persistence) -> None:
    permissions, _ = registry(persist)
    first = permissions.add(ASK)
    permissions.answer(first.request_id, "cancel")
    for _ in range(ANSWERED_MEMORY):
        permissions.resolve(permissions.add(ASK), None, CANCELLED)
    persist.flush()
    with pytest.raises(PermissionAlreadyAnswered, match="already answered"):
        permissions.answer(first.request_id, "proceed_once")


async def test_no_answer_is_taken_while_nothing_can_be_stored(tmp_path: Path) -> None:
    class FullDisk(Store):
        full = False

        def flush(self) -> int:
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            return super().flush()

    store = FullDisk(tmp_path / "sessions.db")
    persist = Persistence(store)
    try:
        permissions, _ = registry(persist)
        pending = permissions.add(ASK)
        store.full = True
        permissions.add(ASK)  # queued while the disk is full: its commit fails
        persist.flush()
        with pytest.raises(StorageUnavailable):
            permissions.answer(pending.request_id, "proceed_once")
        assert pending.request_id in permissions.pending and not pending.future.done()
        store.full = False
    finally:
        persist.close()

"""A database an older version wrote (events in ACP's naming) replays in today's vocabulary.

Sessions survive upgrades: migration 5 rewrites stored events, permission requests and modes
through ``agents/``'s own translation, so an old session's page and ``/events`` show
``mode_changed``, ``old_text``/``new_text`` and ``modes.available`` like a new one's.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.private_files import ensure_private_dir
from qwen_daemon.sessions.migrations import MIGRATIONS, daemon_vocabulary
from qwen_daemon.sessions.store import Store
from tests.support.daemon import fake_settings, running_daemon

pytestmark = pytest.mark.timeout(60)

ACP_MODES = {
    "currentModeId": "plan",
    "availableModes": [
        {"id": "default", "name": "Default", "description": "Ask before edits"},
        {"id": "plan", "name": "Plan", "description": "Read only"},
    ],
}
DIFF_BEFORE = {"type": "diff", "path": "/w/a.txt", "oldText": "old\n", "newText": "new\n"}
DIFF_AFTER = {"type": "diff", "path": "/w/a.txt", "old_text": "old\n", "new_text": "new\n"}
TOOL_BEFORE = {
    "tool_call_id": "t1",
    "title": "Edit a.txt",
    "kind": "edit",
    "status": "pending",
    "content": [DIFF_BEFORE],
    "locations": [{"path": "/w/a.txt", "line": None}],
    "raw_input": {"file_path": "/w/a.txt", "oldString": "old"},
}
REQUEST_BEFORE = {
    "request_id": "r1",
    "tool_call": TOOL_BEFORE,
    "options": [{"option_id": "proceed_once", "name": "Allow", "kind": "allow_once"}],
    "created_at": "2026-01-01T00:00:02.000Z",
}

#: a session's events as the version before issue 16 stored them
OLD_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("state", {"state": "idle"}),
    ("user_message", {"text": "edit it", "prompt_id": "p1"}),
    ("turn_started", {"prompt_id": "p1"}),
    ("agent_update", {"update": {"sessionUpdate": "current_mode_update", "currentModeId": "plan"}}),
    (
        "agent_update",
        {"update": {"method": "qwen/notify/session/mode-update", "params": {"currentModeId": "plan"}}},
    ),
    ("agent_update", {"update": {"sessionUpdate": "available_commands_update", "availableCommands": []}}),
    ("tool_call", TOOL_BEFORE),
    ("permission_request", REQUEST_BEFORE),
    ("permission_resolved", {"request_id": "r1", "option_id": "proceed_once"}),
    ("tool_call_update", {"tool_call_id": "t1", "status": "completed", "content": [DIFF_BEFORE]}),
    ("agent_message_chunk", {"text": "done"}),
    ("turn_ended", {"prompt_id": "p1", "stop_reason": "end_turn"}),
]


def write_old_database(path: Path) -> None:
    """A schema-4 database (the last before issue 16) holding one session in the old shapes."""
    ensure_private_dir(path.parent)
    db = sqlite3.connect(path)
    for number, step in enumerate(MIGRATIONS[:4], start=1):
        db.executescript(f"BEGIN;\n{step}\nPRAGMA user_version={number};\nCOMMIT;")
    db.execute(
        "INSERT INTO sessions VALUES ('s1', '/w', 'Old', 'qwen', 'a-1', 'plan', 'idle', NULL,"
        " '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:03.000Z', NULL, 0, ?)",
        (json.dumps(ACP_MODES),),
    )
    for seq, (type_, fields) in enumerate(OLD_EVENTS, start=1):
        ts = f"2026-01-01T00:00:0{min(seq, 9)}.000Z"
        payload = json.dumps({"seq": seq, "type": type_, "ts": ts, **fields}, separators=(",", ":"))
        db.execute("INSERT INTO events VALUES ('s1', ?, ?, ?, ?)", (seq, type_, ts, payload))
    db.execute(
        "INSERT INTO permissions VALUES ('s1', 'r1', ?, 'answered')",
        (json.dumps(REQUEST_BEFORE),),
    )
    db.commit()
    db.close()
    os.chmod(path, 0o600)


def check_new_vocabulary(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(OLD_EVENTS) + 1))
    by_seq = {e["seq"]: e for e in events}
    assert by_seq[4]["type"] == "mode_changed" and by_seq[4]["mode_id"] == "plan"
    assert by_seq[5]["type"] == "agent_update" and by_seq[5]["method"] == "qwen/notify/session/mode-update"
    assert by_seq[6]["type"] == "commands_changed" and by_seq[6]["commands"] == []
    assert by_seq[7]["content"] == [DIFF_AFTER]
    assert by_seq[7]["raw_input"] == TOOL_BEFORE["raw_input"]  # the tool's own arguments, as sent
    assert by_seq[8]["tool_call"]["content"] == [DIFF_AFTER]
    assert by_seq[10]["content"] == [DIFF_AFTER]
    assert by_seq[1]["ts"] == "2026-01-01T00:00:01.000Z"  # numbering and times kept
    text = json.dumps([e for e in events if e["type"] != "agent_update"])  # notifications: the agent's
    for acp_name in ("sessionUpdate", "currentModeId", "oldText", "newText", "availableCommands"):
        assert acp_name not in text


def test_the_migration_rewrites_old_shapes_and_leaves_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sessions.db"
    write_old_database(path)
    store = Store(path)
    try:
        [record] = store.sessions()
        assert record.modes == {
            "available": [
                {"id": "default", "name": "Default", "description": "Ask before edits"},
                {"id": "plan", "name": "Plan", "description": "Read only"},
            ],
            "current_mode_id": "plan",
        }
        check_new_vocabulary([json.loads(row[3]) for row in store.events("s1")])
        assert [row[1] for row in store.events("s1")][3] == "mode_changed"  # the type column too
        [request] = store.permissions("s1", "answered")
        assert request["tool_call"]["content"] == [DIFF_AFTER]
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    before = db.execute("SELECT * FROM events ORDER BY seq").fetchall()
    db.execute("BEGIN")
    daemon_vocabulary(db)  # once more, on rows already in the new shape: nothing changes
    db.execute("COMMIT")
    assert db.execute("SELECT * FROM events ORDER BY seq").fetchall() == before
    db.close()


async def test_an_old_session_replays_in_the_new_vocabulary(tmp_path: Path) -> None:
    settings = fake_settings(tmp_path)
    write_old_database(settings.paths.database)

    async def main() -> None:
        async with running_daemon(settings) as api:
            detail = (await api.call("GET", "/api/sessions/s1")).body
            assert detail["mode"] == "plan" and detail["modes"]["current_mode_id"] == "plan", detail
            assert [m["id"] for m in detail["modes"]["available"]] == ["default", "plan"]
            agents = (await api.call("GET", "/api/agents")).body["agents"]
            qwen = next(a for a in agents if a["name"] == "qwen")
            assert [m["id"] for m in qwen["modes"]] == ["default", "plan"]
            check_new_vocabulary(await api.events("s1"))

    await main()

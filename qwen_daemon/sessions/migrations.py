"""The database's schema, one migration at a time (see ``Store``): each is applied once, in order,
in its own transaction, and recorded in ``PRAGMA user_version``. Append; never edit a released one.

A migration is SQL, or a function given the connection inside that transaction when rows must be
rewritten by Python (the event vocabulary of issue 16 is translated by ``agents/``'s functions,
not re-spelled in SQL).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from qwen_daemon.agents.translate import modes_of, upgrade_event
from qwen_daemon.jsontext import dumps

Migration = str | Callable[[sqlite3.Connection], None]

#: the event types older versions stored (partly) in ACP's naming
_OLD_SHAPES = (
    "agent_update",
    "tool_call",
    "tool_call_update",
    "agent_message_chunk",
    "agent_thought_chunk",
    "plan",
    "permission_request",
)


def daemon_vocabulary(db: sqlite3.Connection) -> None:
    """Events, pending permission requests and session modes stored before issue 16, in today's
    vocabulary: an old session replays as a new one does (``mode_changed``, snake_case nested
    data) and clients need to know one naming scheme only. Rows already in it are left alone."""
    marks = ",".join("?" for _ in _OLD_SHAPES)
    rows = db.execute(
        f"SELECT session_id, seq, type, payload FROM events WHERE type IN ({marks})",  # noqa: S608 (placeholders)
        _OLD_SHAPES,
    ).fetchall()
    for session_id, seq, old_type, payload in rows:
        try:
            data = json.loads(payload)
        except ValueError:
            continue  # damaged text stays as it was: replay skips nothing it could show before
        if not isinstance(data, dict):
            continue
        head = {k: data.pop(k) for k in ("seq", "type", "ts") if k in data}
        new_type, fields = upgrade_event(old_type, data)
        text = dumps({**head, "type": new_type, **fields})
        if new_type != old_type or text != payload:
            db.execute(
                "UPDATE events SET type = ?, payload = ? WHERE session_id = ? AND seq = ?",
                (new_type, text, session_id, seq),
            )
    for session_id, request_id, payload in db.execute(
        "SELECT session_id, request_id, payload FROM permissions"
    ).fetchall():
        try:
            request = json.loads(payload)
        except ValueError:
            continue
        if isinstance(request, dict):
            _, upgraded = upgrade_event("permission_request", request)
            db.execute(
                "UPDATE permissions SET payload = ? WHERE session_id = ? AND request_id = ?",
                (json.dumps(upgraded), session_id, request_id),
            )
    for session_id, text in db.execute("SELECT id, modes FROM sessions WHERE modes IS NOT NULL").fetchall():
        try:
            modes = modes_of(json.loads(text))
        except ValueError:
            modes = None
        db.execute(
            "UPDATE sessions SET modes = ? WHERE id = ?",
            (json.dumps(modes) if modes is not None else None, session_id),
        )


MIGRATIONS: list[Migration] = [
    # 1: the first release
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        cwd TEXT NOT NULL,
        title TEXT NOT NULL,
        agent TEXT NOT NULL,
        agent_session_id TEXT,
        mode TEXT,
        state TEXT NOT NULL,
        failure TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        closed_at REAL
    );
    CREATE TABLE events (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        ts TEXT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE permissions (
        session_id TEXT NOT NULL,
        request_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (session_id, request_id)
    ) WITHOUT ROWID;
    """,
    # 2: archiving (issue 13), and the agent's modes kept so a restarted daemon can offer them
    # before the agent runs again
    """
    ALTER TABLE sessions ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN modes TEXT;
    """,
    # 3: devices (issue 15): each browser logged in by the token or a pairing code holds its own
    # credential; only a hash of it is stored
    """
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL
    );
    """,
    # 4: Web Push subscriptions (issue 15); device_id is NULL for one made with the bearer token
    """
    CREATE TABLE push_subscriptions (
        id TEXT PRIMARY KEY,
        device_id TEXT,
        endpoint TEXT NOT NULL UNIQUE,
        p256dh TEXT NOT NULL,
        auth TEXT NOT NULL,
        expiration_time REAL,
        created_at TEXT NOT NULL
    );
    """,
    # 5: events, permission requests and modes in the daemon's own vocabulary (issue 16)
    daemon_vocabulary,
]

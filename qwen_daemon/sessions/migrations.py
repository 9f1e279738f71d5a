"""The database's schema, one migration at a time (see ``Store``): each is applied once, in order,
in its own transaction, and recorded in ``PRAGMA user_version``. Append; never edit a released one.
"""

MIGRATIONS: list[str] = [
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
]

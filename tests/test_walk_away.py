"""Review fixes to issue 13 (sessions that never close): the session limit counts only the
working list, a lost conversation keeps its mode, a rename or archive reaches open pages as an
event, and the CLI's ``--answer`` index is checked as a plain number.

In-process daemons with the scripted fake agent (a real subprocess), as in test_lifecycle.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.cli.sessions import _answers
from tests.support.daemon import Api, fake_settings
from tests.test_lifecycle import listed, runs, turn

pytestmark = pytest.mark.timeout(120)


async def test_the_limit_counts_unarchived_open_sessions_and_archiving_makes_room(tmp_path: Path) -> None:
    """Nothing closes a session any more: counting every one reached ``max_sessions`` for good."""

    async def body(api: Api, ws: Path) -> None:
        one, two = (await api.create(ws))["id"], (await api.create(ws))["id"]
        refused = await api.call("POST", "/api/sessions", {"cwd": str(ws)})
        assert refused.status == 429, refused.body
        message = refused.body["error"]["message"]
        assert "delete or archive one first" in message and "close" not in message, message
        assert (await api.call("PATCH", f"/api/sessions/{one}", {"archived": True})).status == 200
        three = (await api.create(ws))["id"]  # the archived one no longer counts
        assert await listed(api) == [two, three]
        # prompting the archived one unarchives it: never refused, though the list is then over
        assert (await turn(api, one, "say back"))["stop_reason"] == "end_turn"
        assert sorted(await listed(api)) == sorted([one, two, three])
        assert (await api.call("POST", "/api/sessions", {"cwd": str(ws)})).status == 429
        await api.call("PATCH", f"/api/sessions/{two}", {"archived": True})
        await api.call("PATCH", f"/api/sessions/{three}", {"archived": True})
        assert (await api.call("POST", "/api/sessions", {"cwd": str(ws)})).status == 201

    await runs(tmp_path, body, settings=[fake_settings(tmp_path, max_sessions=2)])


async def test_a_lost_conversation_keeps_the_sessions_mode_and_says_so(tmp_path: Path) -> None:
    """Without FAKE_AGENT_HISTORY_DIR the restarted agent cannot load its conversation: the daemon
    continues in a new agent session, which starts in "default"; the user's "plan" is re-applied."""
    sid = ""

    async def make(api: Api, ws: Path) -> None:
        nonlocal sid
        sid = (await api.create(ws, mode="plan"))["id"]

    async def restarted(api: Api, ws: Path) -> None:
        before = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert before["mode"] == "plan", before
        assert (await turn(api, sid, "say hi"))["stop_reason"] == "end_turn"
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["mode"] == "plan" and detail["modes"]["current_mode_id"] == "plan", detail
        events = await api.events(sid, before["last_seq"])
        lost = next(e["seq"] for e in events if e["type"] == "error" and "could not restore" in e["message"])
        modes = [e["mode_id"] for e in events if e["type"] == "mode_changed"]
        assert modes and modes[-1] == "plan" and "default" not in modes, events
        assert all(e["seq"] > lost for e in events if e["type"] == "mode_changed"), events
        assert api.daemon.manager.get(sid).host.pid is not None

    async def again(api: Api, ws: Path) -> None:
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["mode"] == "plan"

    await runs(tmp_path, make, restarted, again)


async def test_a_rename_or_archive_is_an_event_for_open_pages(tmp_path: Path) -> None:
    """PATCH (from another tab or the CLI) and a prompt that unarchives emit ``session_updated``."""

    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws, title="first"))["id"]
        start = (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"]
        await api.call("PATCH", f"/api/sessions/{sid}", {"title": "second"})
        await api.call("PATCH", f"/api/sessions/{sid}", {"archived": True})
        await turn(api, sid, "say back")
        updates = [
            {k: e[k] for k in ("title", "archived")}
            for e in await api.events(sid, start)
            if e["type"] == "session_updated"
        ]
        assert updates == [
            {"title": "second", "archived": False},
            {"title": "second", "archived": True},
            {"title": "second", "archived": False},
        ], updates
        schema: Any = (await api.call("GET", "/api/openapi.json")).body
        assert "session_updated" in schema["components"]["schemas"]["Event"]["discriminator"]["mapping"]

    await runs(tmp_path, body)


@pytest.mark.parametrize("pair", ["²=SQLite", "٣=SQLite", "-1=SQLite", "x=SQLite", "1.0=A", "=A", "A"])
def test_cli_answer_index_must_be_a_plain_number(pair: str) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` raises: the user saw a Python message."""
    with pytest.raises(ValueError) as caught:
        _answers([pair], [{"question": "Which DB?", "multi_select": False}])
    message = str(caught.value)
    assert message.startswith(f"--answer {pair!r}:") and "e.g. --answer 0=SQLite" in message, message
    assert "invalid literal" not in message


def test_cli_answers_group_by_index() -> None:
    questions = [{"multi_select": False}, {"multi_select": True}]
    got = _answers(["0=SQLite", "1=A", " 1 =B", "01=C"], questions)
    assert got == {"0": "SQLite", "1": ["A", "B", "C"]}

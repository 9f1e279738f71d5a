"""End to end: the daemon hosting the real, pinned Qwen Code against a fake OpenAI-compatible server.

The agent is found the way a user's daemon finds it (no ``--agent-cmd``: the pinned copy that
``make install`` puts in the virtualenv), talks only to the fake server on 127.0.0.1, and its
settings make every edit ask permission.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.agents.credentials import HINT, find_credentials
from qwen_daemon.agents.registry import pinned_qwen_cli
from qwen_daemon.config import Paths, Settings
from tests.support.daemon import Api, running_daemon
from tests.support.fake_openai import FakeOpenAI, serving_fake_openai, text, write_file
from tests.support.qwen import AGENT_ENV, prepare_qwen_home
from tests.test_translate import ACP_NAMES

pytestmark = [pytest.mark.qwen, pytest.mark.timeout(180)]


@pytest.fixture
async def fake_llm(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    if not pinned_qwen_cli().is_file():
        pytest.fail(f"the pinned Qwen Code is not installed at {pinned_qwen_cli()}; run `make install`")
    async with serving_fake_openai() as fake:  # on the test's loop: the tests only await
        env = prepare_qwen_home(isolated_home, fake.base_url)
        for name in AGENT_ENV:
            monkeypatch.setenv(name, env[name])
        yield fake


def agent_text(events: list[dict[str, Any]], after: int) -> str:
    return "".join(e["text"] for e in events if e["seq"] > after and e["type"] == "agent_message_chunk")


async def run_turn(api: Api, sid: str, prompt: str) -> int:
    """Send a prompt; returns the seq before it, so callers can look at just this turn."""
    before = (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"]
    reply = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": prompt})
    assert reply.status == 202, reply.body
    return int(before)


async def turn_end(api: Api, sid: str, after: int) -> dict[str, Any]:
    event = await api.wait_event(sid, lambda e: e["seq"] > after and e["type"] == "turn_ended", timeout=90)
    await api.wait_state(sid, "idle")
    return event


async def answer_permission(api: Api, sid: str, after: int, option: str) -> dict[str, Any]:
    request = await api.wait_event(
        sid, lambda e: e["seq"] > after and e["type"] == "permission_request", timeout=90
    )
    options = [o["option_id"] for o in request["options"]]
    assert {"proceed_once", "cancel"} <= set(options), options
    url = f"/api/sessions/{sid}/permissions/{request['request_id']}"
    reply = await api.call("POST", url, {"option_id": option})
    assert reply.status == 200, reply.body
    return request


def without_agent_data(value: Any) -> Any:
    """``value`` minus what is the agent's own (a tool's arguments and result, ``meta``)."""
    if isinstance(value, dict):
        opaque = ("raw_input", "raw_output", "meta")
        return {k: without_agent_data(v) for k, v in value.items() if k not in opaque}
    if isinstance(value, list):
        return [without_agent_data(v) for v in value]
    return value


def assert_daemon_vocabulary(events: list[dict[str, Any]]) -> None:
    """Everything real Qwen Code sent arrived translated: no update left untranslated, no ACP name."""
    for event in events:
        if event["type"] == "agent_update":
            assert "update" not in event, event  # a session/update kind no table knows
        else:
            assert not ACP_NAMES.search(json.dumps(without_agent_data(event))), event
    diffs = [
        item
        for e in events
        if e["type"] in ("tool_call", "tool_call_update")
        for item in e.get("content") or []
        if item.get("type") == "diff"
    ]
    assert diffs and all("new_text" in d and "path" in d for d in diffs), diffs


async def test_real_qwen_streams_and_asks_permission(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()
    allowed, rejected = workspace / "allowed.txt", workspace / "rejected.txt"

    async def main() -> None:
        settings = Settings(paths=Paths.from_platform(), port=0)
        async with running_daemon(settings) as api:
            created = await api.call("POST", "/api/sessions", {"cwd": str(workspace)})
            assert created.status == 201, created.body
            sid = created.body["id"]

            fake_llm.queue(text("Hello from the fake model, streamed in pieces.", pieces=4))
            before = await run_turn(api, sid, "Say hello")
            ended = await turn_end(api, sid, before)
            assert ended["stop_reason"] == "end_turn"
            events = await api.events(sid)
            assert agent_text(events, before) == "Hello from the fake model, streamed in pieces."
            assert len([e for e in events if e["seq"] > before and e["type"] == "agent_message_chunk"]) >= 2

            fake_llm.queue(write_file(str(allowed), "alpha\n"), text("Wrote it."))
            before = await run_turn(api, sid, "Create allowed.txt")
            request = await answer_permission(api, sid, before, "proceed_once")
            assert request["tool_call"]["kind"] == "edit"
            await turn_end(api, sid, before)
            assert allowed.read_text() == "alpha\n"
            events = await api.events(sid)
            assert any(
                e["type"] == "tool_call_update" and e.get("status") == "completed"
                for e in events
                if e["seq"] > before
            )

            fake_llm.queue(write_file(str(rejected), "beta\n"), text("Fine, I will not."))
            before = await run_turn(api, sid, "Create rejected.txt")
            await answer_permission(api, sid, before, "cancel")
            # a rejection ends the turn as a normal end (the fake agent copies this), not "cancelled"
            assert (await turn_end(api, sid, before))["stop_reason"] == "end_turn"
            assert not rejected.exists()
            assert fake_llm.main_requests  # everything the agent asked went to the fake server
            events = await api.events(sid)
            assert_daemon_vocabulary(events)
            assert any(e["type"] == "commands_changed" and e["commands"] for e in events)

            agent_pid = api.daemon.manager.pool.hosts[("qwen", os.path.realpath(workspace))].pid
        assert agent_pid is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(agent_pid, 0)  # the whole agent process group is gone after shutdown

    await main()


async def test_real_qwen_without_credentials_is_a_clear_error(tmp_path: Path, isolated_home: Path) -> None:
    if not pinned_qwen_cli().is_file():
        pytest.fail(f"the pinned Qwen Code is not installed at {pinned_qwen_cli()}; run `make install`")
    workspace = tmp_path / "project"
    workspace.mkdir()
    assert find_credentials() is None  # what `start` would have said, in one line

    async def main() -> None:
        async with running_daemon(Settings(paths=Paths.from_platform(), port=0)) as api:
            reply = await api.call("POST", "/api/sessions", {"cwd": str(workspace)})
            assert reply.status == 502, reply.body
            message = reply.body["error"]["message"]
            assert "Authentication required" in message
            assert message.endswith(HINT)  # the agent's words, then how to give it credentials
            sid = reply.body["error"]["session_id"]
            detail = (await api.call("GET", f"/api/sessions/{sid}")).body
            assert detail["state"] == "failed" and detail["failure"] == message
            events = await api.events(sid)
            assert any(e["type"] == "error" and e["message"] == message for e in events)
            assert (await api.call("GET", "/health")).status == 200

    await main()


async def test_real_qwen_conversation_survives_a_daemon_restart(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()
    settings = Settings(paths=Paths.from_platform(), port=0)

    async def main() -> None:
        async with running_daemon(settings) as api:
            sid = (await api.create(workspace))["id"]
            fake_llm.queue(text("Noted."))
            before = await run_turn(api, sid, "Remember the word PAPAYA-7391 for later.")
            await turn_end(api, sid, before)
            first_instance = api.daemon.instance_id

        async with running_daemon(settings) as api:
            assert api.daemon.instance_id != first_instance
            listed = (await api.call("GET", "/api/sessions")).body["sessions"]
            assert [s["id"] for s in listed] == [sid]
            fake_llm.queue(text("The word was PAPAYA-7391."))
            before = await run_turn(api, sid, "Which word did I ask you to remember?")
            ended = await turn_end(api, sid, before)
            assert ended["stop_reason"] == "end_turn"
            new = [e for e in await api.events(sid) if e["seq"] > before]
            assert not any(e["type"] == "error" for e in new), new
            assert agent_text(new, before) == "The word was PAPAYA-7391."
            every = await api.events(sid)
            assert [e["text"] for e in every if e["type"] == "user_message"] == [
                "Remember the word PAPAYA-7391 for later.",
                "Which word did I ask you to remember?",
            ]
            # the agent's replay of its history (session/load) was not added to the transcript again
            assert agent_text(every, 0) == "Noted.The word was PAPAYA-7391."
        last = fake_llm.main_requests[-1]
        sent = json.dumps(last["messages"])
        assert "PAPAYA-7391" in sent and "Which word did I ask you to remember?" in sent

    await main()


async def test_real_qwen_killed_mid_turn_recovers(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()

    async def main() -> None:
        async with running_daemon(Settings(paths=Paths.from_platform(), port=0)) as api:
            sid = (await api.create(workspace))["id"]
            fake_llm.queue(text("Noted."))
            await turn_end(api, sid, await run_turn(api, sid, "The code word is MANGO-2207."))
            fake_llm.queue(text("a slow reply " * 40, pieces=40, delay=0.25))
            before = await run_turn(api, sid, "Write a long answer")
            await api.wait_event(sid, lambda e: e["seq"] > before and e["type"] == "agent_message_chunk")
            host = api.daemon.manager.get(sid).host
            assert host.pid is not None
            os.kill(host.pid, signal.SIGKILL)
            ended = await turn_end(api, sid, before)
            assert ended["stop_reason"] == "error"
            events = [e for e in await api.events(sid) if e["seq"] > before]
            assert any(e["type"] == "error" for e in events)

            fake_llm.queue(text("It was MANGO-2207."))
            before = await run_turn(api, sid, "What was the code word?")
            assert (await turn_end(api, sid, before))["stop_reason"] == "end_turn"
            assert agent_text(await api.events(sid), before) == "It was MANGO-2207."
        sent = json.dumps(fake_llm.main_requests[-1]["messages"])
        assert "MANGO-2207" in sent  # the restarted agent restored the conversation

    await main()


async def test_real_qwen_modes_per_session_and_a_warm_spare(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    """Qwen Code's own modes, chosen per session; a closed workspace's agent serves the next one,
    and an agent warmed on demand serves the first session in its workspace."""
    workspace = tmp_path / "project"
    workspace.mkdir()

    async def main() -> None:
        async with running_daemon(Settings(paths=Paths.from_platform(), port=0, spare_agents=1)) as api:
            planned = await api.create(workspace, agent="qwen", mode="plan")
            assert planned["agent"] == "qwen" and planned["mode"] == "plan"
            offered = {m["id"] for m in planned["modes"]["available"]}
            assert {"plan", "default", "auto-edit"} <= offered, offered
            reply = await api.call("POST", f"/api/sessions/{planned['id']}/mode", {"mode_id": "auto-edit"})
            assert reply.status == 200 and reply.body["mode"] == "auto-edit"
            (qwen,) = [
                a for a in (await api.call("GET", "/api/agents")).body["agents"] if a["name"] == "qwen"
            ]
            assert {m["id"] for m in qwen["modes"]} == offered
            manager = api.daemon.manager
            pid = manager.get(planned["id"]).host.pid
            assert (await api.call("DELETE", f"/api/sessions/{planned['id']}")).status == 204
            again = await api.create(workspace)
            assert manager.get(again["id"]).host.pid == pid
            assert again["mode"] == "default"
            fake_llm.queue(text("still here"))
            before = await run_turn(api, again["id"], "hello")
            await turn_end(api, again["id"], before)
            assert "still here" in agent_text(await api.events(again["id"]), before)

            # warmed on demand (as the dashboard does when a workspace is chosen), then used
            other = tmp_path / "other"
            other.mkdir()
            warm = await api.call("POST", "/api/agents/qwen/warm", {"cwd": str(other)})
            assert warm.status == 202 and warm.body["pid"], warm.body
            there = await api.create(other)
            assert manager.get(there["id"]).host.pid == warm.body["pid"]
            assert there["state"] == "idle"

    await main()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_real_qwen_idle_agent_sleeps_and_wakes_with_its_conversation_and_mode(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    """Walking away must not close the session (issue 13). With a short agent_idle_timeout Qwen
    Code is stopped; the session stays open and idle, and the next prompt starts the agent again,
    which loads the conversation (the fake LLM sees the earlier turn) and is given the session's
    mode back: in auto-edit the write below runs without asking, where the default mode would."""
    workspace = tmp_path / "project"
    workspace.mkdir()
    target = workspace / "woken.txt"

    async def main() -> None:
        settings = Settings(paths=Paths.from_platform(), port=0, agent_idle_timeout=1.0, spare_agents=0)
        async with running_daemon(settings) as api:
            sid = (await api.create(workspace, mode="auto-edit"))["id"]
            fake_llm.queue(text("Noted."))
            await turn_end(api, sid, await run_turn(api, sid, "Remember the word KIWI-4411 for later."))
            host = api.daemon.manager.get(sid).host
            first_pid = host.pid
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            assert first_pid is not None
            while host.running or group_alive(first_pid):  # really stopped, its whole process group
                assert loop.time() < deadline, "the idle agent was never put to sleep"
                await asyncio.sleep(0.05)
            detail = (await api.call("GET", f"/api/sessions/{sid}")).body
            assert detail["state"] == "idle" and detail["mode"] == "auto-edit", detail

            fake_llm.queue(write_file(str(target), "awake\n"), text("The word was KIWI-4411."))
            before = await run_turn(api, sid, "Which word did I ask you to remember? Also write woken.txt.")
            ended = await turn_end(api, sid, before)
            assert ended["stop_reason"] == "end_turn"
            new = [e for e in await api.events(sid) if e["seq"] > before]
            assert not any(e["type"] in ("error", "permission_request") for e in new), new
            assert agent_text(new, before) == "The word was KIWI-4411."
            assert target.read_text() == "awake\n"
            assert host.running and host.pid != first_pid
            detail = (await api.call("GET", f"/api/sessions/{sid}")).body
            assert detail["mode"] == "auto-edit" and detail["modes"]["current_mode_id"] == "auto-edit", detail
            woken = [e["text"] for e in await api.events(sid) if e["type"] == "user_message"]
            assert woken == [
                "Remember the word KIWI-4411 for later.",
                "Which word did I ask you to remember? Also write woken.txt.",
            ]  # the agent's replay of its history was not added to the transcript again
        sent = json.dumps(fake_llm.main_requests[-1]["messages"])
        assert "KIWI-4411 for later" in sent and "Which word did I ask you to remember?" in sent

    await main()

"""The fake agent's command language and process behaviour (harness: tests/support/fake_agent_harness)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from pathlib import Path

import acp
import pytest
from acp.schema import ClientCapabilities

from tests.support.fake_agent_harness import DEADLINE, fake_agent

#: a fake agent that hangs fails its test within this bound (the harness once wrapped each in wait_for)
pytestmark = pytest.mark.timeout(25)


@pytest.mark.timeout(30)
async def test_initialize_and_new_session() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            init = await h.conn.initialize(protocol_version=1, client_capabilities=ClientCapabilities())
            assert init.protocol_version == 1
            assert init.agent_capabilities is not None and init.agent_capabilities.load_session is True
            assert init.agent_info is not None and init.agent_info.name == "fake-agent"
            match = await h.stderr_line(r"fake-agent: started pid=(\d+)")
            assert int(match[1]) == h.proc.pid
            session = await h.conn.new_session(cwd="/tmp", mcp_servers=[])
            assert re.fullmatch(rf"fake-1-{h.proc.pid}", session.session_id)
            assert session.modes is not None and session.modes.current_mode_id == "default"
            assert [m.id for m in session.modes.available_modes] == ["default", "plan"]
            assert (await h.new_session()) == f"fake-2-{h.proc.pid}"

    await main()


@pytest.mark.timeout(30)
async def test_exit_at_start() -> None:
    async def main() -> None:
        async with fake_agent(FAKE_AGENT_EXIT_AT_START="1") as h:
            assert await asyncio.wait_for(h.proc.wait(), DEADLINE) == 7
            with pytest.raises(ConnectionError):
                await h.conn.initialize(protocol_version=1)

    await main()


@pytest.mark.timeout(30)
async def test_auth_required() -> None:
    async def main() -> None:
        async with fake_agent(FAKE_AGENT_AUTH_REQUIRED="1") as h:
            with pytest.raises(acp.RequestError) as info:
                await h.start()
            assert info.value.code == -32000 and str(info.value) == "Authentication required"

    await main()


@pytest.mark.timeout(30)
async def test_say_think_stream_usage_echo() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            script = "say hello big world\nthink pondering\n\nstream 3 5\nhello there\nusage"
            response = await h.prompt(sid, script)
            assert response.stop_reason == "end_turn"
            chunks = [
                u.content.text for s, u in h.client.updates if u.session_update == "agent_message_chunk"
            ]
            assert chunks == [
                "hello ",
                "big ",
                "world",
                "chunk 1\n",
                "chunk 2\n",
                "chunk 3\n",
                "echo: hello there",
                "",
            ]
            assert h.client.text(sid, "agent_thought_chunk") == "pondering"

    await main()


@pytest.mark.timeout(30)
async def test_tool_plan_mode_and_stderr() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            await h.prompt(sid, "tool execute ls -la\nplan read;edit ; test\nmode plan\nstderr hello stderr")
            updates = [u for _, u in h.client.updates]
            start, progress, done, plan, mode = updates
            assert (
                start.session_update == "tool_call" and start.kind == "execute" and start.status == "pending"
            )
            assert start.title == "ls -la"
            assert progress.tool_call_id == start.tool_call_id and progress.status == "in_progress"
            assert done.status == "completed" and done.content[0].content.text == "execute done: ls -la"
            assert [(e.content, e.status, e.priority) for e in plan.entries] == [
                ("read", "pending", "medium"),
                ("edit", "pending", "medium"),
                ("test", "pending", "medium"),
            ]
            assert mode.session_update == "current_mode_update" and mode.current_mode_id == "plan"
            await h.stderr_line("hello stderr")

    await main()


@pytest.mark.timeout(30)
async def test_set_mode() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            await h.conn.set_session_mode(session_id=sid, mode_id="plan")
            await h.client.wait_until(lambda: h.client.kinds(sid) == ["current_mode_update"])
            assert h.client.updates[0][1].current_mode_id == "plan"
            with pytest.raises(acp.RequestError) as info:
                await h.conn.set_session_mode(session_id=sid, mode_id="yolo")
            assert info.value.code == -32602

    await main()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", ["wait", "sleep 20000", "stream 1000 20", "say a\nwait\nsay b"])
async def test_cancel_interrupts_promptly(script: str) -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            prompt = asyncio.create_task(h.prompt(sid, "say started\n" + script))
            await h.client.wait_until(lambda: h.client.text(sid).startswith("started"))
            cancelled_at = time.monotonic()
            await h.conn.cancel(session_id=sid)
            response = await prompt
            elapsed = time.monotonic() - cancelled_at
            assert response.stop_reason == "cancelled"
            assert elapsed < 1.0, elapsed  # typically a few ms
            assert "b" not in h.client.text(sid)
            assert (await h.prompt(sid, "say again")).stop_reason == "end_turn"

    await main()


@pytest.mark.timeout(30)
async def test_second_prompt_cancels_running_turn() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            first = asyncio.create_task(h.prompt(sid, "say one\nwait"))
            await h.client.wait_until(lambda: h.client.text(sid) == "one")
            second = await h.prompt(sid, "say two")
            assert (await first).stop_reason == "cancelled"
            assert second.stop_reason == "end_turn"
            assert h.client.text(sid) == "onetwo"

    await main()


@pytest.mark.timeout(30)
async def test_sessions_run_concurrently() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            a = await h.start()
            b = await h.new_session()
            blocked = asyncio.create_task(h.prompt(a, "say waiting\nwait"))
            await h.client.wait_until(lambda: h.client.text(a) == "waiting")
            assert (await h.prompt(b, "say meanwhile")).stop_reason == "end_turn"
            assert not blocked.done()
            await h.conn.cancel(session_id=a)
            assert (await blocked).stop_reason == "cancelled"

    await main()


@pytest.mark.timeout(30)
async def test_load_session_replays_history() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            await h.conn.set_session_mode(session_id=sid, mode_id="plan")
            await h.prompt(sid, "say hi there")
            await h.prompt(sid, "hello")
            h.client.updates.clear()
            loaded = await h.conn.load_session(cwd="/tmp", session_id=sid, mcp_servers=[])
            assert loaded.modes is not None and loaded.modes.current_mode_id == "default"
            replay = [(u.session_update, u.content.text) for _, u in h.client.updates]
            assert replay == [
                ("user_message_chunk", "say hi there"),
                ("agent_message_chunk", "hi there"),
                ("user_message_chunk", "hello"),
                ("agent_message_chunk", "echo: hello"),
            ]
            with pytest.raises(acp.RequestError) as info:
                await h.conn.load_session(cwd="/tmp", session_id="fake-99-1", mcp_servers=[])
            assert info.value.code == -32002

    await main()


@pytest.mark.timeout(30)
async def test_load_session_across_processes_with_history_dir(tmp_path: Path) -> None:
    async def main() -> None:
        async with fake_agent(FAKE_AGENT_HISTORY_DIR=str(tmp_path)) as h:
            sid = await h.start()
            await h.prompt(sid, "say remembered")
        async with fake_agent(FAKE_AGENT_HISTORY_DIR=str(tmp_path)) as h:
            await h.conn.initialize(protocol_version=1)
            await h.conn.load_session(cwd="/tmp", session_id=sid, mcp_servers=[])
            assert h.client.text(sid, "user_message_chunk") == "say remembered"
            assert h.client.text(sid) == "remembered"

    await main()


@pytest.mark.timeout(30)
async def test_error_command_fails_the_prompt() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            with pytest.raises(acp.RequestError) as info:
                await h.prompt(sid, "say before\nerror model exploded\nsay after")
            assert str(info.value) == "model exploded"
            assert h.client.text(sid) == "before"
            with pytest.raises(acp.RequestError) as info:
                await h.prompt(sid, "sleep soon")
            assert info.value.code == -32602 and info.value.data == {
                "line": "sleep soon",
                "details": "invalid literal for int() with base 10: 'soon'",
            }
            assert (await h.prompt(sid, "say ok")).stop_reason == "end_turn"

    await main()


@pytest.mark.timeout(30)
async def test_big_line() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            await h.prompt(sid, "big 600\nsay done")
            raw = next(
                m
                for m in h.raw
                if m.get("params", {}).get("update", {}).get("sessionUpdate") == "available_commands_update"
            )
            size = len(json.dumps(raw, separators=(",", ":")))
            assert 590 * 1024 < size < 700 * 1024, size
            assert len(h.client.updates[0][1].available_commands) == 600
            assert h.client.text(sid) == "done"

    await main()


@pytest.mark.timeout(30)
async def test_crash_mid_turn() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            with pytest.raises(ConnectionError):
                await h.prompt(sid, "say partial\ncrash\nsay never")
            assert await asyncio.wait_for(h.proc.wait(), DEADLINE) == 3
            assert h.client.text(sid) == "partial"
            await h.stderr_line("fake-agent: crashing")

    await main()


@pytest.mark.timeout(30)
async def test_unknown_methods() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            with pytest.raises(acp.RequestError) as info:
                await h.conn.ext_method("qwen/unknown", {})
            assert info.value.code == -32601
            with pytest.raises(acp.RequestError) as info:
                await h.conn.list_sessions()
            assert info.value.code == -32601
            await h.conn.ext_notification("qwen/whatever", {})  # ignored
            assert (await h.prompt(sid, "say alive")).stop_reason == "end_turn"

    await main()


@pytest.mark.timeout(30)
async def test_qwen_style_raw_notification_and_request(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            script = (
                'notify qwen/notify/session/mode-update {"modeId": "plan"}\nrequest craft/drainMidTurnQueue'
            )
            await h.prompt(sid, script)
            # The SDK answers the unknown request with -32601 but logs the unknown notification.
            assert "Unhandled error while handling notification" in caplog.text
            raw = next(m for m in h.raw if m.get("method") == "qwen/notify/session/mode-update")
            assert raw["params"] == {"modeId": "plan"}
            assert h.client.text(sid) == "request craft/drainMidTurnQueue: error -32601 Method not found"

    await main()


@pytest.mark.timeout(30)
async def test_stdin_eof_exits_quickly() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            prompt = asyncio.create_task(h.prompt(sid, "say started\nwait"))
            await h.client.wait_until(lambda: h.client.text(sid) == "started")
            started = time.monotonic()
            await h.close_stdin()
            assert await asyncio.wait_for(h.proc.wait(), DEADLINE) == 0
            elapsed = time.monotonic() - started
            # EOF is what ends it (ignored, it would run to DEADLINE); a bound, not a speed figure:
            # 0.5 s failed once on a 2-core machine with a load average of 10
            assert elapsed < 3.0, elapsed
            with pytest.raises(ConnectionError):
                await prompt

    await main()


@pytest.mark.timeout(30)
async def test_sigterm_exits() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            await h.start()
            h.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(h.proc.wait(), DEADLINE) == -signal.SIGTERM

    await main()


@pytest.mark.timeout(30)
async def test_ignore_sigterm_needs_sigkill() -> None:
    async def main() -> None:
        async with fake_agent(FAKE_AGENT_IGNORE_SIGTERM="1") as h:
            sid = await h.start()
            h.proc.send_signal(signal.SIGTERM)
            assert (await h.prompt(sid, "say still here")).stop_reason == "end_turn"
            await h.close_stdin()
            await h.stderr_line("fake-agent: stdin closed, ignoring it")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(h.proc.wait()), 0.3)
            os.killpg(h.proc.pid, signal.SIGKILL)
            assert await asyncio.wait_for(h.proc.wait(), DEADLINE) == -signal.SIGKILL

    await main()


async def wait_pid_gone(pid: int) -> None:
    """Wait (without polling) until `pid` has terminated, using a pidfd."""
    fd = os.pidfd_open(pid)
    try:
        gone = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(fd, gone.set)
        try:
            await asyncio.wait_for(gone.wait(), DEADLINE)
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


@pytest.mark.timeout(30)
async def test_spawn_child_in_same_process_group() -> None:
    async def main() -> None:
        async with fake_agent(FAKE_AGENT_SPAWN_CHILD="1") as h:
            await h.start()
            child = int((await h.stderr_line(r"fake-agent: child pid=(\d+)"))[1])
            assert os.getpgid(child) == os.getpgid(h.proc.pid) == h.proc.pid
            os.killpg(h.proc.pid, signal.SIGKILL)
            assert await asyncio.wait_for(h.proc.wait(), DEADLINE) == -signal.SIGKILL
            with contextlib.suppress(ProcessLookupError):
                await wait_pid_gone(child)

    await main()

"""The fake agent's permission requests and questions: what real Qwen Code sends, and the turn after.

Why: the fake stands in for Qwen Code in most tests; these prove its requests are the recorded
real ones (tests/fixtures/qwen_permissions.json) with only per-call values changed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_agent_harness import fake_agent, select

#: a fake agent that hangs fails its test within this bound (the harness once wrapped each in wait_for)
pytestmark = pytest.mark.timeout(25)


def recorded_request(name: str, raw: dict[str, Any], sid: str, **tool: Any) -> dict[str, Any]:
    """The fixture's request for ``name`` (real Qwen Code's), with the fake's per-call values."""
    fixture = json.loads((Path(__file__).parent / "fixtures" / "qwen_permissions.json").read_text())
    text = json.dumps(fixture["scenarios"][name]["request"])
    request: dict[str, Any] = json.loads(text.replace("<workspace>", str(Path.cwd())))
    request["sessionId"] = sid
    request["toolCall"].update(toolCallId=raw["params"]["toolCall"]["toolCallId"], **tool)
    return request


@pytest.mark.timeout(30)
@pytest.mark.parametrize("option_id", ["proceed_once", "proceed_always"])
async def test_permission_allowed(option_id: str) -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            h.client.responder = lambda request: select(option_id)
            response = await h.prompt(sid, "permission Write foo.txt\nsay after")
            assert response.stop_reason == "end_turn"
            raw = next(m for m in h.raw if m.get("method") == "session/request_permission")
            assert raw["params"] == recorded_request("write", raw, sid, title="Write foo.txt")
            assert [o["name"] for o in raw["params"]["options"]] == ["Allow All Edits", "Allow", "Reject"]
            updates = [u for _, u in h.client.updates]
            assert updates[0].session_update == "tool_call" and updates[0].kind == "edit"
            assert updates[0].status == "pending"
            if option_id == "proceed_always":  # like Qwen: "Allow All Edits" switches to auto-edit
                mode = updates.pop(1)
                assert mode.session_update == "current_mode_update" and mode.current_mode_id == "auto-edit"
                notice = next(m for m in h.raw if m.get("method") == "qwen/notify/session/mode-update")
                assert notice["params"]["currentModeId"] == "auto-edit"
            # like Qwen: no in_progress for a permissioned tool; the completion carries the diff
            assert [u.session_update for u in updates[:3]] == [
                "tool_call",
                "tool_call_update",
                "agent_message_chunk",
            ]
            assert updates[1].session_update == "tool_call_update" and updates[1].status == "completed"
            completed = next(
                m["params"]["update"]
                for m in h.raw
                if m.get("method") == "session/update" and m["params"]["update"].get("status") == "completed"
            )
            assert completed["content"] == [
                {"type": "diff", "path": f"{Path.cwd()}/notes.txt", "oldText": "", "newText": "hello\n"}
            ]
            assert h.client.text(sid) == f"allowed {option_id}after"

    await main()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("script", "scenario", "option_id", "mode"),
    [
        ('plan-exit "# Plan\\n\\n1. Do it"', "plan_exit", "proceed_always", "auto-edit"),
        ("plan-exit Just do it", "plan_exit", "cancel", None),
        ("shell-permission rm -rf build", "shell", "proceed_once", None),
    ],
)
async def test_plan_exit_and_shell_permission_as_qwen_sends_them(
    script: str, scenario: str, option_id: str, mode: str | None
) -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            h.client.responder = lambda request: select(option_id)
            response = await h.prompt(sid, script)
            raw = next(m for m in h.raw if m.get("method") == "session/request_permission")
            tool = raw["params"]["toolCall"]
            if scenario == "plan_exit":
                plan = "# Plan\n\n1. Do it" if '"' in script else "Just do it"
                assert tool["rawInput"] == {"plan": plan}
                assert tool["content"] == [{"type": "content", "content": {"type": "text", "text": plan}}]
                expected = recorded_request(
                    scenario, raw, sid, rawInput={"plan": plan}, content=tool["content"]
                )
            else:
                assert tool["rawInput"]["command"] == "rm -rf build"
                assert raw["params"]["options"][0]["name"] == "Always Allow in project: rm *"
                expected = recorded_request(
                    scenario, raw, sid, rawInput=tool["rawInput"], title=tool["title"]
                )
                expected["options"] = raw["params"]["options"]
            assert raw["params"] == expected
            modes = [
                u.current_mode_id for _, u in h.client.updates if u.session_update == "current_mode_update"
            ]
            assert modes == ([mode] if mode else [])
            assert response.stop_reason == "end_turn"  # real Qwen Code's, a rejection included
            if option_id != "cancel":
                assert h.client.text(sid) == f"allowed {option_id}"

    await main()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("outcome", [{"outcome": "selected", "optionId": "cancel"}, {"outcome": "cancelled"}])
async def test_permission_rejected_ends_turn(outcome: dict[str, Any]) -> None:
    """Real Qwen Code fails the tool and ends the turn with end_turn (both recorded: see
    tests/record_qwen_shapes.py's write_rejected), not with cancelled."""

    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()

            async def reject(request: dict[str, Any]) -> dict[str, Any]:
                return {"outcome": outcome}

            h.client.responder = reject
            response = await h.prompt(sid, "permission Write foo.txt\nsay never said")
            assert response.stop_reason == "end_turn"  # what real Qwen Code answers (the fixture's)
            assert h.client.kinds(sid) == ["tool_call", "tool_call_update"]
            failed = h.client.updates[1][1]
            assert failed.status == "failed"
            assert failed.content[0].content.text == 'Tool "write_file" was canceled by the user.'
            assert h.client.text(sid) == ""  # the rest of the script never ran
            assert (await h.prompt(sid, "say next")).stop_reason == "end_turn"

    await main()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("script", "answers", "result"),
    [
        ("question Favourite colour?", {"0": "Red"}, "**Question**: Red"),
        (
            'question {"questions": [{"question": "Which?", "header": "Pick", "multiSelect": true, '
            '"options": [{"label": "A", "description": "a"}, {"label": "B", "description": "b"}]}]}',
            {"0": "A, B"},
            "**Pick**: A, B",
        ),
    ],
)
async def test_question_as_qwen_asks_it_echoes_top_level_answers(
    script: str, answers: dict[str, str], result: str
) -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()

            async def answer(request: dict[str, Any]) -> dict[str, Any]:
                return {"outcome": {"outcome": "selected", "optionId": "proceed_once"}, "answers": answers}

            h.client.responder = answer
            assert (await h.prompt(sid, script)).stop_reason == "end_turn"
            raw = next(m for m in h.raw if m.get("method") == "session/request_permission")
            assert "_meta" not in raw["params"]  # real Qwen Code has no top-level _meta here
            tool = raw["params"]["toolCall"]
            questions = tool["_meta"]["qwenQuestions"]
            expected = recorded_request("question", raw, sid, rawInput={"questions": questions})
            expected["toolCall"]["_meta"]["qwenQuestions"] = questions
            assert raw["params"] == expected
            assert [o["optionId"] for o in raw["params"]["options"]] == ["proceed_once", "cancel"]
            if script.startswith("question Favourite"):
                assert questions[0]["question"] == "Favourite colour?"
                assert [o["label"] for o in questions[0]["options"]] == ["Yes", "No"]
            done = h.client.updates[-2][1]
            assert done.session_update == "tool_call_update" and done.status == "completed"
            assert done.content[0].content.text == f"User has provided the following answers:\n\n{result}"
            assert h.client.text(sid) == f"answers: {json.dumps(answers)}"

    await main()


@pytest.mark.timeout(30)
async def test_cancel_abandons_pending_permission() -> None:
    async def main() -> None:
        async with fake_agent() as h:
            sid = await h.start()
            late_answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            h.client.responder = lambda request: late_answer
            prompt = asyncio.create_task(h.prompt(sid, "permission Write foo.txt\nsay never"))
            await h.client.wait_until(lambda: len(h.client.permission_requests) == 1)
            await h.conn.cancel(session_id=sid)
            assert (await prompt).stop_reason == "cancelled"
            late_answer.set_result({"outcome": {"outcome": "selected", "optionId": "proceed_once"}})
            assert (await h.prompt(sid, "say fine")).stop_reason == "end_turn"
            assert h.client.text(sid) == "fine"

    await main()

"""Web Push with the real, pinned Qwen Code: what it asks (a file write, a question) reaches a push
service on loopback as the payload a service worker shows, and the notification's "Allow once"
action answers the real request.

Why here too: the push payload's actions come from the options the agent offers; the scripted fake
agent sends the recorded shapes, but only the real agent proves the options are still those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.config import Paths, Settings
from tests.support.daemon import running_daemon
from tests.support.fake_openai import FakeOpenAI, text, tool_call, write_file
from tests.support.push_service import push_service
from tests.test_qwen_questions import QUESTIONS, fake_llm, prompt, request_after, turn_end

__all__ = ["fake_llm"]  # the fixture, used by name

pytestmark = [pytest.mark.qwen, pytest.mark.timeout(180)]


async def test_real_qwen_requests_are_pushed_and_allow_once_answers_them(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()
    key: list[str] = []

    async def main() -> None:
        async with push_service(lambda: key[0]) as push:
            settings = Settings(paths=Paths.from_platform(), port=0, push_insecure_endpoints=True)
            async with running_daemon(settings) as api:
                key.append((await api.call("GET", "/api/push/key")).body["public_key"])
                reply = await api.call("POST", "/api/push/subscriptions", push.subscribe("phone"))
                assert reply.status == 201, reply.body
                sid = (await api.create(workspace, title="Notes"))["id"]

                fake_llm.queue(write_file(str(workspace / "notes.txt"), "hi\n"), text("Written."))
                before = await prompt(api, sid, "Write notes.txt")
                request = await request_after(api, sid, before)
                [received] = await push.wait(1, timeout=60)
                note: dict[str, Any] = received.payload
                assert note["kind"] == "permission" and note["request_id"] == request["request_id"]
                assert note["url"] == f"/s/{sid}" and received.headers["Urgency"] == "high"
                offered = {o["option_id"]: o["kind"] for o in request["options"]}
                allow, deny = note["actions"]
                assert allow["title"] == "Allow once" and offered[allow["action"]] == "allow_once"
                assert deny["title"] == "Deny" and offered[deny["action"]] == "reject_once"
                # what the service worker does with "Allow once": answer with that option
                url = f"/api/sessions/{sid}/permissions/{note['request_id']}"
                assert (await api.call("POST", url, {"option_id": allow["action"]})).status == 200
                await turn_end(api, sid, before)
                assert (workspace / "notes.txt").read_text() == "hi\n"
                await push.wait(2, timeout=30)
                assert push.received[1].payload["kind"] == "turn_ended"
                assert (await api.call("GET", f"/api/sessions/{sid}")).body["mode"] != "auto-edit"

                fake_llm.queue(tool_call("ask_user_question", QUESTIONS, call_id="call_ask"), text("Ok."))
                before = await prompt(api, sid, "Ask me")
                request = await request_after(api, sid, before)
                await push.wait(3, timeout=60)
                question = push.received[2].payload
                assert question["kind"] == "permission" and question["actions"] == []  # the page answers
                assert "Which database?" in question["body"]
                await api.call("POST", f"/api/sessions/{sid}/cancel", {})

    await main()

"""Web Push end to end: a real daemon, the scripted fake agent, and a push service on loopback that
checks the VAPID JWT against ``GET /api/push/key`` and decrypts every push (tests/support/push_service.py)."""

from __future__ import annotations

import json
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from qwen_daemon.config import Paths
from qwen_daemon.push import delivery
from qwen_daemon.server.openapi import document
from tests.support.daemon import Api, fake_settings, running_daemon
from tests.support.probe import until
from tests.support.push_service import PushService, push_service
from tests.test_recovery import daemon_process, kill9, wait_dead

pytestmark = pytest.mark.timeout(90)

PAYLOAD_FIELDS = {"title", "body", "url", "tag", "kind", "session_id", "request_id", "actions"}
Body = Callable[[Api, Path, PushService], Awaitable[None]]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "RETRY_DELAYS", (0.05, 0.1))


async def run(tmp_path: Path, body: Body, **overrides: Any) -> None:
    """``body(api, workspace, push_service)`` with one subscriber already subscribed (bearer)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    key: list[str] = []

    async def main() -> None:
        async with push_service(lambda: key[0]) as push:
            settings = fake_settings(tmp_path, push_insecure_endpoints=True, **overrides)
            async with running_daemon(settings) as api:
                key.append((await api.call("GET", "/api/push/key")).body["public_key"])
                await body(api, workspace, push)

    await main()


async def subscribe(api: Api, push: PushService, name: str = "phone") -> dict[str, Any]:
    subscription = push.subscribe(name)
    reply = await api.call("POST", "/api/push/subscriptions", subscription)
    assert reply.status == 201, reply.body
    return {**subscription, "id": reply.body["id"]}


async def prompt(api: Api, sid: str, text: str) -> None:
    reply = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": text})
    assert reply.status == 202, reply.body


def only(push: PushService, kind: str) -> list[dict[str, Any]]:
    found = [r.payload for r in push.received if r.payload["kind"] == kind]
    for note in found:  # every payload is what the OpenAPI document says a service worker gets
        jsonschema.Draft202012Validator({**document(), "$ref": "#/components/schemas/PushPayload"}).validate(
            note
        )
    return found


async def test_permission_push_has_allow_once_and_deny(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path, push: PushService) -> None:
        await subscribe(api, push)
        sid = (await api.create(ws, title="Fix the build"))["id"]
        await prompt(api, sid, "permission Writing to notes.txt")
        [pending] = (await api.wait_state(sid, "awaiting_permission"))["pending_permissions"]
        [received] = await push.wait(1)
        [note] = only(push, "permission")
        assert set(note) == PAYLOAD_FIELDS
        assert note["kind"] == "permission" and note["session_id"] == sid
        assert note["request_id"] == pending["request_id"]
        assert note["url"] == f"/s/{sid}" and note["tag"] == f"{sid}:permission:{pending['request_id']}"
        assert "Fix the build" in note["title"] and "Writing to notes.txt" in note["body"]
        # never "Allow All Edits" (proceed_always): the least permissive allow, and the reject
        assert note["actions"] == [
            {"action": "proceed_once", "title": "Allow once"},
            {"action": "cancel", "title": "Deny"},
        ]
        assert received.headers["Urgency"] == "high"
        assert received.claims["sub"].startswith("mailto:")

        url = f"/api/sessions/{sid}/permissions/{pending['request_id']}"
        assert (await api.call("POST", url, {"option_id": note["actions"][0]["action"]})).status == 200
        await push.wait(2)
        [done] = only(push, "turn_ended")
        assert done["tag"] == f"{sid}:turn" and done["title"] == "Fix the build: finished"
        assert "allowed proceed_once" in done["body"] and done["actions"] == [] and done["request_id"] is None
        assert push.received[1].headers["Urgency"] == "normal"

    await run(tmp_path, body)


async def test_shell_and_plan_requests_never_offer_an_always_option(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path, push: PushService) -> None:
        await subscribe(api, push)
        sid = (await api.create(ws))["id"]
        await prompt(api, sid, "shell-permission touch x")
        [pending] = (await api.wait_state(sid, "awaiting_permission"))["pending_permissions"]
        [received] = await push.wait(1)
        assert received.payload["actions"] == [
            {"action": "proceed_once", "title": "Allow once"},
            {"action": "cancel", "title": "Deny"},
        ]
        await api.call(
            "POST", f"/api/sessions/{sid}/permissions/{pending['request_id']}", {"option_id": "cancel"}
        )
        await api.wait_state(sid, "idle")

        await prompt(api, sid, 'plan-exit "# Plan\\n\\n1. Make hello.txt"')
        await api.wait_state(sid, "awaiting_permission")
        await push.wait(3)
        plan = only(push, "permission")[-1]
        assert plan["body"] == "Plan: Plan" and "plan ready" in plan["title"]
        # proceed_once ("manually approve edits"), not restore_previous nor proceed_always
        assert [a["action"] for a in plan["actions"]] == ["proceed_once", "cancel"]

    await run(tmp_path, body)


async def test_a_question_has_no_actions_and_preview_off_hides_it(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path, push: PushService) -> None:
        await subscribe(api, push)
        sid = (await api.create(ws, title="db"))["id"]
        await prompt(api, sid, "question Use SQLite?")
        await api.wait_state(sid, "awaiting_permission")
        [received] = await push.wait(1)
        assert received.payload["kind"] == "permission" and received.payload["actions"] == []
        assert received.payload["body"] == "Use SQLite?"
        assert received.headers["Urgency"] == "high"

    await run(tmp_path, body)

    async def hidden(api: Api, ws: Path, push: PushService) -> None:
        await subscribe(api, push)
        sid = (await api.create(ws, title="db"))["id"]
        await prompt(api, sid, "question Use SQLite?")
        [pending] = (await api.wait_state(sid, "awaiting_permission"))["pending_permissions"]
        [received] = await push.wait(1)
        assert received.payload["body"] == "Session 'db' has a question for you"
        assert "SQLite" not in json.dumps(received.payload)
        await prompt_answer(api, sid, pending["request_id"], {"0": "Yes"})
        await push.wait(2)
        [done] = only(push, "turn_ended")
        assert done["body"] == "Session 'db' finished its turn"  # not the agent's words

        await prompt(api, sid, "permission Writing to secret-plans.txt")
        await api.wait_state(sid, "awaiting_permission")
        await push.wait(3)
        approval = only(push, "permission")[-1]
        assert approval["body"] == "Session 'db' needs your approval" and len(approval["actions"]) == 2
        assert "secret-plans" not in json.dumps(approval)

    await run(tmp_path, hidden, push_preview=False)


async def prompt_answer(api: Api, sid: str, request_id: str, answers: dict[str, Any]) -> None:
    url = f"/api/sessions/{sid}/permissions/{request_id}"
    reply = await api.call("POST", url, {"option_id": "proceed_once", "answers": answers})
    assert reply.status == 200, reply.body


async def test_turn_that_failed_and_one_that_was_cancelled(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path, push: PushService) -> None:
        await subscribe(api, push)
        sid = (await api.create(ws, title="t"))["id"]
        await prompt(api, sid, "wait")
        await api.wait_event(sid, lambda e: e["type"] == "turn_started")
        await api.call("POST", f"/api/sessions/{sid}/cancel")
        await api.wait_event(sid, lambda e: e["type"] == "turn_ended")
        await api.wait_state(sid, "idle")
        await prompt(api, sid, "error the model is on fire")
        [failed] = await push.wait(1)  # the cancelled turn was not pushed: someone cancelled it
        assert failed.payload["kind"] == "turn_ended" and failed.payload["title"] == "t: turn failed"
        assert "the model is on fire" in failed.payload["body"]

    await run(tmp_path, body)


async def test_a_turn_the_stop_interrupts_and_a_failed_session_are_pushed(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    key: list[str] = []

    async def main() -> None:
        async with push_service(lambda: key[0]) as push:
            settings = fake_settings(tmp_path, push_insecure_endpoints=True)
            async with running_daemon(settings) as api:
                key.append((await api.call("GET", "/api/push/key")).body["public_key"])
                await subscribe(api, push)
                sid = (await api.create(workspace, title="long job"))["id"]
                await prompt(api, sid, "wait")
                await api.wait_event(sid, lambda e: e["type"] == "turn_started")
            # the daemon stopped mid-turn, and said so before it exited
            [received] = await push.wait(1)
            assert received.payload["title"] == "long job: turn interrupted"
            assert received.payload["tag"] == f"{sid}:turn"

            async with running_daemon(settings) as api:
                assert (await api.call("GET", "/api/push/key")).body["public_key"] == key[0]
                for _ in range(3):
                    detail = (
                        await api.wait_state(sid, "idle")
                        if _ == 0
                        else (await api.call("GET", f"/api/sessions/{sid}")).body
                    )
                    if detail["state"] == "failed":
                        break
                    await prompt(api, sid, "crash")

                    def ended_after(e: dict[str, Any], last: int = detail["last_seq"]) -> bool:
                        return bool(e["seq"] > last and e["type"] == "turn_ended")

                    await api.wait_event(sid, ended_after)
                await api.wait_state(sid, "failed")
                await until(lambda: bool(only(push, "session_failed")))
                [failed] = only(push, "session_failed")
                assert failed["tag"] == f"{sid}:failed" and "keeps crashing" in failed["body"]
                assert failed["title"] == "long job: session failed"

    await main()


async def test_no_push_to_the_device_watching_and_one_once_it_is_hidden(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path, push: PushService) -> None:
        await subscribe(api, push)
        sid = (await api.create(ws))["id"]
        watcher = await api.ws(sid)
        await watcher.send({"type": "visibility", "visible": True, "id": 1})
        ack = await watcher.until(lambda f: f.get("id") == 1)
        assert ack == {"type": "ack", "id": 1, "op": "visibility", "visible": True}
        bad = {"type": "visibility", "visible": "yes", "id": 2}
        await watcher.send(bad)
        assert (await watcher.until(lambda f: f.get("id") == 2))["type"] == "error"

        await prompt(api, sid, "permission Write a")
        [pending] = (await api.wait_state(sid, "awaiting_permission"))["pending_permissions"]
        await until(lambda: api.daemon.push.stats["skipped_visible"] == 1)
        assert push.received == []

        await watcher.send({"type": "visibility", "visible": False, "id": 3})
        await watcher.until(lambda f: f.get("id") == 3)
        await api.call(
            "POST", f"/api/sessions/{sid}/permissions/{pending['request_id']}", {"option_id": "cancel"}
        )
        [ended] = await push.wait(1)
        assert ended.payload["kind"] == "turn_ended"

        # a WebSocket that never said it is visible does not hold pushes back
        silent = await api.ws(sid)
        await silent.until(lambda f: f["type"] == "hello")
        await prompt(api, sid, "permission Write b")
        await push.wait(2)

    await run(tmp_path, body)


async def test_gone_subscription_is_removed_and_500_is_retried(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path, push: PushService) -> None:
        flaky = await subscribe(api, push, "flaky")
        gone = await subscribe(api, push, "gone")
        push.answer(flaky["endpoint"], 500, 503)
        push.answer(gone["endpoint"], 410)
        sid = (await api.create(ws))["id"]
        await prompt(api, sid, "say hello")
        [received] = await push.wait(1)
        assert received.name == "flaky" and push.subscribers["flaky"].attempts == 3
        listed = (await api.call("GET", "/api/push/subscriptions")).body["subscriptions"]
        assert [s["id"] for s in listed] == [flaky["id"]]
        assert api.daemon.push.stats["gone"] == 1

        push.answer(flaky["endpoint"], 500, 500, 500)  # three failures: the push is given up
        await prompt(api, sid, "say again")
        await until(lambda: api.daemon.push.stats["failed"] == 2)  # the gone one, and this one
        assert push.subscribers["flaky"].attempts == 6 and len(push.received) == 1
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["state"] == "idle"  # the session is fine

    await run(tmp_path, body)


async def test_test_notification(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path, push: PushService) -> None:
        sub = await subscribe(api, push)
        reply = await api.call("POST", "/api/push/test")
        assert reply.status == 202 and reply.body == {"sent": 1}
        [received] = await push.wait(1)
        assert received.payload["kind"] == "test" and received.payload["tag"] == "test"
        named = await api.call("POST", "/api/push/test", {"subscription_id": sub["id"]})
        assert named.status == 202 and named.body == {"sent": 1}
        await push.wait(2)
        missing = await api.call("POST", "/api/push/test", {"subscription_id": "nope"})
        assert missing.status == 404 and missing.body["error"]["code"] == "subscription_not_found"
        assert (await api.call("POST", "/api/push/test", {"colour": 1})).status == 400

    await run(tmp_path, body)


async def test_key_file_is_private_and_stable(tmp_path: Path, isolated_home: Path) -> None:
    settings = fake_settings(tmp_path)
    keys: list[str] = []

    async def main() -> None:
        for _ in range(2):
            async with running_daemon(settings) as api:
                reply = await api.call("GET", "/api/push/key")
                assert reply.status == 200
                keys.append(reply.body["public_key"])

    await main()
    path = settings.paths.vapid_key_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert keys[0] == keys[1] and len(keys[0]) == 87  # 65 bytes, unpadded base64url
    assert not keys[0].endswith("=") and "+" not in keys[0] and "/" not in keys[0]


@pytest.mark.usefixtures("daemon_reaper")
async def test_a_turn_a_crash_cut_off_is_pushed_once_the_daemon_is_back(
    tmp_path: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QWEN_DAEMON_PUSH_INSECURE_ENDPOINTS", "1")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    key: list[str] = []

    async def main() -> None:
        async with push_service(lambda: key[0]) as push:
            async with daemon_process(paths) as first:
                key.append((await first.call("GET", "/api/push/key"))[1]["public_key"])
                status, _ = await first.call("POST", "/api/push/subscriptions", push.subscribe())
                assert status == 201
                _, created = await first.call(
                    "POST", "/api/sessions", {"cwd": str(workspace), "title": "overnight"}
                )
                await first.call("POST", f"/api/sessions/{created['id']}/prompt", {"text": "wait"})
                await first.wait(created["id"], lambda e: e["type"] == "turn_started")
                kill9(first)  # no graceful stop: nothing was pushed
            assert push.received == []
            async with daemon_process(paths) as second:
                [received] = await push.wait(1)  # the restart ended the turn, and said so
                assert received.payload["title"] == "overnight: turn interrupted"
                assert received.payload["session_id"] == created["id"]
                await second.call("POST", "/api/stop")
                wait_dead(second.pid)

    await main()

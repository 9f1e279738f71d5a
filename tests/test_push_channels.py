"""``[[notify]]`` channels: parsed from config.toml with clear errors, and told by the notifier —
a webhook (JSON with the absolute URL) and an ntfy topic (text body, ntfy's headers) received by
a loopback HTTP server, with the same retry rules as Web Push."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.config import ConfigError, Paths, load_settings
from qwen_daemon.push import delivery
from qwen_daemon.push.channels import Channel
from tests.support.daemon import Api, fake_settings, running_daemon
from tests.support.push_service import HookServer, hook_server

pytestmark = pytest.mark.timeout(60)


def write_config(paths: Paths, text: str) -> None:
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(text, encoding="utf-8")


def test_notify_entries_are_parsed(paths: Paths) -> None:
    write_config(
        paths,
        '[[notify]]\ntype = "ntfy"\nurl = "https://ntfy.sh/my-topic"\npreview = false\n\n'
        '[[notify]]\ntype = "webhook"\nurl = "https://hooks.example/qwen"\n',
    )
    settings = load_settings(env={}, paths=paths)
    assert settings.notify == (
        Channel("ntfy", "https://ntfy.sh/my-topic", False),
        Channel("webhook", "https://hooks.example/qwen", None),
    )
    assert settings.notify[0].origin == "https://ntfy.sh"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('notify = "https://ntfy.sh/x"', "array of tables"),
        ("notify = [1]", "notify[0] must be a table"),
        (
            '[[notify]]\ntype = "email"\nurl = "https://x.example"',
            "notify[0].type must be one of webhook, ntfy",
        ),
        ('[[notify]]\ntype = "webhook"\nurl = "ftp://x.example"', "notify[0].url must be an http(s) URL"),
        ('[[notify]]\ntype = "webhook"', "notify[0].url"),
        ('[[notify]]\ntype = "ntfy"\nurl = "https://ntfy.sh/"', "must name the ntfy topic"),
        (
            '[[notify]]\ntype = "ntfy"\nurl = "https://ntfy.sh/t"\npreview = "no"',
            "preview must be true or false",
        ),
        ('[[notify]]\ntype = "ntfy"\nurl = "https://ntfy.sh/t"\ntopic = "x"', "unknown key(s) topic"),
    ],
)
def test_bad_notify_entries_name_what_is_wrong(paths: Paths, text: str, words: str) -> None:
    write_config(paths, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, paths=paths)
    assert words in str(caught.value) and str(paths.config_file) in str(caught.value)


async def run(tmp_path: Path, body: Any, channels: Any, **overrides: Any) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)

    async def main() -> None:
        async with hook_server() as hooks:
            settings = fake_settings(tmp_path, notify=channels(hooks), **overrides)
            async with running_daemon(settings) as api:
                await body(api, workspace, hooks)

    await main()


async def test_webhook_and_ntfy_get_the_permission_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "RETRY_DELAYS", (0.05, 0.1))

    def channels(hooks: HookServer) -> tuple[Channel, ...]:
        return (Channel("webhook", hooks.url("hook")), Channel("ntfy", hooks.url("my-topic"), preview=False))

    async def body(api: Api, ws: Path, hooks: HookServer) -> None:
        hooks.failures.append(502)  # the first request (either channel) fails once and is retried
        sid = (await api.create(ws, title="Café build"))["id"]
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "permission Writing to notes.txt"})
        await api.wait_state(sid, "awaiting_permission")
        received = await hooks.wait(3)
        webhooks = [h for h in received if h.path == "hook"]
        ntfys = [h for h in received if h.path == "my-topic"]
        assert len(webhooks) + len(ntfys) == 3 and webhooks and ntfys
        note = json.loads(webhooks[-1].body)
        assert webhooks[-1].headers["Content-Type"] == "application/json"
        assert note["kind"] == "permission" and note["session_id"] == sid
        assert note["absolute_url"] == f"http://127.0.0.1:{api.daemon.port}/s/{sid}"
        assert "Writing to notes.txt" in note["body"] and len(note["actions"]) == 2

        ntfy = ntfys[-1]
        assert ntfy.headers["Priority"] == "5" and ntfy.headers["Click"] == note["absolute_url"]
        assert "warning" in ntfy.headers["Tags"]
        assert "Caf" in ntfy.headers["Title"]  # non-ASCII: an RFC 2047 word ntfy decodes
        assert ntfy.body.decode() == "Session 'Café build' needs your approval"  # preview = false

    await run(tmp_path, body, channels)


async def test_channels_use_public_url_and_stay_quiet_while_watched(tmp_path: Path) -> None:
    def channels(hooks: HookServer) -> tuple[Channel, ...]:
        return (Channel("ntfy", hooks.url("topic")),)

    async def body(api: Api, ws: Path, hooks: HookServer) -> None:
        sid = (await api.create(ws))["id"]
        watcher = await api.ws(sid)
        await watcher.send({"type": "visibility", "visible": True, "id": 1})
        await watcher.until(lambda f: f.get("id") == 1)
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say hi"})
        await api.wait_event(sid, lambda e: e["type"] == "turn_ended")
        assert api.daemon.push.stats["skipped_visible"] == 1 and hooks.received == []
        await watcher.send({"type": "visibility", "visible": False, "id": 2})
        await watcher.until(lambda f: f.get("id") == 2)
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say done now"})
        [told] = await hooks.wait(1)
        assert (
            told.headers["Priority"] == "3"
            and told.headers["Click"] == f"https://phone.example.ts.net/s/{sid}"
        )
        assert told.body.decode() == "done now"

    await run(tmp_path, body, channels, public_url="https://phone.example.ts.net")

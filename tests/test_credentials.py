"""Credentials are named: ``start`` says in one line how to give Qwen Code credentials when it has
none, and a session Qwen Code refuses for missing auth carries the same line (API error, the
session's ``failure``, its error event, the CLI's ``new``).

Which credentials count follows Qwen Code 0.24.4 itself; the cases here are the ones measured
against the real agent (``OPENAI_API_KEY`` alone is refused by it; the three OPENAI_* variables,
or ``security.auth.selectedType`` with a key, are accepted). The agent is the fake one behind a
launcher named ``qwen``, which is how the daemon tells Qwen Code from any other ACP agent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.agents.credentials import HINT, find_credentials, with_hint
from qwen_daemon.agents.registry import runs_qwen_code
from tests.support.daemon import FAKE_AGENT, Api, serve
from tests.support.probe import cli

#: Everything that could hand the agent credentials from the shell that runs pytest.
_AUTH_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "QWEN_MODEL",
    "QWEN_OAUTH",
    "QWEN_HOME",
    "QWEN_CODE_SYSTEM_SETTINGS_PATH",
    "GEMINI_API_KEY",
    "GEMINI_MODEL",
    "GOOGLE_API_KEY",
    "GOOGLE_MODEL",
    "GOOGLE_CLOUD_PROJECT",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_BASE_URL",
)
OPENAI = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_MODEL": "m"}


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _AUTH_ENV:
        monkeypatch.delenv(name, raising=False)
    # a machine-wide /etc/qwen-code/settings.json must not decide these tests
    monkeypatch.setenv("QWEN_CODE_SYSTEM_SETTINGS_PATH", str(tmp_path / "no-system-settings.json"))


@pytest.fixture
def qwen_launcher(tmp_path: Path) -> Path:
    """The fake agent started through a program called ``qwen``, as Qwen Code's launcher is."""
    launcher = tmp_path / "bin" / "qwen"
    launcher.parent.mkdir()
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_AGENT} "$@"\n', encoding="utf-8")
    launcher.chmod(0o755)
    return launcher


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), "QWEN_CODE_SYSTEM_SETTINGS_PATH": str(home / "none.json"), **extra}


def _settings(home: Path, doc: dict[str, Any] | str, where: str = ".qwen") -> None:
    path = home / where / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")


def test_which_credentials_count(isolated_home: Path) -> None:
    home = isolated_home
    assert find_credentials(_env(home)) is None
    assert find_credentials(_env(home, OPENAI_API_KEY="sk-x")) is None  # the agent refuses that
    assert find_credentials(_env(home, **OPENAI)) == "openai settings in the environment"
    assert find_credentials(_env(home, **{**OPENAI, "OPENAI_MODEL": "", "QWEN_MODEL": "m"})) is not None

    _settings(home, {"security": {"auth": {"selectedType": "openai"}}})
    assert find_credentials(_env(home)) is None  # "Missing API key for openai auth"
    assert find_credentials(_env(home, OPENAI_API_KEY="sk-x")) is not None
    _settings(home, {"security": {"auth": {"selectedType": "openai", "apiKey": "sk-x"}}})
    assert "security.auth.selectedType 'openai'" in str(find_credentials(_env(home)))

    commented = """{
      // Qwen Code allows comments /* of both kinds */
      "security": {"auth": {"selectedType": "openai", /* inline */ "baseUrl": "http://h/v1"}}
    }"""
    _settings(home, commented)
    assert find_credentials(_env(home)) is None  # comments skipped, not the whole file: no key
    _settings(home, commented.replace('"baseUrl"', '"apiKey": "k", "baseUrl"'))
    assert find_credentials(_env(home)) is not None
    _settings(home, '{"security": {"auth": {"selectedType": "gemini",}}}')  # not JSON at all
    assert find_credentials(_env(home)) is not None

    _settings(home, {"security": {"auth": {"selectedType": "qwen-oauth"}}})
    assert find_credentials(_env(home)) is None  # "Qwen OAuth credentials expired"
    (home / ".qwen" / "oauth_creds.json").write_text("{}", encoding="utf-8")
    assert find_credentials(_env(home)) is not None


def test_credentials_from_dotenv_and_qwen_home(isolated_home: Path, tmp_path: Path) -> None:
    home = isolated_home
    (home / ".qwen").mkdir()
    (home / ".qwen" / ".env").write_text(
        "# Qwen Code loads this file\nexport OPENAI_API_KEY='sk-x'\n"
        "OPENAI_BASE_URL=http://h/v1 # a comment\n",
        encoding="utf-8",
    )
    assert find_credentials(_env(home)) is None
    (home / ".env").write_text('OPENAI_MODEL="m"\n', encoding="utf-8")
    assert find_credentials(_env(home)) is not None
    assert find_credentials(_env(home, OPENAI_MODEL="")) is None  # a set variable wins over a file

    relocated = tmp_path / "qwen-home"
    _settings(relocated, {"security": {"auth": {"selectedType": "openai", "apiKey": "k"}}}, where="")
    assert find_credentials(_env(tmp_path / "empty-home", QWEN_HOME=str(relocated))) is not None


def test_the_hint_is_added_to_auth_refusals_only() -> None:
    assert with_hint("Authentication required", -32000) == f"Authentication required. {HINT}"
    real = "Authentication required: Use Qwen Code CLI to authenticate first."
    assert (
        with_hint(real, -32000) == f"Authentication required: Use Qwen Code CLI to authenticate first. {HINT}"
    )
    assert with_hint(with_hint(real, -32000), -32000).count(HINT) == 1
    assert with_hint("Internal error", -32603) == "Internal error"
    assert "\n" not in HINT


def test_which_commands_are_qwen_code() -> None:
    assert runs_qwen_code(("qwen", "--acp"))
    assert runs_qwen_code(("/usr/local/bin/qwen", "--acp"))
    assert runs_qwen_code(("node", "/p/node_modules/@qwen-code/qwen-code/cli.js", "--acp"))
    assert runs_qwen_code(("npx", "@qwen-code/qwen-code", "--acp"))
    assert not runs_qwen_code(("gemini", "--acp"))
    assert not runs_qwen_code((sys.executable, FAKE_AGENT))


@pytest.mark.usefixtures("daemon_reaper")
def test_start_prints_the_hint_without_credentials(
    qwen_launcher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = cli("start", "--port", "0", "--agent-cmd", f"{qwen_launcher} --acp")
    assert res.returncode == 0, res.stderr  # it still starts
    assert res.stderr.count(HINT) == 1 and f"qwen-daemon: {HINT}\n" in res.stderr
    assert "Open in a browser" in res.stdout
    assert cli("stop").returncode == 0

    for name, value in OPENAI.items():
        monkeypatch.setenv(name, value)
    res = cli("start", "--port", "0", "--agent-cmd", f"{qwen_launcher} --acp")
    assert res.returncode == 0, res.stderr
    assert HINT not in res.stderr
    assert cli("stop").returncode == 0

    # another ACP agent (here the fake one, not behind `qwen`) has credentials of its own
    for name in OPENAI:
        monkeypatch.delenv(name)
    res = cli("start", "--port", "0", "--agent-cmd", f"{sys.executable} {FAKE_AGENT}")
    assert res.returncode == 0, res.stderr
    assert HINT not in res.stderr
    assert cli("stop").returncode == 0


async def test_a_refused_session_carries_the_hint(
    tmp_path: Path, qwen_launcher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_AGENT_AUTH_REQUIRED", "1")  # session/new: -32000, as Qwen Code without auth

    async def body(api: Api, ws: Path) -> None:
        reply = await api.call("POST", "/api/sessions", {"cwd": str(ws)})
        assert reply.status == 502, reply.body
        message = reply.body["error"]["message"]
        assert message == f"Authentication required. {HINT}"
        sid = reply.body["error"]["session_id"]
        detail = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert detail["state"] == "failed" and detail["failure"] == message
        events = await api.events(sid)
        assert any(e["type"] == "error" and e["message"] == message for e in events)

    await serve(tmp_path, body, agent_cmd=(str(qwen_launcher), "--acp"))


async def test_another_agents_refusal_is_left_in_its_own_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_AGENT_AUTH_REQUIRED", "1")

    async def body(api: Api, ws: Path) -> None:
        reply = await api.call("POST", "/api/sessions", {"cwd": str(ws)})
        assert reply.status == 502 and reply.body["error"]["message"] == "Authentication required"

    await serve(tmp_path, body)  # the fake agent run directly: not Qwen Code


@pytest.mark.usefixtures("daemon_reaper")
def test_cli_new_prints_the_hint(
    tmp_path: Path, qwen_launcher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_AGENT_AUTH_REQUIRED", "1")  # the daemon passes it on to its agent
    assert cli("start", "--port", "0", "--agent-cmd", f"{qwen_launcher} --acp").returncode == 0
    workspace = tmp_path / "project"
    workspace.mkdir()
    res = cli("new", str(workspace))
    assert res.returncode == 1
    assert res.stderr == f"qwen-daemon: Authentication required. {HINT}\n"
    assert cli("stop").returncode == 0

"""Helpers for tests that run the real, pinned Qwen Code agent.

Why: the daemon hosts Qwen Code over ACP, and the only trustworthy test of that is the real
agent. These helpers find the pinned install and give the agent an isolated HOME whose
settings make it deterministic and offline: it talks only to the fake OpenAI server
(``tests/support/fake_openai.py``), asks permission for edits, and makes no hidden LLM or
network calls that would consume scripted replies or leave the machine.

Every setting key below was checked against the settings schema bundled in Qwen Code 0.24.4
(``chunks/chunk-*.js``, ``SETTINGS_SCHEMA``); re-check them when ``QWEN_VERSION`` changes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

QWEN_VERSION = "0.24.4"
QWEN_PACKAGE = "@qwen-code/qwen-code"
FAKE_API_KEY = "sk-fake-test-key"
FAKE_MODEL = "fake-model"
# Lets a developer point the tests at another install, e.g. a throwaway npm prefix.
CLI_OVERRIDE_ENV = "QWEN_DAEMON_TEST_QWEN_CLI"
# Environment variables passed through from the test process to the agent, no others, so a
# developer's own OPENAI_* or proxy settings cannot leak into a test.
_PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT", "TMPDIR")


#: What a daemon under test must pass on to its Qwen Code agent (from ``prepare_qwen_home``'s env).
AGENT_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "QWEN_USAGE_STATISTICS_ENABLED",
    "QWEN_CODE_DISABLE_PRECONNECT",
    "NO_BROWSER",
)


def cli_path_in_prefix(prefix: Path) -> Path:
    """Where ``npm install --prefix PREFIX @qwen-code/qwen-code`` puts the cli.js entry point."""
    return prefix / "node_modules" / "@qwen-code" / "qwen-code" / "cli.js"


def find_pinned_qwen_cli() -> Path | None:
    """Return the pinned Qwen Code cli.js, or None when it is not installed.

    The project installs it into ``<venv>/qwen-code`` (so ``sys.prefix`` finds it);
    ``$QWEN_DAEMON_TEST_QWEN_CLI`` may name a cli.js or an npm prefix instead.
    """
    override = os.environ.get(CLI_OVERRIDE_ENV)
    if override:
        path = Path(override)
        candidate = path if path.suffix == ".js" else cli_path_in_prefix(path)
        return candidate if candidate.is_file() else None
    candidate = cli_path_in_prefix(Path(sys.prefix) / "qwen-code")
    return candidate if candidate.is_file() else None


def installed_qwen_version(cli: Path) -> str | None:
    """The version in the package.json next to ``cli``, so tests can refuse a wrong pin."""
    try:
        data = json.loads((cli.parent / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def find_node() -> str | None:
    """The ``node`` executable used to run cli.js."""
    return shutil.which("node")


def qwen_command(cli: Path, *extra: str) -> list[str]:
    """argv that starts the agent on stdio as a single process (no self-relaunch)."""
    node = find_node() or "node"
    return [node, str(cli), "--acp", *extra]


def qwen_settings(base_url: str, *, model: str = FAKE_MODEL, api_key: str = FAKE_API_KEY) -> dict[str, Any]:
    """The settings.json content for a deterministic, offline agent. Why each key is there:"""
    return {
        "security": {
            # Authenticate with the OpenAI-compatible endpoint without any interactive flow.
            "auth": {"selectedType": "openai", "apiKey": api_key, "baseUrl": base_url},
        },
        "model": {
            "name": model,
            # One attempt per request: a failing fake reply must fail fast, not be retried
            # into the next scripted turn.
            "generationConfig": {"maxRetries": 0},
        },
        "general": {
            # Update checks go to the npm registry.
            "enableAutoUpdate": False,
            # Would spawn an OS sleep inhibitor while streaming.
            "preventSystemSleep": False,
            "terminalBell": False,
        },
        "privacy": {
            # Else usage statistics are posted (and their DNS look-ups happen) every session.
            "usageStatisticsEnabled": False,
        },
        "memory": {
            # Each adds a hidden background LLM call after turns.
            "enableManagedAutoMemory": False,
            "enableManagedAutoDream": False,
        },
        "ui": {
            # A hidden LLM call per turn to suggest the next prompt.
            "enableFollowupSuggestions": False,
            "enableUserFeedback": False,
        },
        "experimental": {
            # A hidden LLM call after each tool batch to label it.
            "emitToolUseSummaries": False,
        },
        "agents": {
            # Opens a per-session local socket that other sessions on the machine can reach.
            "crossSessionMessaging": False,
        },
        "tools": {
            # The built-in default "auto" is an LLM classifier that silently approves edits;
            # "default" asks the client (session/request_permission), which is what we test.
            "approvalMode": "default",
            # Needed for ACP `plan` updates.
            "todoWrite": {"enabled": True},
            # web_search calls DashScope, not our endpoint.
            "webSearch": {"enabled": False},
        },
    }


def prepare_qwen_home(
    home: Path,
    base_url: str,
    *,
    model: str = FAKE_MODEL,
    api_key: str = FAKE_API_KEY,
    settings_overrides: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write ``home/.qwen/settings.json`` and return the agent's whole environment.

    The returned mapping is meant to be the complete ``env`` of the agent process (not merged
    into ``os.environ``): HOME and XDG dirs point into ``home`` so nothing outside the test's
    tmp dir is read or written.
    """
    settings = qwen_settings(base_url, model=model, api_key=api_key)
    if settings_overrides:
        settings = _deep_merge(settings, settings_overrides)
    qwen_dir = home / ".qwen"
    qwen_dir.mkdir(parents=True, exist_ok=True)
    (qwen_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    env = isolated_env(home)
    env.update(
        {
            "OPENAI_API_KEY": api_key,
            "OPENAI_BASE_URL": base_url,
            "OPENAI_MODEL": model,
        }
    )
    return env


def isolated_env(home: Path) -> dict[str, str]:
    """An environment with no credentials: HOME and friends inside ``home``, no proxies.

    Also what a test uses to check the agent's behaviour without credentials.
    """
    env = {name: os.environ[name] for name in _PASSTHROUGH_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    for sub in ("config", "cache", "data", "state"):
        (home / f".{sub}").mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "USERPROFILE": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".data"),
            "XDG_STATE_HOME": str(home / ".state"),
            # One node process: the default launcher re-executes itself (3 processes).
            "QWEN_CODE_NO_RELAUNCH": "true",
            # Belt and braces next to settings.json: env wins over settings for these.
            "QWEN_USAGE_STATISTICS_ENABLED": "false",
            "QWEN_CODE_DISABLE_PRECONNECT": "1",
            "NO_BROWSER": "true",
            "NO_COLOR": "1",
            "CI": "true",
        }
    )
    return env


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out

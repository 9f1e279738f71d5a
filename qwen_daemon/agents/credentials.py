"""Does Qwen Code have credentials, and the one line that tells the user how to give it some.

Why: without credentials Qwen Code starts, answers ``initialize``, and only refuses at
``session/new`` with JSON-RPC -32000 "Authentication required: Use Qwen Code CLI to authenticate
first." — advice that means nothing to someone who never runs the Qwen CLI, only this daemon. So
``start`` says up front when none are found (it still starts: they may be added before the first
session), and a session the agent refuses for missing auth carries the same :data:`HINT`.

The rules mirror how Qwen Code 0.24.4 picks its auth type (``loadCliConfig`` and
``getAuthTypeFromEnv`` in its bundle; measured against the real agent, see tests):

* ``security.auth.selectedType`` in its system or user ``settings.json`` wins; ``openai`` then
  needs a key (``security.auth.apiKey`` or ``OPENAI_API_KEY``), ``qwen-oauth`` its token file
  (``oauth_creds.json``); other types are not second-guessed.
* Otherwise the environment decides, and only a complete set counts: ``OPENAI_API_KEY`` alone is
  refused by the agent, it also needs ``OPENAI_BASE_URL`` and ``OPENAI_MODEL`` (or ``QWEN_MODEL``).
* The environment includes what Qwen Code loads from ``~/.qwen/.env`` and ``~/.env``; variables
  already set win, as they do in Qwen Code.

A workspace's own ``.qwen/settings.json`` or ``.env`` can also hold credentials; start-up cannot
know the workspace, which is why the start-up line is only a note and a real refusal is what
sessions report.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: ACP's JSON-RPC error code for "Authentication required".
AUTH_REQUIRED = -32000

#: The one line: printed by ``start`` when nothing is found, appended to an auth refusal.
HINT = (
    "Qwen Code needs credentials: give the daemon OPENAI_API_KEY, OPENAI_BASE_URL and OPENAI_MODEL "
    "in its environment, or set security.auth (selectedType, apiKey, baseUrl) in ~/.qwen/settings.json"
)

#: Environment variables that select an auth type on their own, as Qwen Code's getAuthTypeFromEnv
#: reads them: every group of one tuple must be set (a group of several names needs any one).
_ENV_AUTH: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("qwen-oauth", (("QWEN_OAUTH",),)),
    ("openai", (("OPENAI_API_KEY",), ("OPENAI_MODEL", "QWEN_MODEL"), ("OPENAI_BASE_URL",))),
    ("gemini", (("GEMINI_API_KEY",), ("GEMINI_MODEL",))),
    ("vertex-ai", (("GOOGLE_API_KEY",), ("GOOGLE_MODEL",))),
    ("vertex-ai", (("GOOGLE_CLOUD_PROJECT",), ("GOOGLE_MODEL",))),
    ("anthropic", (("ANTHROPIC_API_KEY",), ("ANTHROPIC_MODEL",), ("ANTHROPIC_BASE_URL",))),
)
_SELECTED = re.compile(r'"selectedType"\s*:\s*"([^"]+)"')


def qwen_dir(environ: Mapping[str, str]) -> Path:
    """Qwen Code's own directory: ``$QWEN_HOME``, else ``~/.qwen``."""
    home = Path(environ.get("HOME") or Path.home())
    custom = environ.get("QWEN_HOME")
    if custom:
        path = Path(home / custom[2:] if custom.startswith("~/") else custom)
        return path if path.is_absolute() else Path.cwd() / path
    return home / ".qwen"


def _system_settings(environ: Mapping[str, str]) -> Path:
    override = environ.get("QWEN_CODE_SYSTEM_SETTINGS_PATH")
    if override:
        return Path(override)
    if sys.platform == "darwin":
        return Path("/Library/Application Support/QwenCode/settings.json")
    return Path("/etc/qwen-code/settings.json")


def _without_comments(text: str) -> str:
    """JSON text without the ``//`` and ``/* */`` comments Qwen Code allows in settings files."""
    out, i, quoted = [], 0, False
    while i < len(text):
        char = text[i]
        if quoted:
            out.append(text[i : i + 2] if char == "\\" else char)
            i += 2 if char == "\\" else 1
            quoted = char != '"'
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
        else:
            out.append(char)
            quoted = char == '"'
            i += 1
    return "".join(out)


def _read_settings(path: Path) -> dict[str, Any]:
    """A settings file as a dict; {} if absent. One that still does not parse (a trailing comma)
    is searched for its ``selectedType``, with any ``apiKey`` taken as present: a wrong note at
    start-up costs more than a missing one, since the agent's own refusal says the rest."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        doc = json.loads(_without_comments(text))
    except ValueError:
        found = _SELECTED.search(text)
        auth = {"selectedType": found[1], "apiKey": '"apiKey"' in text} if found else {}
        return {"security": {"auth": auth}}
    return doc if isinstance(doc, dict) else {}


def _auth(settings: Mapping[str, Any]) -> dict[str, Any]:
    security = settings.get("security")
    auth = security.get("auth") if isinstance(security, dict) else None
    auth = dict(auth) if isinstance(auth, dict) else {}
    legacy = settings.get("selectedAuthType")  # settings written before the v2 layout
    if not auth.get("selectedType") and isinstance(legacy, str):
        auth["selectedType"] = legacy
    return auth


def _dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a .env file (``export``, quotes and comments allowed)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    values = {}
    for line in lines:
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            else:
                value = value.split(" #", 1)[0].strip()
            values[key.strip()] = value
    return values


def effective_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus what Qwen Code would load from its home ``.env`` files (set values win)."""
    home = Path(environ.get("HOME") or Path.home())
    merged: dict[str, str] = {}
    for path in (home / ".env", qwen_dir(environ) / ".env"):  # ~/.qwen/.env wins, as in Qwen Code
        merged.update(_dotenv(path))
    merged.update(environ)
    return merged


def _env_auth_type(env: Mapping[str, str]) -> str | None:
    for auth_type, groups in _ENV_AUTH:
        if all(any(env.get(name) for name in group) for group in groups):
            return auth_type
    return None


def find_credentials(environ: Mapping[str, str] | None = None) -> str | None:
    """Where Qwen Code, run with ``environ``, would find its credentials; None if it would not."""
    env = effective_environment(os.environ if environ is None else environ)
    base = qwen_dir(env)
    oauth_file = base / "oauth_creds.json"
    for path in (_system_settings(env), base / "settings.json"):
        settings = _read_settings(path)
        auth = _auth(settings)
        selected = auth.get("selectedType")
        if not isinstance(selected, str) or not selected:
            continue
        where = f"security.auth.selectedType {selected!r} in {path}"
        if selected == "qwen-oauth":
            return where if oauth_file.is_file() else None
        if selected.startswith("openai") and not (
            auth.get("apiKey") or env.get("OPENAI_API_KEY") or settings.get("modelProviders")
        ):
            return None
        return where
    auth_type = _env_auth_type(env)
    if auth_type == "qwen-oauth" and not oauth_file.is_file():
        return None
    return f"{auth_type} settings in the environment" if auth_type else None


def with_hint(message: str, code: object = None) -> str:
    """``message`` with :data:`HINT` appended when it is an agent's refusal for missing auth."""
    if HINT in message or not (code == AUTH_REQUIRED or "authentication required" in message.lower()):
        return message
    return f"{message.rstrip(' .')}. {HINT}"

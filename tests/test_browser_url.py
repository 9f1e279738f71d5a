"""One builder for the browser URL (:func:`qwen_daemon.discovery.browser_url`), used everywhere."""

from __future__ import annotations

import ast
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import qwen_daemon
from qwen_daemon.discovery import browser_url, make_url

PACKAGE = Path(qwen_daemon.__file__).resolve().parent


def test_the_url_logs_in_with_the_token_at_the_daemons_address() -> None:
    token = "Ab-_0123456789abcdefghijklmnopqrstuvwxyzABC"
    assert browser_url("http://127.0.0.1:7861/", token) == f"http://127.0.0.1:7861/?token={token}"
    url = browser_url(make_url("::", 8443, tls=True), token)
    assert url == f"https://[::1]:8443/?token={token}"
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("::1", 8443, "/")
    assert parse_qs(parts.query) == {"token": [token]}


def test_a_token_with_reserved_characters_is_escaped() -> None:
    """A token file is checked to be URL-safe, but the builder does not rely on it."""
    url = browser_url("http://localhost:1/", "a&b=c d")
    assert parse_qs(urlsplit(url).query) == {"token": ["a&b=c d"]}


def _builds_a_token_url(node: ast.AST) -> bool:
    """An f-string with ``?token=`` in it, or ``urlencode({'token': ...})``."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.Constant) and "token=" in str(v.value) for v in node.values)
    if isinstance(node, ast.Call):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        return name == "urlencode" and any(
            isinstance(a, ast.Dict)
            and any(isinstance(k, ast.Constant) and k.value == "token" for k in a.keys)
            for a in node.args
        )
    return False


def test_no_other_module_builds_it() -> None:
    copies = [
        f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if _builds_a_token_url(node)
    ]
    assert copies == ["discovery.py:" + str(_builder_line())], copies


def _builder_line() -> int:
    tree = ast.parse((PACKAGE / "discovery.py").read_text(encoding="utf-8"))
    builder = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "browser_url")
    return next(n.lineno for n in ast.walk(builder) if isinstance(n, ast.expr) and _builds_a_token_url(n))

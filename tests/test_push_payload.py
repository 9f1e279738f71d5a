"""What a notification says, without a daemon: the actions chosen, the stop reasons, preview off,
the clipping, and what ntfy's headers get."""

from __future__ import annotations

from qwen_daemon.push import payload
from qwen_daemon.push.channels import Channel, _header_text, request
from qwen_daemon.push.delivery import Gone, Refused, Retry, classify


def opt(option_id: str, kind: str) -> dict[str, str]:
    return {"option_id": option_id, "name": option_id, "kind": kind}


def test_actions_are_the_least_permissive_allow_once_and_the_reject() -> None:
    shell = [
        opt("proceed_always_project", "allow_always"),
        opt("proceed_once", "allow_once"),
        opt("cancel", "reject_once"),
    ]
    assert payload.choose_actions(shell) == (("proceed_once", "Allow once"), ("cancel", "Deny"))
    other = [opt("allow-all", "allow_always"), opt("allow-wide", "allow_once"), opt("allow", "allow_once")]
    assert payload.choose_actions([*other, opt("no", "reject_once"), opt("never", "reject_always")]) == (
        ("allow", "Allow once"),
        ("no", "Deny"),
    )
    assert payload.choose_actions([opt("always", "allow_always"), opt("never", "reject_always")]) == ()


def test_stop_reasons() -> None:
    assert payload.turn_ended("s", "t", "cancelled", True) is None
    for stop in ("end_turn", "max_tokens", "max_turn_requests", "refusal"):
        note = payload.turn_ended("s", "t", stop, True, said="all good")
        assert note is not None and note.title == "t: finished" and note.body == "all good"
    failed = payload.turn_ended("s", "t", "error", False, error="secret stack trace")
    assert failed is not None and failed.title == "t: turn failed" and "secret" not in failed.body
    interrupted = payload.turn_ended("s", "t", "interrupted", True)
    assert interrupted is not None and interrupted.tag == "s:turn" and interrupted.urgency == "normal"


def test_preview_off_and_clipping() -> None:
    data = {
        "request_id": "r",
        "tool_call": {"title": "rm -rf build"},
        "options": [opt("proceed_once", "allow_once")],
    }
    hidden = payload.permission("s", "Build", data, preview=False)
    assert hidden.body == "Session 'Build' needs your approval" and hidden.urgency == "high"
    failed = payload.session_failed("s", "Build", "token sk-123 refused", preview=False)
    assert "sk-123" not in failed.body and failed.kind == "session_failed"
    long = payload.turn_ended("s", "x" * 500, "end_turn", True, said="line\x1b[31m one\n\n" + "y" * 1000)
    assert (
        long is not None and len(long.title) == payload.TITLE_CHARS and len(long.body) <= payload.BODY_CHARS
    )
    assert "\x1b" not in long.body and "\n" not in long.body
    assert payload.trial().payload()["kind"] == "test"


def test_ntfy_request_and_header_text() -> None:
    note = payload.permission("s", "Build ✓", {"request_id": "r", "options": []}, preview=True)
    sent = request(Channel("ntfy", "https://ntfy.sh/topic"), note, "https://phone.example/s/s")
    assert sent.headers["Priority"] == "5" and sent.headers["Click"] == "https://phone.example/s/s"
    assert sent.headers["Title"].startswith("=?utf-8?")  # RFC 2047, which ntfy decodes
    assert _header_text("plain\r\nInjected: yes") == "plain Injected: yes"


def test_http_answers_are_classified() -> None:
    assert isinstance(classify(410, "Gone"), Gone) and isinstance(classify(404, ""), Gone)
    retry = classify(429, "Too Many", "7")
    assert isinstance(retry, Retry) and retry.retry_after == 7.0
    assert isinstance(classify(503, ""), Retry)
    assert isinstance(classify(400, ""), Refused) and isinstance(classify(403, ""), Refused)

"""The one translation of agents' questions and plans, and the checks on answers, against real shapes.

Why: these are the requests real Qwen Code 0.24.4 sent (tests/fixtures/qwen_permissions.json,
recorded by tests/record_qwen_shapes.py), so the daemon's shape is proven on what the agent really
says, and each recorded client answer proves the daemon forwards answers exactly as Qwen reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qwen_daemon.agents.questions import PermissionAsk, QuestionForm, read_permission_request
from qwen_daemon.errors import BadRequest

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "qwen_permissions.json").read_text())
SCENARIOS: dict[str, Any] = FIXTURE["scenarios"]


def ask(name: str) -> PermissionAsk:
    return read_permission_request(SCENARIOS[name]["request"])


def test_the_fixture_is_of_the_pinned_qwen_code() -> None:
    from tests.support.qwen import QWEN_VERSION

    assert FIXTURE["qwen_version"] == QWEN_VERSION
    assert set(SCENARIOS) == {"question", "question_multi", "plan_exit", "write", "shell", "write_rejected"}


DB = {
    "question": "Which database?",
    "header": "DB",
    "options": [
        {"label": "PostgreSQL", "description": "Use PostgreSQL"},
        {"label": "SQLite", "description": "Use SQLite"},
    ],
    "multi_select": False,
}
FEATURES = {
    "question": "Which features do you want?",
    "header": "Features",
    "options": [{"label": label, "description": f"Use {label}"} for label in ("Auth", "Search", "Export")],
    "multi_select": True,
}


@pytest.mark.parametrize(
    ("name", "questions", "plan", "option_ids"),
    [
        ("question", [DB], None, ["proceed_once", "cancel"]),
        ("question_multi", [DB, FEATURES], None, ["proceed_once", "cancel"]),
        (
            "plan_exit",
            None,
            SCENARIOS["plan_exit"]["llm_tool_call"]["arguments"]["plan"],
            ["restore_previous", "proceed_always", "proceed_once", "cancel"],
        ),
        ("write", None, None, ["proceed_always", "proceed_once", "cancel"]),
        ("shell", None, None, ["proceed_always_project", "proceed_always_user", "proceed_once", "cancel"]),
    ],
)
def test_real_requests_translate_to_the_daemons_one_shape(
    name: str, questions: list[Any] | None, plan: str | None, option_ids: list[str]
) -> None:
    raw = SCENARIOS[name]["request"]
    fields = ask(name).fields()
    assert set(fields) == {"tool_call", "options"} | ({"questions"} if questions else set()) | (
        {"plan"} if plan else set()
    )
    assert "meta" not in fields  # the old top-level field is gone
    assert fields.get("questions") == questions
    assert fields.get("plan") == plan
    assert [o["option_id"] for o in fields["options"]] == option_ids
    assert [o["kind"] for o in fields["options"]] == [o["kind"] for o in raw["options"]]
    assert [o["name"] for o in fields["options"]] == [o["name"] for o in raw["options"]]
    tool = fields["tool_call"]
    assert tool["tool_call_id"] == raw["toolCall"]["toolCallId"]
    assert tool["kind"] == raw["toolCall"]["kind"] and tool["title"] == raw["toolCall"]["title"]


def test_plan_falls_back_to_the_tool_content_without_raw_input() -> None:
    raw = json.loads(json.dumps(SCENARIOS["plan_exit"]["request"]))
    del raw["toolCall"]["rawInput"]
    assert read_permission_request(raw).plan == SCENARIOS["plan_exit"]["llm_tool_call"]["arguments"]["plan"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_recorded_answer_is_forwarded_exactly_as_the_client_sent_it_to_qwen(name: str) -> None:
    """What the recorder answered made Qwen do the recorded thing: the daemon must send just that."""
    recorded = SCENARIOS[name]["response"]
    given = recorded.get("answers")
    if name == "question_multi":  # the daemon's API takes a multi-select's labels as a list
        given = {"0": "SQLite", "1": ["Auth", "Export"]}
    reply = ask(name).answer(recorded["outcome"]["optionId"], given)
    assert reply.response == recorded
    assert reply.answers == given


OK = "ok"


@pytest.mark.parametrize(
    ("name", "option_id", "answers", "expected"),
    [
        # single-select: one string; a text that is no label is free text ("Other")
        ("question", "proceed_once", {"0": "SQLite"}, {"0": "SQLite"}),
        ("question", "proceed_once", {"0": "  MySQL, please "}, {"0": "MySQL, please"}),
        ("question", "proceed_once", {"0": ["SQLite"]}, "answer it with a string"),
        ("question", "proceed_once", {"0": 3}, "answer it with a string"),
        ("question", "proceed_once", {"0": None}, "answer it with a string"),
        # every question needs an answer to allow
        ("question", "proceed_once", None, "missing 0 (Which database?)"),
        ("question", "proceed_once", {}, "missing 0"),
        ("question", "proceed_once", {"0": "   "}, "missing 0"),
        # indexes
        ("question", "proceed_once", {"1": "SQLite"}, "there is no question 1"),
        ("question", "proceed_once", {"-1": "SQLite"}, "not a question index"),
        ("question", "proceed_once", {"00": "SQLite"}, "not a question index"),
        ("question", "proceed_once", {"first": "SQLite"}, "not a question index"),
        ("question", "proceed_once", {"\u0660": "SQLite"}, "not a question index"),  # an Arabic-Indic zero
        ("question", "proceed_once", ["SQLite"], "must be an object"),
        ("question", "proceed_once", "SQLite", "must be an object"),
        # a reject forwards no answers, but still refuses malformed ones
        ("question", "cancel", None, None),
        ("question", "cancel", {"0": "SQLite"}, None),
        ("question", "cancel", {"7": "SQLite"}, "there is no question 7"),
        # multi-select: a list of strings
        ("question_multi", "proceed_once", {"0": "SQLite", "1": ["Auth"]}, {"0": "SQLite", "1": "Auth"}),
        (
            "question_multi",
            "proceed_once",
            {"0": "SQLite", "1": ["Export", "Auth", "Export", "", "my own"]},
            {"0": "SQLite", "1": "Export, Auth, my own"},
        ),
        ("question_multi", "proceed_once", {"0": "SQLite", "1": "Auth"}, "answer it with a list of strings"),
        ("question_multi", "proceed_once", {"0": "SQLite", "1": ["Auth", 2]}, "list of strings"),
        ("question_multi", "proceed_once", {"0": "SQLite", "1": []}, "missing 1"),
        ("question_multi", "proceed_once", {"1": ["Auth"]}, "missing 0"),
        # answers on a request that asks nothing
        ("write", "proceed_once", {"0": "SQLite"}, "asks no questions"),
        ("write", "proceed_once", {}, None),
        ("plan_exit", "proceed_always", {"0": "x"}, "asks no questions"),
        ("shell", "proceed_once", None, None),
        # an option that was not offered
        ("question", "proceed_always", {"0": "SQLite"}, "was not offered"),
    ],
)
def test_answer_checks(name: str, option_id: str, answers: Any, expected: Any) -> None:
    target = ask(name)
    if isinstance(expected, str):
        with pytest.raises(BadRequest) as info:
            target.answer(option_id, answers)
        assert expected in info.value.message
        return
    reply = target.answer(option_id, answers)
    outcome = {"outcome": "selected", "optionId": option_id}
    assert reply.response == (
        {"outcome": outcome} if expected is None else {"outcome": outcome, "answers": expected}
    )


def test_a_form_without_free_text_takes_only_offered_labels() -> None:
    """Another agent's form may not take "Other": then only the offered labels are answers."""
    strict = QuestionForm("strict", lambda params: None, lambda answers: {"picked": answers}, free_text=False)
    base = ask("question")
    target = PermissionAsk(base.tool_call, base.options, base.questions, None, strict)
    assert target.answer("proceed_once", {"0": "SQLite"}).response["picked"] == {0: ["SQLite"]}
    with pytest.raises(BadRequest, match="only its offered labels: PostgreSQL, SQLite"):
        target.answer("proceed_once", {"0": "MySQL"})


def test_malformed_questions_are_dropped_not_fatal() -> None:
    raw = json.loads(json.dumps(SCENARIOS["question"]["request"]))
    meta = raw["toolCall"]["_meta"]
    meta["qwenQuestions"] = [
        "not a question",
        {"header": "no text"},
        {"question": "Q?", "options": [{"label": "A"}, {"description": "no label"}, 3], "multiSelect": "yes"},
    ]
    assert read_permission_request(raw).questions == [
        {
            "question": "Q?",
            "header": "",
            "options": [{"label": "A", "description": ""}],
            "multi_select": False,
        }
    ]
    meta["qwenQuestions"] = "nope"
    assert read_permission_request(raw).questions is None
    assert read_permission_request({}).fields() == {"tool_call": {}, "options": []}

"""The fake agent's permission requests still are what real Qwen Code sends.

Why: tests/fake_agent.py copies its requests from tests/fixtures/qwen_permissions.json. If a Qwen
Code upgrade moves the questions, renames an option id or stops announcing a mode change, the
fake would go on passing tests the product fails; this re-records against the pinned Qwen Code
and fails on any change of shape (keys, nesting, option ids, kinds, update kinds, modes), not on
texts or numbers that differ from run to run. Re-run ``.venv/bin/python -m tests.record_qwen_shapes``
to update the fixture after checking the change.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from qwen_daemon.agents.questions import read_permission_request
from tests.record_qwen_shapes import FIXTURE, drift, record_fixture, signature

pytestmark = pytest.mark.timeout(180)


def fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


@pytest.mark.qwen
async def test_real_qwen_still_sends_the_recorded_shapes() -> None:
    recorded, fresh = fixture(), await record_fixture()
    changes = drift(signature(recorded), signature(fresh))
    assert changes == [], "Qwen Code's permission requests changed shape:\n" + "\n".join(changes)
    for name, scenario in fresh["scenarios"].items():
        then = read_permission_request(recorded["scenarios"][name]["request"]).fields()
        now = read_permission_request(scenario["request"]).fields()
        assert now.get("questions") == then.get("questions"), name
        assert now.get("plan") == then.get("plan"), name
        assert scenario["tool_result"] == recorded["scenarios"][name]["tool_result"], name
        # the fake ends its turns the same way (a rejection: end_turn, not cancelled)
        assert scenario["stop_reason"] == recorded["scenarios"][name]["stop_reason"], name


def test_drift_sees_a_moved_field_and_a_new_option_but_not_a_new_title() -> None:
    """The comparison itself: what counts as drift, and what is only a different run."""
    recorded = fixture()
    retitled = copy.deepcopy(recorded)
    request = retitled["scenarios"]["question"]["request"]
    request["toolCall"]["title"] = "Ask the user 1 question"
    assert drift(signature(recorded), signature(retitled)) == []

    moved = copy.deepcopy(recorded)
    request = moved["scenarios"]["question"]["request"]
    request["_meta"] = {"qwenQuestions": request["toolCall"]["_meta"].pop("qwenQuestions")}
    request["options"][0]["optionId"] = "proceed_always"
    changes = drift(signature(recorded), signature(moved))
    assert ".scenarios.question.request._meta: new in Qwen Code" in changes
    assert ".scenarios.question.request.toolCall._meta.qwenQuestions: only in the fixture" in changes
    assert any("optionId: 'proceed_once' in the fixture, 'proceed_always' now" in c for c in changes)

"""The fake agent's permission requests, built from what real Qwen Code sent (the recorded fixture).

Why: a fake that invents its own request shapes lets the tests pass while the product fails
against the real agent (it once sent questions in a top-level ``_meta`` Qwen Code never uses).
Every request here is a copy of ``tests/fixtures/qwen_permissions.json`` (written by
``tests/record_qwen_shapes.py`` from Qwen Code itself) with only its per-call values replaced:
session id, tool call id, title, workspace, and the question, plan or command the script names.
What follows an answer is copied the same way: the tool's completion (or, for a rejection, its
failure), and for "Allow All Edits" or a plan approval the ``current_mode_update`` plus the
``qwen/notify/session/mode-update`` notification Qwen Code sends when its mode changes.

Imported by ``tests/fake_agent.py`` as a sibling module (the fake runs as a script).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "qwen_permissions.json"
MODE_NOTIFICATION = "qwen/notify/session/mode-update"
#: the mode Qwen Code switches to after each plan-approval choice ("cancel" keeps planning)
PLAN_EXIT_MODES = {"restore_previous": "default", "proceed_always": "auto-edit", "proceed_once": "default"}
#: an edit's "Allow All Edits" switches the session to auto-edit
EDIT_MODES = {"proceed_always": "auto-edit"}


@functools.cache
def scenarios() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))["scenarios"]
    return data


def fill(value: Any, subs: dict[str, str]) -> Any:
    """A deep copy of ``value`` with every ``subs`` key replaced inside its strings."""
    if isinstance(value, dict):
        return {key: fill(item, subs) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, subs) for item in value]
    if isinstance(value, str):
        for old, new in subs.items():
            value = value.replace(old, new)
    return value


class Recorded:
    """One recorded scenario, re-addressed to a session and a tool call of the fake."""

    def __init__(self, name: str, session_id: str, call_id: str, cwd: str) -> None:
        self.data = scenarios()[name]
        self.call_id = call_id
        self.subs = {"<session_id>": session_id, "<workspace>": cwd}
        self.recorded_call_id = self.data["llm_tool_call"]["id"]

    def _own(self, value: Any) -> Any:
        value = fill(copy.deepcopy(value), self.subs)
        for item in (value, value.get("toolCall")) if isinstance(value, dict) else ():
            if isinstance(item, dict) and "toolCallId" in item:
                item["toolCallId"] = self.call_id
        return value

    def before(self) -> dict[str, Any]:
        """The tool_call update Qwen Code sends before it asks."""
        update: dict[str, Any] = self._own(self.data["before"][0])
        return update

    def request(self) -> dict[str, Any]:
        """The session/request_permission params."""
        params: dict[str, Any] = self._own(self.data["request"])
        return params

    def completion(self) -> dict[str, Any]:
        """The tool_call_update that completes the tool after an allow."""
        for entry in self.data["after"]:
            update = entry.get("update") or {}
            if update.get("sessionUpdate") == "tool_call_update" and update.get("status") == "completed":
                completed: dict[str, Any] = self._own(update)
                return completed
        raise KeyError(f"no completion recorded for {self.recorded_call_id}")

    def rejection(self) -> dict[str, Any]:
        """The failed tool_call_update Qwen Code sends when the user rejects the request.

        Recorded for write_file (``write_rejected``; a ``cancelled`` outcome gets the same reply);
        other tools are assumed to fail alike, under their own tool name.
        """
        recorded = scenarios()["write_rejected"]
        for entry in recorded["after"]:
            update = entry.get("update") or {}
            if update.get("sessionUpdate") == "tool_call_update" and update.get("status") == "failed":
                tool = self.data["llm_tool_call"]["name"]
                failed: dict[str, Any] = self._own(fill(update, {"write_file": tool}))
                return failed
        raise KeyError("no rejection recorded")

    def mode_change(self, mode_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The current_mode_update and Qwen Code's own mode notification, for ``mode_id``."""
        update: dict[str, Any] | None = None
        notification: dict[str, Any] | None = None
        for entry in self.data["after"]:
            if (entry.get("update") or {}).get("sessionUpdate") == "current_mode_update":
                update = {**self._own(entry["update"]), "currentModeId": mode_id}
            if entry.get("method") == MODE_NOTIFICATION:
                notification = {**self._own(entry["params"]), "currentModeId": mode_id}
        if update is None or notification is None:
            raise KeyError(f"no mode change recorded for {self.recorded_call_id}")
        return update, notification


def raw_questions(spec: str) -> list[dict[str, Any]]:
    """The ``question`` command's argument as Qwen Code's questions.

    A JSON object ``{"questions": [...]}`` (or a bare list) is taken as is; any other text is
    one single-select question with the choices Yes / No (Qwen Code requires descriptions).
    """
    if spec.startswith(("{", "[")):
        data = json.loads(spec)
        questions = data.get("questions") if isinstance(data, dict) else data
        if not isinstance(questions, list) or not questions:
            raise ValueError("question needs a non-empty list of questions")
        return questions
    options = [{"label": "Yes", "description": "Yes"}, {"label": "No", "description": "No"}]
    return [{"question": spec, "header": "Question", "options": options, "multiSelect": False}]


def question_request(recorded: Recorded, questions: list[dict[str, Any]]) -> dict[str, Any]:
    params = recorded.request()
    tool = params["toolCall"]
    tool["_meta"]["qwenQuestions"] = questions
    tool["rawInput"] = {"questions": questions}
    count = len(questions)
    tool["title"] = f"Ask user {count} question{'s' if count > 1 else ''}"
    return params


def answers_result(recorded: Recorded, questions: list[dict[str, Any]], answers: Any) -> dict[str, Any]:
    """The completion of ask_user_question, worded as Qwen Code words it for the model."""
    lines, given = [], []
    items = answers.items() if isinstance(answers, dict) else []
    for key, value in sorted(items, key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
        if not str(key).isdigit() or int(key) >= len(questions):
            continue
        question = questions[int(key)]
        lines.append(f"**{question.get('header') or f'Question {int(key) + 1}'}**: {value}")
        given.append({"answer": value, "question": question.get("question")})
    body = "\n".join(lines) if lines else "No valid answers were provided."
    text = f"User has provided the following answers:\n\n{body}"
    update = recorded.completion()
    update["content"] = [{"type": "content", "content": {"type": "text", "text": text}}]
    update["rawOutput"] = {"answers": given, "text": text, "type": "ask_user_question_answers"}
    return update


def titled(params: dict[str, Any], title: str) -> dict[str, Any]:
    """The fake's scripts name their edit (``permission Write notes.txt``): that is its title."""
    if "toolCall" in params:
        params["toolCall"]["title"] = title
    else:
        params["title"] = title
    return params


def plan_request(recorded: Recorded, plan: str) -> dict[str, Any]:
    old = recorded.data["llm_tool_call"]["arguments"]["plan"]
    return dict(fill(recorded.request(), {old: plan}))


def plan_completion(recorded: Recorded, plan: str) -> dict[str, Any]:
    old = recorded.data["llm_tool_call"]["arguments"]["plan"]
    return dict(fill(recorded.completion(), {old: plan}))


def shell_subs(recorded: Recorded, command: str) -> dict[str, str]:
    """Replace the recorded command (and its rule label, ``touch *``) with ``command``'s."""
    old = recorded.data["llm_tool_call"]["arguments"]["command"]
    root = command.split()[0] if command.split() else command
    return {old: command, f"{old.split()[0]} *": f"{root} *"}

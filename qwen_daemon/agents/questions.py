"""Permission requests that ask the user something: one shape for the daemon, one place per agent form.

Why: an agent asks its questions (and shows the plan it wants approved) inside a permission
request, each in its own non-standard way, and expects the answers back in its own way too. Qwen
Code puts them in ``toolCall._meta.qwenQuestions`` and reads a top-level ``answers`` object keyed
by question index beside ``outcome``, one string per question (a multi-select's labels joined by
", ", as its own dialogs send them). Browsers and the CLI should not have to know any of that, so
every request becomes::

    questions: [{question, header, options: [{label, description}], multi_select}]
    plan: "<markdown>"          (only for a plan approval)

and every answer arrives as ``{"<index>": "label or free text"}`` (a list of strings for a
multi-select). :func:`check_answers` refuses a wrong answer before anything reaches the agent.
Another agent's form is one more :class:`QuestionForm` in :data:`FORMS` (and, for plans, one more
reader in :data:`PLAN_READERS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qwen_daemon.agents.translate import permission_options, tool_call_fields
from qwen_daemon.errors import BadRequest

Question = dict[str, Any]  # {question, header, options: [{label, description}], multi_select}
#: answers as the daemon holds them once checked: question index -> the chosen labels / free text
Answers = dict[int, list[str]]
MAX_ANSWER_CHARS = 10_000


@dataclass(frozen=True)
class QuestionForm:
    """How one agent asks questions in a permission request and wants the answers back.

    ``read`` returns the questions in the daemon's shape, or None when the request is not in this
    form; ``reply`` turns checked answers into the fields the agent reads beside ``outcome``;
    ``free_text`` says whether the agent takes an answer that is none of the offered labels.
    """

    name: str
    read: Callable[[dict[str, Any]], list[Question] | None]
    reply: Callable[[Answers], dict[str, Any]]
    free_text: bool = True


@dataclass(frozen=True)
class Reply:
    """A checked answer: the response for the agent and, when there were any, the answers as given."""

    response: dict[str, Any]
    answers: dict[str, Any] | None = None


@dataclass(frozen=True)
class PermissionAsk:
    """A permission request in the daemon's shape (``form`` stays inside the daemon)."""

    tool_call: dict[str, Any]
    options: list[dict[str, Any]]
    questions: list[Question] | None = None
    plan: str | None = None
    form: QuestionForm | None = None

    def answer(self, option_id: str, answers: Any = None) -> Reply:
        """Check a user's answer; raises BadRequest (nothing is forwarded) for one it cannot take."""
        option = next((o for o in self.options if o["option_id"] == option_id), None)
        if option is None:
            offered = ", ".join(o["option_id"] for o in self.options)
            raise BadRequest(f"option {option_id!r} was not offered; choose one of: {offered}")
        fields, given = check_answers(self, option, answers)
        return Reply({"outcome": {"outcome": "selected", "optionId": option_id}, **fields}, given)

    def fields(self) -> dict[str, Any]:
        """What events and ``pending_permissions`` show beside request_id and created_at."""
        data: dict[str, Any] = {"tool_call": self.tool_call, "options": self.options}
        if self.questions is not None:
            data["questions"] = self.questions
        if self.plan is not None:
            data["plan"] = self.plan
        return data


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _question(raw: Any) -> Question | None:
    """One question in the daemon's shape; None for something that is not a question at all."""
    if not isinstance(raw, dict) or not isinstance(raw.get("question"), str):
        return None
    options = [
        {"label": o["label"], "description": _text(o.get("description"))}
        for o in raw.get("options") or []
        if isinstance(o, dict) and isinstance(o.get("label"), str)
    ]
    return {
        "question": raw["question"],
        "header": _text(raw.get("header")),
        "options": options,
        "multi_select": raw.get("multiSelect") is True,
    }


def _tool_meta(params: dict[str, Any]) -> dict[str, Any]:
    tool = params.get("toolCall")
    meta = tool.get("_meta") if isinstance(tool, dict) else None
    return meta if isinstance(meta, dict) else {}


# --- Qwen Code ----------------------------------------------------------------------------------


def _read_qwen(params: dict[str, Any]) -> list[Question] | None:
    raw = _tool_meta(params).get("qwenQuestions")
    if not isinstance(raw, list):
        return None
    questions = [q for q in map(_question, raw) if q is not None]
    return questions or None


def _reply_qwen(answers: Answers) -> dict[str, Any]:
    # Qwen Code reads one string per question index (its own dialogs join a multi-select's
    # labels with ", "); a list would reach the model as "A,B" and be dropped from its record
    # of trusted user answers.
    return {"answers": {str(index): ", ".join(values) for index, values in sorted(answers.items())}}


# Qwen Code adds an "Other" choice to every question itself: any text is a valid answer.
QWEN = QuestionForm("qwen", _read_qwen, _reply_qwen, free_text=True)
FORMS: tuple[QuestionForm, ...] = (QWEN,)


def _qwen_plan(params: dict[str, Any]) -> str | None:
    """Qwen Code's exit_plan_mode: the plan is the tool's ``plan`` argument (also its content)."""
    if _tool_meta(params).get("toolName") != "exit_plan_mode":
        return None
    tool = params["toolCall"]
    raw_input = tool.get("rawInput")
    if isinstance(raw_input, dict) and isinstance(raw_input.get("plan"), str):
        return str(raw_input["plan"])
    texts = [
        item["content"]["text"]
        for item in tool.get("content") or []
        if isinstance(item, dict)
        and isinstance(item.get("content"), dict)
        and isinstance(item["content"].get("text"), str)
    ]
    return "\n\n".join(texts) if texts else None


PLAN_READERS: tuple[Callable[[dict[str, Any]], str | None], ...] = (_qwen_plan,)


def read_permission_request(params: dict[str, Any]) -> PermissionAsk:
    """ACP ``session/request_permission`` params -> the daemon's shape of the request."""
    raw_tool = params.get("toolCall")
    raw_options = params.get("options")
    tool_call = tool_call_fields(raw_tool) if isinstance(raw_tool, dict) else {}
    options = permission_options(raw_options) if isinstance(raw_options, list) else []
    questions, form = None, None
    for candidate in FORMS:
        questions = candidate.read(params)
        if questions is not None:
            form = candidate
            break
    plan = next((p for p in (read(params) for read in PLAN_READERS) if p is not None), None)
    return PermissionAsk(tool_call, options, questions, plan, form)


# --- answers ------------------------------------------------------------------------------------


def _index(key: Any, count: int) -> int:
    if not isinstance(key, str) or not key.isascii() or not key.isdigit() or str(int(key)) != key:
        raise BadRequest(f'answers: {key!r} is not a question index; use "0" to "{count - 1}"')
    index = int(key)
    if index >= count:
        raise BadRequest(f"answers: there is no question {index}; the request asks {count}")
    return index


def _values(value: Any, question: Question, index: int, free_text: bool) -> list[str]:
    """One answer as a list of non-empty strings; raises BadRequest for the wrong shape."""
    if question["multi_select"]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"answers: question {index} is a multi-select; answer it with a list of strings")
        values = list(dict.fromkeys(v.strip() for v in value if v.strip()))
    else:
        if not isinstance(value, str):
            raise BadRequest(f"answers: question {index} takes one choice; answer it with a string")
        values = [value.strip()] if value.strip() else []
    if any(len(v) > MAX_ANSWER_CHARS for v in values):
        raise BadRequest(
            f"answers: the answer to question {index} is longer than {MAX_ANSWER_CHARS} characters"
        )
    labels = [o["label"] for o in question["options"]]
    if not free_text and any(v not in labels for v in values):
        raise BadRequest(f"answers: question {index} takes only its offered labels: {', '.join(labels)}")
    return values


def check_answers(
    ask: PermissionAsk, option: dict[str, Any], answers: Any
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Check ``answers`` to ``ask`` with ``option`` chosen: (fields beside ``outcome``, answers as given).

    A string that is none of a question's labels is free text (the user typed "Other"), where the
    agent's form takes it. Choosing an allow option requires an answer to every question; a
    reject forwards none. Raises BadRequest for answers the request cannot take.
    """
    if answers is None:
        answers = {}
    if not isinstance(answers, dict):
        raise BadRequest("field 'answers' must be an object keyed by question index")
    questions = ask.questions or []
    if answers and not questions:
        raise BadRequest("this permission request asks no questions; send it without 'answers'")
    free_text = ask.form.free_text if ask.form is not None else True
    checked: Answers = {}
    for key, value in answers.items():
        index = _index(key, len(questions))
        values = _values(value, questions[index], index, free_text)
        if values:
            checked[index] = values
    if not str(option.get("kind", "")).startswith("allow") or ask.form is None:
        return {}, None
    missing = [i for i in range(len(questions)) if i not in checked]
    if missing:
        names = "; ".join(f"{i} ({questions[i]['question']})" for i in missing)
        raise BadRequest(
            f"answers: choosing {option['option_id']!r} needs an answer to every question; missing {names}"
        )
    given = {
        str(i): values if questions[i]["multi_select"] else values[0] for i, values in sorted(checked.items())
    }
    return ask.form.reply(checked), given

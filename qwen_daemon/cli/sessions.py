"""CLI commands about sessions and agents: list, prune, rename, archive, reopen, agents, new, mode,
pending, answer.

They live apart from :mod:`~qwen_daemon.cli.lifecycle` (start, stop, status, url, token) to keep each module
small; like the rest of the CLI they only talk to the running daemon's API (or, for ``--prune``
with the daemon stopped, to the store), never importing Tornado or the ACP library.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

from qwen_daemon.cli.common import (
    EXIT_FAIL,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    Refused,
    call_daemon,
    print_err,
    running,
    session_list,
)
from qwen_daemon.client import ClientError, request_json
from qwen_daemon.config import Paths
from qwen_daemon.daemon_files import read_token
from qwen_daemon.terminal import one_line, printable


def _prune(args: argparse.Namespace, paths: Paths) -> int:
    """Remove closed sessions past the retention time: through the daemon, or the store if stopped."""
    info, health = running(paths)
    days = args.older_than_days
    if info is not None and health is not None:
        body = {} if days is None else {"older_than_days": days}
        try:
            _status, payload = request_json(
                info.url + "api/sessions/prune", "POST", read_token(paths), body, timeout=30.0
            )
        except ClientError as exc:
            print_err(str(exc))
            return EXIT_FAIL
        pruned = list(payload.get("pruned", [])) if isinstance(payload, dict) else []
    else:
        from qwen_daemon.config import load_settings
        from qwen_daemon.sessions.store import StoreError, prune_offline

        try:
            pruned = prune_offline(
                paths.database, load_settings(paths=paths).retention_days if days is None else days
            )
        except StoreError as exc:
            print_err(str(exc))
            return EXIT_FAIL
    print(f"pruned {len(pruned)} closed session(s)" + (": " + ", ".join(pruned) if pruned else ""))
    return EXIT_OK


def cmd_sessions(args: argparse.Namespace, paths: Paths) -> int:
    if args.prune:
        return _prune(args, paths)
    info, health = running(paths)
    if info is None or health is None:
        print_err("qwen-daemon is not running")
        return EXIT_NOT_RUNNING
    try:
        sessions = session_list(info, paths, archived=args.archived)
    except ClientError as exc:
        print_err(str(exc))
        return EXIT_FAIL
    if args.json:
        print(json.dumps(sessions, indent=2))
        return EXIT_OK
    if not sessions:
        print("no archived sessions" if args.archived else "no sessions")
        return EXIT_OK
    # escaped here (printing would escape them anyway) so the columns line up as printed
    rows = [[printable(str(s.get(k, ""))) for k in ("id", "state", "title", "cwd")] for s in sessions]
    header = ["ID", "STATE", "TITLE", "CWD"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return EXIT_OK


def _call(paths: Paths, method: str, path: str, expect: int, body: object | None = None) -> Any:
    """One call to the running daemon's API: its JSON answer, or None after printing why not."""
    try:
        status, payload = call_daemon(paths, method, path, body, timeout=120.0)
    except Refused:
        return None
    if status == expect and isinstance(payload, dict):
        return payload
    error = payload.get("error") if isinstance(payload, dict) else None
    print_err(str(error.get("message")) if isinstance(error, dict) else f"the daemon answered {status}")
    return None


def cmd_rename(args: argparse.Namespace, paths: Paths) -> int:
    """Give a session a new title (whitespace collapsed, as at create)."""
    payload = _call(paths, "PATCH", f"api/sessions/{args.session}", 200, {"title": args.title})
    if payload is None:
        return EXIT_FAIL
    print(f"{args.session}  title={payload.get('title')}")
    return EXIT_OK


def _set_archived(args: argparse.Namespace, paths: Paths, archived: bool) -> int:
    payload = _call(paths, "PATCH", f"api/sessions/{args.session}", 200, {"archived": archived})
    if payload is None:
        return EXIT_FAIL
    print(f"{args.session}  {'archived' if payload.get('archived') else 'unarchived'}")
    return EXIT_OK


def cmd_archive(args: argparse.Namespace, paths: Paths) -> int:
    """Hide a session from the default list (``sessions --archived`` shows it); history stays."""
    return _set_archived(args, paths, True)


def cmd_unarchive(args: argparse.Namespace, paths: Paths) -> int:
    return _set_archived(args, paths, False)


def cmd_reopen(args: argparse.Namespace, paths: Paths) -> int:
    """Bring a failed or closed session back to idle; the error says why when it cannot be."""
    payload = _call(paths, "POST", f"api/sessions/{args.session}/reopen", 200)
    if payload is None:
        return EXIT_FAIL
    print(f"{args.session}  state={payload.get('state')}")
    return EXIT_OK


def cmd_agents(args: argparse.Namespace, paths: Paths) -> int:
    """The named agents a session can use, and the modes each has advertised."""
    payload = _call(paths, "GET", "api/agents", 200)
    if payload is None:
        return EXIT_FAIL
    if args.json:
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    for agent in payload.get("agents", []):
        command = " ".join(agent.get("command") or ["(the pinned Qwen Code)"])
        modes = ", ".join(m.get("id", "") for m in agent.get("modes", [])) or "not known yet"
        star = "*" if agent.get("default") else " "
        print(f"{star} {agent.get('name', '')}  {command}  modes: {modes}")
    return EXIT_OK


def cmd_new(args: argparse.Namespace, paths: Paths) -> int:
    """Create a session with a chosen agent and mode; prints its id (or JSON)."""
    body: dict[str, Any] = {"cwd": os.path.abspath(args.cwd)}
    for name in ("title", "agent", "mode"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    payload = _call(paths, "POST", "api/sessions", 201, body)
    if payload is None:
        return EXIT_FAIL
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(f"{payload['id']}  agent={payload.get('agent')}  mode={payload.get('mode')}  {payload['cwd']}")
    return EXIT_OK


def cmd_mode(args: argparse.Namespace, paths: Paths) -> int:
    """Switch a session to another of the modes its agent offers."""
    payload = _call(paths, "POST", f"api/sessions/{args.session}/mode", 200, {"mode_id": args.mode})
    if payload is None:
        return EXIT_FAIL
    print(f"{args.session}  mode={payload.get('mode')}")
    return EXIT_OK


#: ``value`` on one line with its control characters escaped (see :mod:`qwen_daemon.terminal`;
#: everything printed is escaped anyway, this also keeps a multi-line text to its one line)
_printable = one_line


def _request_lines(request: dict[str, Any]) -> list[str]:
    """One pending request as the ``pending`` command prints it: id and title, options, questions."""
    tool = request.get("tool_call")
    tool = tool if isinstance(tool, dict) else {}
    lines = [f"{_printable(request.get('request_id'))}  {_printable(tool.get('title') or '(untitled)')}"]
    options = [
        f"{_printable(o.get('option_id'))} ({_printable(o.get('name'))})"
        for o in request.get("options") or []
        if isinstance(o, dict)
    ]
    lines.append("  options: " + (", ".join(options) or "none"))
    for index, question in enumerate(request.get("questions") or []):
        if not isinstance(question, dict):
            continue
        header = _printable(question.get("header"))
        kind = "several choices" if question.get("multi_select") else "one choice"
        label = f"[{header}] " if header else ""
        lines.append(f"  question {index}: {label}{_printable(question.get('question'))} ({kind})")
        for choice in question.get("options") or []:
            if isinstance(choice, dict):
                about = _printable(choice.get("description"))
                lines.append(f"    - {_printable(choice.get('label'))}" + (f": {about}" if about else ""))
    plan = request.get("plan")
    if isinstance(plan, str) and plan.strip():
        lines.append("  plan:")
        lines += [f"    {_printable(line)}" for line in plan.splitlines() if line.strip()]
    return lines


def cmd_pending(args: argparse.Namespace, paths: Paths) -> int:
    """The permission requests and questions a session waits on, with what ``answer`` needs."""
    detail = _call(paths, "GET", f"api/sessions/{args.session}", 200)
    if detail is None:
        return EXIT_FAIL
    pending = [p for p in detail.get("pending_permissions") or [] if isinstance(p, dict)]
    if args.json:
        print(json.dumps(pending, indent=2))  # ASCII-escaped: no control character gets through
        return EXIT_OK
    if not pending:
        print(f"{_printable(args.session)}  no pending requests")
        return EXIT_OK
    for request in pending:
        print("\n".join(_request_lines(request)))
    return EXIT_OK


def _answers(pairs: list[str], questions: list[Any]) -> dict[str, Any]:
    """``--answer INDEX=TEXT`` pairs as the API's answers: one string, or a list for a multi-select.

    Raises ValueError (a usage error) for a pair without ``=`` or whose INDEX is not a plain
    ASCII number: ``str.isdigit`` accepts "²", which ``int`` then refuses with a Python message.
    Whether an index exists, and the rest, is the daemon's to judge: its 400 is printed as is.
    """
    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        index, sep, text = pair.partition("=")
        index = index.strip()
        if not sep or not index:
            raise ValueError(f"--answer {pair!r}: write INDEX=TEXT, e.g. --answer 0=SQLite")
        if not re.fullmatch(r"[0-9]{1,9}", index):
            raise ValueError(
                f"--answer {pair!r}: INDEX must be the question's number (0, 1, ...), e.g. --answer 0=SQLite"
            )
        grouped.setdefault(str(int(index)), []).append(text)
    answers: dict[str, Any] = {}
    for index, texts in grouped.items():
        multi = int(index) < len(questions) and bool(questions[int(index)].get("multi_select"))
        answers[index] = texts if multi or len(texts) > 1 else texts[0]
    return answers


def cmd_answer(args: argparse.Namespace, paths: Paths) -> int:
    """Answer a pending permission request (and its questions) of a session."""
    detail = _call(paths, "GET", f"api/sessions/{args.session}", 200)
    if detail is None:
        return EXIT_FAIL
    pending: dict[str, Any] = next(
        (p for p in detail.get("pending_permissions", []) if p.get("request_id") == args.request), {}
    )
    try:
        answers = _answers(args.answer, pending.get("questions") or [])
    except ValueError as exc:
        print_err(str(exc))
        return EXIT_USAGE
    body: dict[str, Any] = {"option_id": args.option}
    if answers:
        body["answers"] = answers
    payload = _call(paths, "POST", f"api/sessions/{args.session}/permissions/{args.request}", 200, body)
    if payload is None:
        return EXIT_FAIL
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        shown = "  " + json.dumps(answers, ensure_ascii=False) if answers else ""
        print(f"{args.request}  answered {args.option}{shown}")
    return EXIT_OK

"""CLI commands about sessions and agents: list, prune, agents, new, mode.

They live apart from ``cli.py`` (lifecycle: start, stop, status, url, token) to keep each module
small; like the rest of the CLI they only talk to the running daemon's API (or, for ``--prune``
with the daemon stopped, to the store), never importing Tornado or the ACP library.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from qwen_daemon.cli import EXIT_FAIL, EXIT_NOT_RUNNING, EXIT_OK, _print_err, _running, _session_list
from qwen_daemon.client import ClientError, read_token, request_json
from qwen_daemon.config import Paths


def _prune(args: argparse.Namespace, paths: Paths) -> int:
    """Remove closed sessions past the retention time: through the daemon, or the store if stopped."""
    info, health = _running(paths)
    days = args.older_than_days
    if info is not None and health is not None:
        body = {} if days is None else {"older_than_days": days}
        try:
            _status, payload = request_json(
                info.url + "api/sessions/prune", "POST", read_token(paths), body, timeout=30.0
            )
        except ClientError as exc:
            _print_err(str(exc))
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
            _print_err(str(exc))
            return EXIT_FAIL
    print(f"pruned {len(pruned)} closed session(s)" + (": " + ", ".join(pruned) if pruned else ""))
    return EXIT_OK


def cmd_sessions(args: argparse.Namespace, paths: Paths) -> int:
    if args.prune:
        return _prune(args, paths)
    info, health = _running(paths)
    if info is None or health is None:
        _print_err("qwen-daemon is not running")
        return EXIT_NOT_RUNNING
    try:
        sessions = _session_list(info, paths)
    except ClientError as exc:
        _print_err(str(exc))
        return EXIT_FAIL
    if args.json:
        print(json.dumps(sessions, indent=2))
        return EXIT_OK
    if not sessions:
        print("no sessions")
        return EXIT_OK
    rows = [[str(s.get(k, "")) for k in ("id", "state", "title", "cwd")] for s in sessions]
    header = ["ID", "STATE", "TITLE", "CWD"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return EXIT_OK


def _api(paths: Paths, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
    """One call to the running daemon's API; raises ClientError (also when it is not running)."""
    info, health = _running(paths)
    if info is None or health is None:
        raise ClientError("qwen-daemon is not running")
    return request_json(info.url + path, method, read_token(paths), body, timeout=120.0)


def _api_error(payload: Any, status: int) -> str:
    error = payload.get("error") if isinstance(payload, dict) else None
    return str(error.get("message")) if isinstance(error, dict) else f"the daemon answered {status}"


def cmd_agents(args: argparse.Namespace, paths: Paths) -> int:
    """The named agents a session can use, and the modes each has advertised."""
    try:
        status, payload = _api(paths, "GET", "api/agents")
    except ClientError as exc:
        _print_err(str(exc))
        return EXIT_FAIL
    if status != 200 or not isinstance(payload, dict):
        _print_err(_api_error(payload, status))
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
    try:
        status, payload = _api(paths, "POST", "api/sessions", body)
    except ClientError as exc:
        _print_err(str(exc))
        return EXIT_FAIL
    if status != 201 or not isinstance(payload, dict):
        _print_err(_api_error(payload, status))
        return EXIT_FAIL
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(f"{payload['id']}  agent={payload.get('agent')}  mode={payload.get('mode')}  {payload['cwd']}")
    return EXIT_OK


def cmd_mode(args: argparse.Namespace, paths: Paths) -> int:
    """Switch a session to another of the modes its agent offers."""
    try:
        status, payload = _api(paths, "POST", f"api/sessions/{args.session}/mode", {"mode_id": args.mode})
    except ClientError as exc:
        _print_err(str(exc))
        return EXIT_FAIL
    if status != 200:
        _print_err(_api_error(payload, status))
        return EXIT_FAIL
    print(f"{args.session}  mode={payload.get('mode')}")
    return EXIT_OK

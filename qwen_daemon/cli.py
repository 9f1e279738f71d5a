"""The thin ``qwen-daemon`` command: parse, call discovery / HTTP / daemonize, print, exit.

Exit codes follow LSB where they apply: 0 success/running, 1 failure, 2 bad usage or
configuration, 3 not running, 4 state unknown (a process is there but does not answer).

Fast paths (``status``, ``url``, ``sessions``, ``stop``) import neither Tornado nor the ACP
library; only ``start`` loads the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from qwen_daemon import __version__
from qwen_daemon.client import ClientError, probe_health, read_token, request_json
from qwen_daemon.config import ConfigError, Paths, load_settings
from qwen_daemon.discovery import (
    DiscoveryInfo,
    looks_like_daemon,
    pid_alive,
    read_discovery,
    remove_discovery,
)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_UNKNOWN = 4

#: ``stop``: how long to wait after POST /api/stop, after SIGTERM, and after SIGKILL.
STOP_GRACE = 40.0
TERM_GRACE = 10.0
KILL_GRACE = 5.0


def _print_err(message: str) -> None:
    print(f"qwen-daemon: {message}", file=sys.stderr)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)  # polling another process's exit: there is nothing to await
    return True


# --- commands ---------------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    flags = {
        "host": args.host,
        "port": args.port,
        "agent_cmd": args.agent_cmd,
        "max_sessions": args.max_sessions,
        "idle_timeout": args.idle_timeout,
        "log_level": args.log_level,
    }
    try:
        settings = load_settings(flags=flags)
    except ConfigError as exc:
        _print_err(str(exc))
        return EXIT_USAGE
    from qwen_daemon import daemonize

    if args.foreground:
        return daemonize.run_foreground(settings)
    return daemonize.start_background(settings)


def _running(paths: Paths) -> tuple[DiscoveryInfo | None, dict[str, Any] | None]:
    info = read_discovery(paths)
    return info, (probe_health(info) if info is not None else None)


def cmd_stop(args: argparse.Namespace, paths: Paths) -> int:
    info = read_discovery(paths)
    if info is None:
        print("qwen-daemon is not running")
        return EXIT_OK
    token = read_token(paths)
    try:
        request_json(info.url + "api/stop", "POST", token=token, timeout=5.0)
    except ClientError as exc:
        _print_err(f"graceful stop request failed: {exc}")
    if not _wait_gone(info.pid, args.timeout):
        # Before signalling, make sure the PID is still that daemon and not a reused PID.
        if not _is_ours(info, paths):
            _print_err(
                f"pid {info.pid} did not stop and does not answer as qwen-daemon instance "
                f"{info.instance_id}; not sending signals to it"
            )
            return EXIT_FAIL
        _print_err(f"daemon (pid {info.pid}) did not stop in {args.timeout:.0f} s; sending SIGTERM")
        _signal(info.pid, signal.SIGTERM)
        if not _wait_gone(info.pid, TERM_GRACE):
            _print_err(f"daemon (pid {info.pid}) ignored SIGTERM; sending SIGKILL")
            _signal(info.pid, signal.SIGKILL)
            if not _wait_gone(info.pid, KILL_GRACE):
                _print_err(f"pid {info.pid} is still there after SIGKILL")
                return EXIT_FAIL
        remove_discovery(paths, info.instance_id)
    print("qwen-daemon stopped")
    return EXIT_OK


def _is_ours(info: DiscoveryInfo, paths: Paths) -> bool:
    """Is ``info.pid`` still that daemon? /health must confirm the instance id; failing that (a
    hung daemon), the PID lock file must name the same PID and the process must look like us."""
    if probe_health(info) is not None:
        return True
    try:
        recorded = paths.pid_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return recorded == str(info.pid) and looks_like_daemon(info.pid)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _session_list(info: DiscoveryInfo, paths: Paths) -> list[dict[str, Any]]:
    _status, payload = request_json(info.url + "api/sessions", token=read_token(paths), timeout=5.0)
    sessions = payload.get("sessions") if isinstance(payload, dict) else payload
    if not isinstance(sessions, list):
        raise ClientError("unexpected answer from GET /api/sessions")
    return [s for s in sessions if isinstance(s, dict)]


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    info, health = _running(paths)
    if info is None or health is None:
        if args.json:
            doc: dict[str, Any] = {"running": False}
            if info is not None:
                doc.update(pid=info.pid, url=info.url, responding=False)
            print(json.dumps(doc))
        elif info is not None:
            print(f"qwen-daemon (pid {info.pid}) is not responding at {info.url}")
        else:
            print("qwen-daemon is not running")
        return EXIT_UNKNOWN if info is not None else EXIT_NOT_RUNNING
    try:
        count: int | None = len(_session_list(info, paths))
    except ClientError:
        count = None
    if args.json:
        print(
            json.dumps(
                {
                    "running": True,
                    "pid": info.pid,
                    "url": info.url,
                    "port": info.port,
                    "version": health.get("version"),
                    "instance_id": info.instance_id,
                    "started_at": info.started_at,
                    "sessions": count,
                }
            )
        )
    else:
        sessions = "unknown" if count is None else str(count)
        print(f"qwen-daemon {health.get('version')} is running at {info.url} (pid {info.pid})")
        print(f"started {info.started_at}; sessions: {sessions}")
    return EXIT_OK


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
        import time

        from qwen_daemon.config import load_settings
        from qwen_daemon.sessions.store import Store, StoreError

        if not paths.database.exists():
            pruned = []
        else:
            retention = load_settings(paths=paths).retention_days if days is None else days
            try:
                store = Store(paths.database)
            except StoreError as exc:
                _print_err(str(exc))
                return EXIT_FAIL
            pruned = store.prunable(time.time() - retention * 86400)
            for session_id in pruned:
                store.delete_session(session_id)
            store.close()
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


def cmd_url(args: argparse.Namespace, paths: Paths) -> int:
    info = read_discovery(paths)
    token = read_token(paths)
    if info is None or token is None:
        _print_err("qwen-daemon is not running")
        return EXIT_NOT_RUNNING
    from urllib.parse import urlencode

    print(f"{info.url}?{urlencode({'token': token})}")
    return EXIT_OK


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen-daemon",
        description="Keep AI coding-agent (ACP) sessions alive in the background and serve them "
        "to browsers and this CLI.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    start = sub.add_parser("start", help="start the daemon", description="Start the daemon.")
    start.add_argument(
        "--foreground",
        action="store_true",
        help="stay in the foreground (for systemd/launchd); otherwise detach and print the URL",
    )
    # Values stay strings: config.load_settings parses and range-checks every layer alike.
    start.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    start.add_argument("--port", help="port to listen on (default 7861; 0 = any free port)")
    start.add_argument("--agent-cmd", help="command line of the ACP agent")
    start.add_argument("--max-sessions", help="most sessions open at once")
    start.add_argument("--idle-timeout", help="seconds an idle session is kept open")
    start.add_argument("--log-level", help="debug, info, warning or error")

    stop = sub.add_parser("stop", help="stop the daemon gracefully", description="Stop the daemon.")
    stop.add_argument(
        "--timeout",
        type=float,
        default=STOP_GRACE,
        help=f"seconds to wait for a graceful stop before signalling (default {STOP_GRACE:.0f})",
    )

    status = sub.add_parser(
        "status",
        help="is the daemon running? (exit 0 yes, 3 no)",
        description="Show whether the daemon runs. Exit 0 if running, 3 if not, 4 if not answering.",
    )
    status.add_argument("--json", action="store_true", help="print a JSON object")

    sessions = sub.add_parser("sessions", help="list sessions", description="List the daemon's sessions.")
    sessions.add_argument("--json", action="store_true", help="print JSON")
    sessions.add_argument(
        "--prune", action="store_true", help="remove closed sessions older than the retention time"
    )
    sessions.add_argument(
        "--older-than-days", type=float, metavar="DAYS", help="with --prune: instead of retention_days"
    )

    sub.add_parser(
        "url",
        help="print the browser URL (contains the token)",
        description="Print the URL to open in a browser, including the access token.",
    )
    agents = sub.add_parser("agents", help="list named agents and their modes", description="List agents.")
    agents.add_argument("--json", action="store_true", help="print JSON")
    new = sub.add_parser("new", help="create a session", description="Create a session (agent, mode).")
    new.add_argument("cwd", nargs="?", default=".", help="the workspace (default: the current directory)")
    new.add_argument("--agent", help="a named agent from `qwen-daemon agents` (default: default_agent)")
    new.add_argument("--mode", help="a mode the agent offers, e.g. plan, default, auto-edit")
    new.add_argument("--title", help="the session's title")
    new.add_argument("--json", action="store_true", help="print the session as JSON")
    mode = sub.add_parser("mode", help="switch a session's mode", description="Switch a session's mode.")
    mode.add_argument("session", help="session id")
    mode.add_argument("mode", help="a mode id the session's agent offers")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "start":
        return cmd_start(args)
    try:
        paths = Paths.from_platform()
    except OSError as exc:
        _print_err(f"cannot determine the runtime directories: {exc}")
        return EXIT_FAIL
    commands: dict[str, Callable[[argparse.Namespace, Paths], int]] = {
        "stop": cmd_stop,
        "status": cmd_status,
        "sessions": cmd_sessions,
        "url": cmd_url,
        "agents": cmd_agents,
        "new": cmd_new,
        "mode": cmd_mode,
    }
    try:
        return commands[args.command](args, paths)
    except KeyboardInterrupt:
        return 130

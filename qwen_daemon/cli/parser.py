"""The ``qwen-daemon`` command line's grammar: every subcommand, its arguments and their help.

Kept apart from what the commands do (the other modules of :mod:`qwen_daemon.cli`) so each stays
small; the parser of one subcommand builds alone (see :func:`build_parser`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from qwen_daemon import __version__

#: seconds ``stop`` waits for a graceful stop before it signals
STOP_GRACE = 40.0


def _add_start(sub: Any) -> None:
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
    start.add_argument("--max-sessions", help="most unarchived sessions (archive or delete to make room)")
    start.add_argument("--idle-timeout", help="ignored: sessions stay until you delete or archive them")
    start.add_argument("--log-level", help="debug, info, warning or error")
    start.add_argument("--log-max-bytes", help="rotate the log file at this size (default 10 MiB)")
    start.add_argument("--log-backups", help="rotated log files kept (default 3)")
    start.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    start.add_argument("--certfile", help="TLS certificate (PEM): serve HTTPS")
    start.add_argument("--keyfile", help="TLS private key (PEM) for --certfile")
    start.add_argument(
        "--insecure-remote", action="store_true", help="allow remote access without TLS (not recommended)"
    )
    start.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="extra Host name to answer to (repeatable)",
    )
    start.add_argument(
        "--public-url",
        metavar="URL",
        help="the address phones use (a tunnel or proxy in front, or the LAN address): pairing codes "
        "point there, and its host and origin are accepted",
    )


def _amount(text: str) -> float:
    """A finite number, 0 or more (argparse type): ``stop --timeout nan`` once waited forever."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, not {text!r}")
    return value


def _add_stop(sub: Any) -> None:
    stop = sub.add_parser("stop", help="stop the daemon gracefully", description="Stop the daemon.")
    stop.add_argument(
        "--timeout",
        type=_amount,
        default=STOP_GRACE,
        help=f"seconds to wait for a graceful stop before signalling (default {STOP_GRACE:.0f})",
    )


def _add_status(sub: Any) -> None:
    status = sub.add_parser(
        "status",
        help="is the daemon running? (exit 0 yes, 3 no)",
        description="Show whether the daemon runs. Exit 0 if running, 3 if not, 4 if not answering.",
    )
    status.add_argument("--json", action="store_true", help="print a JSON object")


def _add_sessions(sub: Any) -> None:
    sessions = sub.add_parser("sessions", help="list sessions", description="List the daemon's sessions.")
    sessions.add_argument("--json", action="store_true", help="print JSON")
    sessions.add_argument(
        "--prune", action="store_true", help="remove closed sessions older than the retention time"
    )
    sessions.add_argument(
        "--older-than-days", type=_amount, metavar="DAYS", help="with --prune: instead of retention_days"
    )
    sessions.add_argument("--archived", action="store_true", help="list the archived sessions instead")


def _add_rename(sub: Any) -> None:
    rename = sub.add_parser("rename", help="rename a session", description="Give a session a new title.")
    rename.add_argument("session", help="session id (an older id that begins with '-' goes after '--')")
    rename.add_argument("title", help="the new title (at most 200 characters)")


def _session_command(name: str, summary: str, description: str) -> Callable[[Any], None]:
    """A subcommand whose only argument is a session id (archive, unarchive, reopen)."""

    def add(sub: Any) -> None:
        parser = sub.add_parser(name, help=summary, description=description)
        parser.add_argument("session", help="session id (an older id that begins with '-' goes after '--')")

    return add


def _add_url(sub: Any) -> None:
    sub.add_parser(
        "url",
        help="print the browser URL (contains the token)",
        description="Print the URL to open in a browser, including the access token.",
    )


def _add_token(sub: Any) -> None:
    token = sub.add_parser("token", help="manage the access token", description="Manage the access token.")
    token.add_argument("action", choices=["rotate"], help="rotate: issue a new token, revoke the old one")


def _add_restart(sub: Any) -> None:
    restart = sub.add_parser(
        "restart",
        help="stop, then start the daemon",
        description="Restart the daemon (through systemd/launchd when one manages it).",
    )
    restart.add_argument("--timeout", type=_amount, default=STOP_GRACE, help="seconds to wait for the stop")


def _add_agents(sub: Any) -> None:
    agents = sub.add_parser("agents", help="list named agents and their modes", description="List agents.")
    agents.add_argument("--json", action="store_true", help="print JSON")


def _add_new(sub: Any) -> None:
    new = sub.add_parser("new", help="create a session", description="Create a session (agent, mode).")
    new.add_argument("cwd", nargs="?", default=".", help="the workspace (default: the current directory)")
    new.add_argument("--agent", help="a named agent from `qwen-daemon agents` (default: default_agent)")
    new.add_argument("--mode", help="a mode the agent offers, e.g. plan, default, auto-edit")
    new.add_argument("--title", help="the session's title")
    new.add_argument("--json", action="store_true", help="print the session as JSON")


def _add_mode(sub: Any) -> None:
    mode = sub.add_parser("mode", help="switch a session's mode", description="Switch a session's mode.")
    mode.add_argument("session", help="session id (an older id that begins with '-' goes after '--')")
    mode.add_argument("mode", help="a mode id the session's agent offers")


def _add_pending(sub: Any) -> None:
    pending = sub.add_parser(
        "pending",
        help="show a session's pending permission requests and questions",
        description="Show what a session waits on: each pending request's id and tool, its options "
        "(id and name) and its questions with their choices, numbered as `answer --answer` takes them.",
    )
    pending.add_argument("session", help="session id (an older id that begins with '-' goes after '--')")
    pending.add_argument("--json", action="store_true", help="print the pending requests as JSON")


def _add_answer(sub: Any) -> None:
    answer = sub.add_parser(
        "answer",
        help="answer a session's permission request or question",
        description="Answer a pending permission request: choose one of its options and, when it "
        "asks questions, answer each by index. A text that is none of a question's choices is a "
        "free answer. `qwen-daemon pending SESSION` shows a session's pending requests with their "
        "ids, options and questions.",
    )
    answer.add_argument("session", help="session id (an older id that begins with '-' goes after '--')")
    answer.add_argument("request", help="the permission request's id")
    answer.add_argument(
        "--option", required=True, metavar="ID", help="the chosen option id, e.g. proceed_once"
    )
    answer.add_argument(
        "--answer",
        action="append",
        default=[],
        metavar="INDEX=TEXT",
        help="the answer to question INDEX (repeatable; repeat an index to pick several choices of a "
        "multi-select: --answer 1=A --answer 1=B)",
    )
    answer.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")


def _add_pair(sub: Any) -> None:
    pair = sub.add_parser(
        "pair",
        help="log a phone in: print a one-time QR code (valid 2 minutes)",
        description="Print a QR code and the URL of a one-time pairing code: opening it (within two "
        "minutes, once) asks that browser to log in as a new device. Uses public_url when set.",
    )
    pair.add_argument("--json", action="store_true", help='print {"url", "code", "expires_at"}')


def _add_devices(sub: Any) -> None:
    devices = sub.add_parser(
        "devices",
        help="list, log out or rename the logged-in browsers",
        description="List the devices (browsers logged in by the token URL or a pairing code); "
        "`devices revoke ID` logs one out at once, `devices rename ID NAME` renames it.",
    )
    devices.add_argument("--json", action="store_true", help="print the list as JSON")
    actions = devices.add_subparsers(dest="action", metavar="ACTION")
    revoke = actions.add_parser("revoke", help="log a device out", description="Log a device out.")
    revoke.add_argument("device", help="the device's id (from `qwen-daemon devices`)")
    rename = actions.add_parser("rename", help="rename a device", description="Rename a device.")
    rename.add_argument("device", help="the device's id (from `qwen-daemon devices`)")
    rename.add_argument("name", help="its new name (1 to 100 characters)")


def _add_service(sub: Any) -> None:
    """Add ``service`` to the CLI's subcommands."""
    from qwen_daemon.service.owner import MANAGERS  # only `service` pays for the backends' module

    service = sub.add_parser(
        "service",
        help="install the daemon as a systemd user service or a LaunchAgent",
        description="Hand the daemon to the OS supervisor (systemd --user on Linux, launchd on macOS), "
        "so it starts at login and comes back after a crash.",
    )
    actions = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install",
        help="write the unit/plist for this installation and enable it",
        description="Render the shipped unit (or plist) with this installation's path and your PATH, "
        "write it, and enable it. Safe to run again.",
    )
    install.add_argument("--now", action="store_true", help="also start it now")
    install.add_argument(
        "--socket",
        action="store_true",
        help="systemd: also install qwen-daemon.socket (start on first visit)",
    )
    install.add_argument("--dry-run", action="store_true", help="print what would be written; change nothing")
    uninstall = actions.add_parser(
        "uninstall", help="stop, disable and remove what install wrote", description="Undo `service install`."
    )
    status = actions.add_parser(
        "status",
        help="the supervisor's view (exit 0 active, 3 not)",
        description="Show the supervisor's view of the service. Exit 0 if active, 3 if not.",
    )
    status.add_argument("--json", action="store_true", help="print a JSON object")
    for action in (install, uninstall, status):
        action.add_argument(
            "--manager", choices=MANAGERS, help="systemd or launchd (default: this platform's)"
        )


def _add_logs(sub: Any) -> None:
    """Add ``logs`` to the CLI's subcommands."""
    logs = sub.add_parser(
        "logs",
        help="show the daemon's log",
        description="Show the daemon's log: the journal under systemd, else its log file.",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=100, help="how many past lines (default 100)")


#: each subcommand and what adds its parser, in the order ``--help`` lists them
SUBCOMMANDS: dict[str, Callable[[Any], None]] = {
    "start": _add_start,
    "stop": _add_stop,
    "status": _add_status,
    "sessions": _add_sessions,
    "rename": _add_rename,
    "archive": _session_command(
        "archive", "archive a session", "Move a session to the archived list; prompting it brings it back."
    ),
    "unarchive": _session_command(
        "unarchive", "unarchive a session", "Move an archived session back to the session list."
    ),
    "reopen": _session_command(
        "reopen",
        "reopen a failed session",
        "Bring a failed (or closed) session back to idle; its next prompt restarts the agent.",
    ),
    "url": _add_url,
    "token": _add_token,
    "restart": _add_restart,
    "service": _add_service,
    "logs": _add_logs,
    "agents": _add_agents,
    "new": _add_new,
    "mode": _add_mode,
    "pending": _add_pending,
    "answer": _add_answer,
    "pair": _add_pair,
    "devices": _add_devices,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser: every subcommand, or with ``only`` just that one.

    Why ``only``: argparse looks each parser's messages up through gettext, which searches the disk
    every time; building the whole tree took ~10 ms of every command, ``start`` included.
    """
    parser = argparse.ArgumentParser(
        prog="qwen-daemon",
        description="Keep AI coding-agent (ACP) sessions alive in the background and serve them "
        "to browsers and this CLI.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, add in SUBCOMMANDS.items():
        if only is None or only == name:
            add(sub)
    return parser

"""The ``service`` and ``logs`` command lines, kept beside the code they drive."""

from __future__ import annotations

from typing import Any

from qwen_daemon.service import MANAGERS


def add_service(sub: Any) -> None:
    """Add ``service`` to the CLI's subcommands."""
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


def add_logs(sub: Any) -> None:
    """Add ``logs`` to the CLI's subcommands."""
    logs = sub.add_parser(
        "logs",
        help="show the daemon's log",
        description="Show the daemon's log: the journal under systemd, else its log file.",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=100, help="how many past lines (default 100)")

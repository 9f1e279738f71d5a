"""The thin ``qwen-daemon`` command: parse, call discovery / HTTP / daemonize, print, exit.

Modules: ``parser`` (the grammar), ``common`` (exit codes, printing, asking the daemon),
``lifecycle`` (start, stop, restart, status, url, token), ``standalone`` (stopping a daemon no
supervisor owns), ``sessions`` (sessions and agents), ``devices`` (pair, devices), ``service``
(``service``, ``logs``, and start/stop/restart under systemd or launchd). Only this package
prints; :mod:`qwen_daemon.service`'s backends report through the callback they are given.

Exit codes (:mod:`~qwen_daemon.cli.common`) follow LSB where they apply: 0 success/running,
1 failure, 2 bad usage or configuration, 3 not running, 4 state unknown.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from qwen_daemon.cli.common import EXIT_FAIL, print_err, wait_gone
from qwen_daemon.cli.parser import SUBCOMMANDS, build_parser
from qwen_daemon.config import ConfigError, Paths
from qwen_daemon.terminal import guarded_stdio

__all__ = ["SUBCOMMANDS", "build_parser", "main", "wait_gone"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; everything it prints goes through :func:`~qwen_daemon.terminal.printable`
    (titles, folder names and the daemon's messages may carry terminal escapes)."""
    with guarded_stdio():
        return _main(list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None  # else: --help, --version, a typo
    args = build_parser(only=command).parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `qwen-daemon url | head -c 10`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_FAIL
    except ConfigError as exc:  # e.g. UnsafePath: a link or another user's file where ours should be
        print_err(str(exc))
        return EXIT_FAIL
    except OSError as exc:  # a file the command needs is unusable (a directory, unreadable): which
        name = exc.filename2 or exc.filename  # for a rename, the file it was to replace
        print_err(f"{name}: {exc.strerror or exc}" if name else str(exc))
        return EXIT_FAIL


def _service_command(args: argparse.Namespace, paths: Paths) -> int:
    from qwen_daemon.cli import service  # the supervisor backends load only for these commands

    return service.cmd_service(args, paths) if args.command == "service" else service.cmd_logs(args, paths)


def _run(args: argparse.Namespace) -> int:
    from qwen_daemon.cli import devices, lifecycle, sessions

    if args.command == "start":
        return lifecycle.cmd_start(args)
    try:
        paths = Paths.from_platform()
    except OSError as exc:
        print_err(f"cannot determine the runtime directories: {exc}")
        return EXIT_FAIL
    commands: dict[str, Callable[[argparse.Namespace, Paths], int]] = {
        "stop": lifecycle.cmd_stop,
        "status": lifecycle.cmd_status,
        "sessions": sessions.cmd_sessions,
        "rename": sessions.cmd_rename,
        "archive": sessions.cmd_archive,
        "unarchive": sessions.cmd_unarchive,
        "reopen": sessions.cmd_reopen,
        "url": lifecycle.cmd_url,
        "token": lifecycle.cmd_token,
        "restart": lifecycle.cmd_restart,
        "service": _service_command,
        "logs": _service_command,
        "agents": sessions.cmd_agents,
        "new": sessions.cmd_new,
        "mode": sessions.cmd_mode,
        "pending": sessions.cmd_pending,
        "answer": sessions.cmd_answer,
        "pair": devices.cmd_pair,
        "devices": devices.cmd_devices,
    }
    return commands[args.command](args, paths)

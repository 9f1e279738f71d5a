"""The daemon's lifecycle commands: ``start``, ``stop``, ``restart``, ``status``, ``url``, ``token``.

Fast paths (``status``, ``url``, ``stop``) import neither Tornado nor the ACP library; only
``start`` loads the server.

One owner: when systemd or launchd manages the daemon (``qwen-daemon service install``, or a
packaged unit), ``start``/``stop``/``restart`` go through it (:mod:`qwen_daemon.cli.service`)
and never daemonize a second copy beside it; ``start --foreground`` is what the supervisor runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from qwen_daemon.cli.common import (
    EXIT_FAIL,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    print_err,
    running,
    session_list,
)
from qwen_daemon.cli.standalone import start_flags, stop_standalone
from qwen_daemon.client import ClientError, request_json
from qwen_daemon.config import ConfigError, Paths, load_settings
from qwen_daemon.daemon_files import read_token, secure_paths
from qwen_daemon.discovery import browser_url, read_discovery, starting_pid
from qwen_daemon.private_files import UnsafePath, write_private_file

if TYPE_CHECKING:
    from qwen_daemon.config import Settings
    from qwen_daemon.service.base import Supervisor, SupervisorStatus


# --- commands ---------------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    flags = {
        "host": args.host,
        "port": args.port,
        "agent_cmd": args.agent_cmd,
        "max_sessions": args.max_sessions,
        "idle_timeout": args.idle_timeout,
        "log_level": args.log_level,
        "log_max_bytes": args.log_max_bytes,
        "log_backups": args.log_backups,
        "allow_remote": True if args.allow_remote else None,
        "insecure_remote": True if args.insecure_remote else None,
        "certfile": args.certfile,
        "keyfile": args.keyfile,
        "allowed_hosts": args.allowed_host,
        "public_url": args.public_url,
    }
    paths = Paths.from_platform()
    try:  # before config.toml is read or the start flags written: a link or a foreign file stops start
        for repair in secure_paths(paths):
            print(f"qwen-daemon: warning: {repair}", file=sys.stderr)
        settings = load_settings(flags=flags, paths=paths)
    except UnsafePath as exc:  # config.toml: not a bad setting but an unsafe file, like the others
        print_err(f"cannot start: {exc}")
        return EXIT_FAIL
    except ConfigError as exc:
        print_err(str(exc))
        return EXIT_USAGE
    if not args.foreground:  # in the foreground the daemon's log (stderr) says it, once
        for notice in settings.notices:
            print(f"qwen-daemon: warning: {notice}", file=sys.stderr)
    owner = None if args.foreground else _owner()  # --foreground is what the supervisor runs
    if owner is not None:
        import qwen_daemon.cli.service as supervised

        given = sorted(f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None)
        return supervised.start(owner, settings.paths, given)
    from qwen_daemon import daemonize

    _credentials_note(settings)
    recorded = {k: v for k, v in flags.items() if v is not None}
    try:  # for `restart`, which would otherwise come back with other settings (port, agent)
        write_private_file(settings.paths.start_flags_file, json.dumps(recorded), durable=False)
    except OSError as exc:
        print_err(f"cannot record the start flags for restart: {exc}")
    if args.foreground:
        return daemonize.run_foreground(settings)
    return daemonize.start_background(settings)


def _credentials_note(settings: Settings) -> None:
    """One line when the default agent is Qwen Code and it has no credentials; the daemon still
    starts (they may come before the first session), but otherwise a refused session is the first
    the user hears of it."""
    from qwen_daemon.agents import credentials
    from qwen_daemon.agents.registry import AgentNotFound, resolve_spec

    try:
        agent = resolve_spec(settings.agent_spec())
    except AgentNotFound:
        return  # the daemon refuses to start, and says why
    if agent.qwen_code and credentials.find_credentials({**os.environ, **agent.env}) is None:
        print_err(credentials.HINT)


def _owner() -> Supervisor | None:
    """The supervisor that owns the daemon (one owner), or None when it is standalone."""
    from qwen_daemon.service.owner import detect

    return detect()


def cmd_stop(args: argparse.Namespace, paths: Paths) -> int:
    owner = _owner()
    if owner is not None:
        import qwen_daemon.cli.service as supervised

        return supervised.stop(owner, paths, args.timeout)
    return stop_standalone(paths, args.timeout)


def cmd_restart(args: argparse.Namespace, paths: Paths) -> int:
    owner = _owner()
    if owner is not None:
        import qwen_daemon.cli.service as supervised

        return supervised.restart(owner, paths, args.timeout)
    flags = start_flags(paths)
    try:
        settings = load_settings(flags=flags, paths=paths)
    except ConfigError as exc:
        print_err(str(exc))
        return EXIT_USAGE
    if flags:
        print(
            "restarting with the flags of the last start: "
            + " ".join(f"--{k.replace('_', '-')}" for k in flags)
        )
    code = stop_standalone(paths, args.timeout)
    if code != EXIT_OK:
        return code
    from qwen_daemon import daemonize

    return daemonize.start_background(settings)


def _supervisor() -> tuple[str, SupervisorStatus | None]:
    """(manager name, its status or None): who manages the daemon, and what it says."""
    from qwen_daemon.service.base import ServiceError

    owner = _owner()
    if owner is None:
        return "standalone", None
    try:
        return owner.name, owner.status()
    except ServiceError as exc:
        print_err(f"cannot ask {owner.name}: {exc}")
        return owner.name, None


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    manager, supervisor = _supervisor()
    managed = {"manager": manager, "supervisor": supervisor.to_json() if supervisor else None}
    if supervisor is not None:
        managed_line = f"managed by {supervisor.describe()}"
    else:
        managed_line = f"managed by: {manager}" + (
            " (no systemd unit or LaunchAgent)" if manager == "standalone" else ""
        )
    info, health = running(paths)
    if info is None or health is None:
        starting = starting_pid(paths) if info is None else None
        if args.json:
            doc: dict[str, Any] = {"running": False, **managed}
            if info is not None:
                doc.update(pid=info.pid, url=info.url, responding=False)
            elif starting is not None:
                doc.update(pid=starting, starting=True)
            print(json.dumps(doc))
        else:
            if info is not None:
                print(f"qwen-daemon (pid {info.pid}) is not responding at {info.url}")
            elif starting is not None:
                print(f"qwen-daemon (pid {starting}) is starting")
            else:
                print("qwen-daemon is not running")
            print(managed_line)
        return EXIT_UNKNOWN if info is not None or starting is not None else EXIT_NOT_RUNNING
    try:
        count: int | None = len(session_list(info, paths))
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
                    # "degraded" (with the reason) while the session database cannot be written
                    "status": health.get("status"),
                    "reason": health.get("reason"),
                    **managed,
                }
            )
        )
    else:
        sessions = "unknown" if count is None else str(count)
        print(f"qwen-daemon {health.get('version')} is running at {info.url} (pid {info.pid})")
        print(f"started {info.started_at}; sessions: {sessions}")
        if health.get("status") == "degraded":
            print(f"DEGRADED: {health.get('reason')} ({paths.database})")
            print("  new events are held in memory; prompts are refused until a write succeeds again")
        print(managed_line)
        if supervisor is not None and supervisor.main_pid != info.pid:
            print(f"note: pid {info.pid} runs outside {manager}; `qwen-daemon restart` hands it over")
    return EXIT_OK


def cmd_url(args: argparse.Namespace, paths: Paths) -> int:
    info = read_discovery(paths)
    if info is None:
        print_err("qwen-daemon is not running")
        return EXIT_NOT_RUNNING
    token = read_token(paths)
    if token is None:
        print_err(f"cannot read the token file {paths.token_file}; 'qwen-daemon token rotate' makes one")
        return EXIT_FAIL
    print(browser_url(info.url, token))
    return EXIT_OK


def cmd_token(args: argparse.Namespace, paths: Paths) -> int:
    """``token rotate``: a running daemon swaps its token and drops old connections; else the file."""
    info, health = running(paths)
    if info is not None and health is not None:
        try:
            _status, payload = request_json(info.url + "api/token/rotate", "POST", read_token(paths), {})
        except ClientError as exc:
            print_err(str(exc))
            return EXIT_FAIL
        closed = payload.get("closed_websockets", 0) if isinstance(payload, dict) else 0
        print(f"token rotated; {closed} open connection(s) closed. New URL:")
        return cmd_url(args, paths)
    import sqlite3

    from qwen_daemon.daemon_files import rotate_token
    from qwen_daemon.devices import revoke_all_stored
    from qwen_daemon.sessions.store import StoreError

    rotate_token(paths)
    try:  # a running daemon logs its devices out itself; here the database must say so
        revoke_all_stored(paths.database)
    except (sqlite3.Error, StoreError) as exc:
        print_err(
            f"token rotated, but the devices in {paths.database} could not be logged out ({exc}); "
            "start the daemon and run 'qwen-daemon token rotate' again"
        )
        return EXIT_FAIL
    print("token rotated and every device logged out (the daemon is not running; it uses the new token)")
    return EXIT_OK

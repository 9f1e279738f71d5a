"""The thin ``qwen-daemon`` command: parse, call discovery / HTTP / daemonize, print, exit.

Exit codes follow LSB where they apply: 0 success/running, 1 failure, 2 bad usage or
configuration, 3 not running, 4 state unknown (a process is there but does not answer).

Fast paths (``status``, ``url``, ``sessions``, ``stop``) import neither Tornado nor the ACP
library; only ``start`` loads the server.

One owner: when systemd or launchd manages the daemon (``qwen-daemon service install``, or a
packaged unit), ``start``/``stop``/``restart`` go through it (:mod:`qwen_daemon.service.commands`)
and never daemonize a second copy beside it; ``start --foreground`` is what the supervisor runs.
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
from typing import TYPE_CHECKING, Any

from qwen_daemon.cli_parser import SUBCOMMANDS, build_parser
from qwen_daemon.client import ClientError, probe_health, read_token, request_json
from qwen_daemon.config import ConfigError, Paths, load_settings
from qwen_daemon.discovery import (
    DiscoveryInfo,
    looks_like_daemon,
    pid_alive,
    read_discovery,
    read_pidfile,
    remove_discovery,
    starting_pid,
)
from qwen_daemon.private_files import UnsafePath, read_private, secure_paths, write_private_file
from qwen_daemon.terminal import guarded_stdio

if TYPE_CHECKING:
    from qwen_daemon.config import Settings
    from qwen_daemon.service import Supervisor, SupervisorStatus

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_UNKNOWN = 4

#: ``stop``: how long to wait after SIGTERM, and after SIGKILL (after POST /api/stop: STOP_GRACE)
TERM_GRACE = 10.0
KILL_GRACE = 5.0


def _print_err(message: str) -> None:
    print(f"qwen-daemon: {message}", file=sys.stderr)


def wait_gone(pid: int, timeout: float) -> bool:
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
        _print_err(f"cannot start: {exc}")
        return EXIT_FAIL
    except ConfigError as exc:
        _print_err(str(exc))
        return EXIT_USAGE
    if not args.foreground:  # in the foreground the daemon's log (stderr) says it, once
        for notice in settings.notices:
            print(f"qwen-daemon: warning: {notice}", file=sys.stderr)
    owner = None if args.foreground else _owner()  # --foreground is what the supervisor runs
    if owner is not None:
        from qwen_daemon.service import commands

        given = sorted(f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None)
        return commands.start(owner, settings.paths, given)
    from qwen_daemon import daemonize

    _credentials_note(settings)
    recorded = {k: v for k, v in flags.items() if v is not None}
    try:  # for `restart`, which would otherwise come back with other settings (port, agent)
        write_private_file(settings.paths.start_flags_file, json.dumps(recorded), durable=False)
    except OSError as exc:
        _print_err(f"cannot record the start flags for restart: {exc}")
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
        _print_err(credentials.HINT)


def start_flags(paths: Paths) -> dict[str, Any]:
    """The flags the last standalone ``start`` was given ({} if none are recorded)."""
    try:  # an unsafe file raises UnsafePath: its flags may name a command to run
        flags = json.loads(read_private(paths.start_flags_file))
    except (OSError, ValueError):
        return {}
    return flags if isinstance(flags, dict) else {}


def _running(paths: Paths) -> tuple[DiscoveryInfo | None, dict[str, Any] | None]:
    info = read_discovery(paths)
    return info, (probe_health(info) if info is not None else None)


def _owner() -> Supervisor | None:
    """The supervisor that owns the daemon (one owner), or None when it is standalone."""
    from qwen_daemon import service

    return service.detect()


def cmd_stop(args: argparse.Namespace, paths: Paths) -> int:
    owner = _owner()
    if owner is not None:
        from qwen_daemon.service import commands

        return commands.stop(owner, paths, args.timeout)
    return stop_standalone(paths, args.timeout)


def stop_standalone(paths: Paths, timeout: float) -> int:
    """Stop the daemon the discovery file names: POST /api/stop, then SIGTERM, then SIGKILL."""
    info = read_discovery(paths)
    if info is None:
        pid = starting_pid(paths)
        if pid is None:
            print("qwen-daemon is not running")
            return EXIT_OK
        # between taking the PID lock and publishing daemon.json: nothing to ask over HTTP yet
        _print_err(f"qwen-daemon (pid {pid}) is still starting; sending SIGTERM (it stops in order)")
        if not _terminate(pid):
            return EXIT_FAIL
        print("qwen-daemon stopped")
        return EXIT_OK
    try:
        token = read_token(paths)
    except ConfigError as exc:  # a link or a foreign file at the token: stop it by signal instead
        _print_err(str(exc))
        token = None
    try:
        request_json(info.url + "api/stop", "POST", token=token, timeout=5.0)
        asked = True
    except ClientError as exc:  # e.g. the token file is gone: nothing to wait for, signal at once
        _print_err(f"graceful stop request failed: {exc}")
        asked = False
    if not wait_gone(info.pid, timeout if asked else 0.0):
        # Before signalling, make sure the PID is still that daemon and not a reused PID.
        if not _is_ours(info, paths):
            _print_err(
                f"pid {info.pid} did not stop and does not answer as qwen-daemon instance "
                f"{info.instance_id}; not sending signals to it"
            )
            return EXIT_FAIL
        why = f"did not stop in {timeout:.0f} s" if asked else "was not asked"
        _print_err(f"daemon (pid {info.pid}) {why}; sending SIGTERM (it stops in order)")
        if not _terminate(info.pid):
            return EXIT_FAIL
        remove_discovery(paths, info.instance_id)
    print("qwen-daemon stopped")
    return EXIT_OK


def _terminate(pid: int) -> bool:
    """SIGTERM, then SIGKILL if it is ignored; False if the process is still there after both."""
    _signal(pid, signal.SIGTERM)
    if not wait_gone(pid, TERM_GRACE):
        _print_err(f"daemon (pid {pid}) ignored SIGTERM; sending SIGKILL")
        _signal(pid, signal.SIGKILL)
        if not wait_gone(pid, KILL_GRACE):
            _print_err(f"pid {pid} is still there after SIGKILL")
            return False
    return True


def cmd_restart(args: argparse.Namespace, paths: Paths) -> int:
    owner = _owner()
    if owner is not None:
        from qwen_daemon.service import commands

        return commands.restart(owner, paths, args.timeout)
    flags = start_flags(paths)
    try:
        settings = load_settings(flags=flags, paths=paths)
    except ConfigError as exc:
        _print_err(str(exc))
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


def _is_ours(info: DiscoveryInfo, paths: Paths) -> bool:
    """Is ``info.pid`` still that daemon? /health must confirm the instance id; failing that (a
    hung daemon), the PID lock file must name the same PID and the process must look like us."""
    if probe_health(info) is not None:
        return True
    return read_pidfile(paths) == info.pid and looks_like_daemon(info.pid)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _session_list(info: DiscoveryInfo, paths: Paths, *, archived: bool = False) -> list[dict[str, Any]]:
    url = info.url + ("api/sessions?archived=true" if archived else "api/sessions")
    _status, payload = request_json(url, token=read_token(paths), timeout=5.0)
    sessions = payload.get("sessions") if isinstance(payload, dict) else payload
    if not isinstance(sessions, list):
        raise ClientError("unexpected answer from GET /api/sessions")
    return [s for s in sessions if isinstance(s, dict)]


def _supervisor() -> tuple[str, SupervisorStatus | None]:
    """(manager name, its status or None): who manages the daemon, and what it says."""
    from qwen_daemon.service import ServiceError

    owner = _owner()
    if owner is None:
        return "standalone", None
    try:
        return owner.name, owner.status()
    except ServiceError as exc:
        _print_err(f"cannot ask {owner.name}: {exc}")
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
    info, health = _running(paths)
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
        _print_err("qwen-daemon is not running")
        return EXIT_NOT_RUNNING
    token = read_token(paths)
    if token is None:
        _print_err(f"cannot read the token file {paths.token_file}; 'qwen-daemon token rotate' makes one")
        return EXIT_FAIL
    from urllib.parse import urlencode

    print(f"{info.url}?{urlencode({'token': token})}")
    return EXIT_OK


def cmd_token(args: argparse.Namespace, paths: Paths) -> int:
    """``token rotate``: a running daemon swaps its token and drops old connections; else the file."""
    info, health = _running(paths)
    if info is not None and health is not None:
        try:
            _status, payload = request_json(info.url + "api/token/rotate", "POST", read_token(paths), {})
        except ClientError as exc:
            _print_err(str(exc))
            return EXIT_FAIL
        closed = payload.get("closed_websockets", 0) if isinstance(payload, dict) else 0
        print(f"token rotated; {closed} open connection(s) closed. New URL:")
        return cmd_url(args, paths)
    import sqlite3

    from qwen_daemon.devices import revoke_all_stored
    from qwen_daemon.private_files import rotate_token
    from qwen_daemon.sessions.store import StoreError

    rotate_token(paths)
    try:  # a running daemon logs its devices out itself; here the database must say so
        revoke_all_stored(paths.database)
    except (sqlite3.Error, StoreError) as exc:
        _print_err(
            f"token rotated, but the devices in {paths.database} could not be logged out ({exc}); "
            "start the daemon and run 'qwen-daemon token rotate' again"
        )
        return EXIT_FAIL
    print("token rotated and every device logged out (the daemon is not running; it uses the new token)")
    return EXIT_OK


def _service_command(args: argparse.Namespace, paths: Paths) -> int:
    from qwen_daemon.service import commands

    return commands.cmd_service(args, paths) if args.command == "service" else commands.cmd_logs(args, paths)


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
        _print_err(str(exc))
        return EXIT_FAIL
    except OSError as exc:  # a file the command needs is unusable (a directory, unreadable): which
        name = exc.filename2 or exc.filename  # for a rename, the file it was to replace
        _print_err(f"{name}: {exc.strerror or exc}" if name else str(exc))
        return EXIT_FAIL


def _run(args: argparse.Namespace) -> int:
    from qwen_daemon import device_commands, session_commands  # import this module: loaded after it

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
        "sessions": session_commands.cmd_sessions,
        "rename": session_commands.cmd_rename,
        "archive": session_commands.cmd_archive,
        "unarchive": session_commands.cmd_unarchive,
        "reopen": session_commands.cmd_reopen,
        "url": cmd_url,
        "token": cmd_token,
        "restart": cmd_restart,
        "service": _service_command,
        "logs": _service_command,
        "agents": session_commands.cmd_agents,
        "new": session_commands.cmd_new,
        "mode": session_commands.cmd_mode,
        "pending": session_commands.cmd_pending,
        "answer": session_commands.cmd_answer,
        "pair": device_commands.cmd_pair,
        "devices": device_commands.cmd_devices,
    }
    return commands[args.command](args, paths)

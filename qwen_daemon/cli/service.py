"""The CLI commands that drive a supervisor backend and print what it reports: ``service
install|uninstall|status``, ``logs``, and ``start``/``stop``/``restart`` while systemd or launchd
owns the daemon. The backends (:mod:`qwen_daemon.service`) print nothing: they raise
:class:`~qwen_daemon.service.base.ServiceError` and report their steps through the ``say`` given.

Hand-over: a daemon found running outside the supervisor (started with plain ``qwen-daemon
start`` before the service was installed) is stopped before the supervisor starts its own, so
the supervisor's start never fails on "already running" and two copies never run at once.

``service install --now`` never leaves the user with nothing running: every prerequisite (a
reachable supervisor, a writable unit directory, an agent the service can find) is checked before
the running daemon is touched, and a hand-over that fails anyway (the supervisor's start fails,
or its daemon does not answer) stops the supervisor's copy and starts the standalone daemon
again with the flags it was started with, then names what failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any

from qwen_daemon.cli.common import (
    EXIT_FAIL,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    print_err,
    say,
    wait_gone,
)
from qwen_daemon.cli.parser import STOP_GRACE
from qwen_daemon.cli.standalone import start_flags, stop_standalone
from qwen_daemon.client import find_running
from qwen_daemon.config import ConfigError, Paths, Settings, load_settings
from qwen_daemon.daemon_files import read_token
from qwen_daemon.discovery import DiscoveryInfo, browser_url, make_url, read_discovery
from qwen_daemon.private_files import write_private_file
from qwen_daemon.service.base import (
    InstallRequest,
    ServiceError,
    Supervisor,
    daemon_argv,
    missing_on_path,
    service_path,
)
from qwen_daemon.service.owner import detect, for_platform

#: How long to wait for a supervised daemon to answer after start (launchd does not wait).
READY_TIMEOUT = 30.0


def _serving(paths: Paths, not_instance: str | None = None) -> DiscoveryInfo | None:
    running = find_running(paths)
    if running is None or running[0].instance_id == not_instance:
        return None
    return running[0]


def _wait_serving(
    paths: Paths, not_instance: str | None = None, timeout: float = READY_TIMEOUT
) -> DiscoveryInfo | None:
    """The supervised daemon once it answers; None if it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    info = _serving(paths, not_instance)
    while info is None:
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)  # launchd returns before the daemon listens: poll, there is nothing to await
        info = _serving(paths, not_instance)
    return info


def _no_answer(owner: Supervisor, timeout: float = READY_TIMEOUT) -> str:
    return f"{owner.name} started the service but the daemon did not answer within {timeout:g} s"


def _report(owner: Supervisor, paths: Paths, not_instance: str | None = None) -> int:
    """Wait until the supervised daemon answers, then print its URL as a standalone start does."""
    info = _wait_serving(paths, not_instance)
    if info is None:
        print_err(_no_answer(owner))
        print_err("see `qwen-daemon logs` and `qwen-daemon status`")
        return EXIT_FAIL
    print(f"qwen-daemon is running at {info.url} (pid {info.pid}, managed by {owner.name})")
    token = read_token(paths)
    if token:
        print(f"Open in a browser: {browser_url(info.url, token)}")
    return EXIT_OK


def _outside(owner: Supervisor, paths: Paths) -> DiscoveryInfo | None:
    """The running daemon if it runs outside ``owner`` (its PID is not the supervisor's main PID)."""
    running = find_running(paths)
    if running is None:
        return None
    info = running[0]
    if owner.installed() and owner.status().main_pid == info.pid:
        return None
    return info


def _hand_over(owner: Supervisor, paths: Paths, timeout: float) -> int:
    """Stop a daemon that runs outside ``owner``, so that ``owner`` can start its own."""
    info = _outside(owner, paths)
    if info is None:
        return EXIT_OK
    say(f"stopping the copy started outside {owner.name} (pid {info.pid}), so that {owner.name} owns it")
    return stop_standalone(paths, timeout)


# --- start / stop / restart under a supervisor ------------------------------------------------


def start(owner: Supervisor, paths: Paths, flags: list[str]) -> int:
    if flags:
        print_err(
            f"{owner.name} manages qwen-daemon, so {', '.join(flags)} would be ignored; put settings in "
            f"{paths.config_file} (or the unit's environment) and run `qwen-daemon restart`"
        )
        return EXIT_USAGE
    try:
        status = owner.status()
        running = find_running(paths)
        if running is not None and status.active and status.main_pid == running[0].pid:
            info = running[0]
            print_err(
                f"qwen-daemon is already running at {info.url} (pid {info.pid}, managed by {owner.name})"
            )
            return EXIT_FAIL
        if _hand_over(owner, paths, STOP_GRACE) != EXIT_OK:
            return EXIT_FAIL
        owner.start(say)
    except ServiceError as exc:
        print_err(f"{exc}\nsee `qwen-daemon logs` and `qwen-daemon status`")
        return EXIT_FAIL
    return _report(owner, paths)


def stop(owner: Supervisor, paths: Paths, timeout: float) -> int:
    try:
        main_pid = owner.status().main_pid
        owner.stop(say)
    except ServiceError as exc:
        print_err(str(exc))
        return EXIT_FAIL
    info = read_discovery(paths)
    if info is not None and info.pid == main_pid:
        # launchd's bootout may return while the daemon is still stopping its agents.
        wait_gone(info.pid, timeout)
    elif info is not None:
        say(f"also stopping a copy that runs outside {owner.name} (pid {info.pid})")
        if stop_standalone(paths, timeout) != EXIT_OK:
            return EXIT_FAIL
    try:
        print(f"qwen-daemon stopped ({owner.status().describe()})")
    except ServiceError:
        print("qwen-daemon stopped")
    return EXIT_OK


def restart(owner: Supervisor, paths: Paths, timeout: float) -> int:
    running = find_running(paths)
    try:
        if _hand_over(owner, paths, timeout) != EXIT_OK:
            return EXIT_FAIL
        owner.restart(say)
    except ServiceError as exc:
        print_err(f"{exc}\nsee `qwen-daemon logs` and `qwen-daemon status`")
        return EXIT_FAIL
    return _report(owner, paths, not_instance=running[0].instance_id if running else None)


# --- service install | uninstall | status --------------------------------------------------------


def cmd_service(args: argparse.Namespace, paths: Paths) -> int:
    backend = for_platform(args.manager) if args.manager else (detect() or for_platform())
    try:
        if args.action == "install":
            return _install(backend, args, paths)
        if args.action == "uninstall":
            backend.uninstall(say)
            return EXIT_OK
        return _status(backend, args.json)
    except ServiceError as exc:
        print_err(str(exc))
        return EXIT_FAIL


def _install(backend: Supervisor, args: argparse.Namespace, paths: Paths) -> int:
    try:
        settings = load_settings(paths=paths)
    except ConfigError as exc:
        print_err(str(exc))
        return EXIT_USAGE
    request = InstallRequest(
        argv=daemon_argv(),
        path=service_path(),
        host=settings.host,
        port=settings.port,
        now=args.now,
        socket=args.socket,
        dry_run=args.dry_run,
    )
    if request.dry_run:
        backend.install(request, say)
        _warn_missing(request)
        return EXIT_OK
    standalone = _outside(backend, paths) if request.now else None
    problems = backend.preflight(request) + _agent_problems(settings, request.path)
    comeback = None
    if standalone is not None:
        flags = start_flags(paths)
        try:  # what it takes to start it again, should the hand-over fail
            comeback = (flags, load_settings(flags=flags, paths=paths))
        except ConfigError as exc:
            problems.append(f"the running daemon could not be started again if the hand-over failed: {exc}")
    if problems:
        print_err(f"cannot install the {backend.name} service:\n" + "\n".join(f"  - {p}" for p in problems))
        if standalone is not None:
            print_err(
                f"nothing was changed: qwen-daemon (pid {standalone.pid}) keeps running at {standalone.url}"
            )
        return EXIT_FAIL
    if standalone is None or comeback is None:
        backend.install(request, say)
        _warn_missing(request)
        if not request.now:
            return EXIT_OK
        if request.socket and find_running(paths) is None:
            say(f"the daemon starts on the first visit to {make_url(settings.host, settings.port)}")
            return EXIT_OK
        return _report(backend, paths)
    return _take_over(backend, request, paths, standalone, comeback, settings.start_timeout)


def _take_over(
    backend: Supervisor,
    request: InstallRequest,
    paths: Paths,
    standalone: DiscoveryInfo,
    comeback: tuple[dict[str, Any], Settings],
    timeout: float,
) -> int:
    """Stop the standalone daemon, install and start the service; bring it back if that fails
    (``timeout``: the configured ``start_timeout``, how long a start may take to answer)."""
    was_installed = backend.installed()
    say(f"stopping the copy started outside {backend.name} (pid {standalone.pid}), so that it owns it")
    if stop_standalone(paths, STOP_GRACE) != EXIT_OK:
        return EXIT_FAIL
    try:
        backend.install(request, say)
    except ServiceError as exc:
        return _give_back(backend, comeback, str(exc), was_installed)
    _warn_missing(request)
    if request.socket and find_running(paths) is None:
        say(f"the daemon starts on the first visit to {make_url(request.host, request.port)}")
        return EXIT_OK
    info = _wait_serving(paths, timeout=timeout)
    if info is None:
        return _give_back(backend, comeback, _no_answer(backend, timeout), was_installed)
    print(f"qwen-daemon is running at {info.url} (pid {info.pid}, managed by {backend.name})")
    token = read_token(paths)
    if token:
        print(f"Open in a browser: {browser_url(info.url, token)}")
    return EXIT_OK


def _give_back(
    backend: Supervisor, comeback: tuple[dict[str, Any], Settings], failure: str, was_installed: bool
) -> int:
    """The hand-over failed: stop the supervisor's copy (and remove a unit this command added, so
    the standalone daemon is the one owner again), start the standalone daemon again, name why."""
    flags, settings = comeback
    print_err(f"handing the daemon over to {backend.name} failed: {failure}")
    try:
        if was_installed:
            backend.stop(say)
        else:
            backend.uninstall(say)
    except ServiceError as exc:
        print_err(f"could not stop what {backend.name} started: {exc}")
    say("starting qwen-daemon again as it ran before, outside any supervisor")
    from qwen_daemon import daemonize

    with contextlib.suppress(OSError):  # the supervisor's `start --foreground` recorded none
        write_private_file(settings.paths.start_flags_file, json.dumps(flags), durable=False)

    restarted = daemonize.start_background(settings, exit_when_ready=False) == EXIT_OK
    where = "runs standalone again, as before" if restarted else "could not be started again (see above)"
    print_err(f"not handed over to {backend.name} ({failure.splitlines()[0]}); qwen-daemon {where}")
    return EXIT_FAIL


def _agent_problems(settings: Settings, path: str) -> list[str]:
    """The default agent, looked for with the PATH the service gets: the daemon refuses to start
    without it, and under a supervisor that means restarting it in vain."""
    from qwen_daemon.agents.registry import AgentNotFound, resolve_spec

    try:
        resolve_spec(settings.agent_spec(), path=path)
    except AgentNotFound as exc:
        return [
            f"the service would not find its agent with the PATH it gets (this shell's): {exc}; "
            "run this from a shell whose PATH finds it, or give agent_cmd an absolute path"
        ]
    return []


def _warn_missing(request: InstallRequest) -> None:
    missing = missing_on_path(request.path)
    if missing:
        say(f"warning: {', '.join(missing)} is not on the PATH given to the service; Qwen Code needs node")


def _status(backend: Supervisor, as_json: bool) -> int:
    import json

    status = backend.status()
    if as_json:
        print(json.dumps(status.to_json()))
    else:
        print(status.describe())
        if status.unit_path:
            print(f"unit: {status.unit_path}")
        for key, value in status.extra.items():
            print(f"{key.replace('_', ' ')}: {value}")
    return EXIT_OK if status.active else EXIT_NOT_RUNNING


# --- logs ---------------------------------------------------------------------------------------


def cmd_logs(args: argparse.Namespace, paths: Paths) -> int:
    """Replace this process with the pager-free log viewer (so Ctrl-C and pipes behave).

    The one output the CLI does not escape (:mod:`qwen_daemon.terminal`): the viewer writes to the
    terminal itself, and the log is a record to read as it is (``tail -F``, ``grep``, ``less -R``
    all expect its bytes). What a client without the token sends is escaped by the daemon before it
    is logged, and a title or folder name with controls is refused or escaped before it is stored.
    """
    owner = detect()
    argv = owner.log_command(args.follow, args.lines) if owner is not None else None
    if argv is None:
        if owner is not None and owner.name == "systemd":
            print_err("no journal here: the service's output goes where its StandardOutput= points")
        if not paths.log_file.exists():
            print_err(f"no log file at {paths.log_file} (the daemon has not run standalone yet)")
            return EXIT_FAIL
        argv = ["tail", "-n", str(args.lines), *(["-F"] if args.follow else []), str(paths.log_file)]
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)  # noqa: S606 - a fixed argv, no shell involved
    except OSError as exc:
        print_err(f"cannot run {argv[0]}: {exc}")
    return EXIT_FAIL

"""Running the daemon: in the foreground (systemd/launchd, ``--foreground``) or detached.

Both modes run the same :func:`_serve`; they differ only in how readiness is reported:

* foreground: sd_notify ``READY=1`` once listening, ``WATCHDOG=1`` pings when the supervisor asks
  for them, ``STOPPING=1`` when shutdown begins;
* standalone: the ``start`` command forks; the child becomes a PEP 3143 daemon (python-daemon:
  double fork, setsid, umask 077, cwd ``/``, stdio to the log file, a PID lock file) and writes
  ``READY <port>`` or ``ERROR <message>`` to a pipe inherited from the command, which waits for
  that line — so ``start`` never claims success before the server answers, and never exits 0
  when it could not start (the classic "port taken, silent exit 0" failure).

SIGTERM, SIGINT and SIGHUP are handled inside the event loop (``loop.add_signal_handler``): the
handler only requests a stop and the loop performs the ordered shutdown, so a stop by signal still
exits 0 (SIGHUP's default action killed the daemon outright, leaving its runtime files behind).
The token is never logged; only the standalone ``start`` prints the browser URL, to the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import faulthandler
import gc
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qwen_daemon.client import find_running
from qwen_daemon.config import ConfigError, Paths, Settings
from qwen_daemon.daemon_files import load_or_create_token, secure_paths
from qwen_daemon.discovery import browser_url, looks_like_daemon, make_url, read_pidfile
from qwen_daemon.logbounds import bounded_handler
from qwen_daemon.private_files import ensure_private_dir, open_private
from qwen_daemon.supervisor_env import NOTIFY_VARIABLES

if TYPE_CHECKING:
    from qwen_daemon.runtime import Daemon

log = logging.getLogger(__name__)

#: How long ``start`` waits for the detached daemon to report READY or ERROR.
#: each ends the daemon by the ordered shutdown
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class AlreadyRunning(Exception):
    """Another daemon owns this user's runtime dir; the message says where it is."""


def configure_logging(settings: Settings, *, to_file: bool = False) -> None:
    """Timestamped lines on stderr (the journal), or ``to_file``: the log file, rotating by size.

    Either way refusals are rate-limited and clipped (see ``logbounds``): a client without the
    token must not be able to fill the disk, nor the journal, through the log.
    """
    log_file = settings.paths.log_file if to_file else None
    handler = bounded_handler(log_file, settings.log_max_bytes, settings.log_backups)
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
        force=True,
    )
    logging.captureWarnings(True)


# --- single instance --------------------------------------------------------------------------


def check_not_running(paths: Paths) -> None:
    """Raise :class:`AlreadyRunning` if a daemon answers or holds the PID lock; clear stale locks.

    ``lockfile``'s PID lock never notices that its owner died, so a PID file whose process is gone
    (or is now some unrelated program, after PID reuse) is broken here.
    """
    running = find_running(paths)
    if running is not None:
        info, _health = running
        raise AlreadyRunning(f"qwen-daemon is already running at {info.url} (pid {info.pid})")
    pid = read_pidfile(paths)
    if pid is None:
        with contextlib.suppress(FileNotFoundError):
            paths.pid_file.unlink()  # unreadable or empty: nobody can hold it
        return
    if looks_like_daemon(pid):
        raise AlreadyRunning(
            f"another qwen-daemon (pid {pid}) is starting or not answering; "
            f"stop it first (pid file {paths.pid_file})"
        )
    log.info("removing stale pid file %s (pid %d is gone)", paths.pid_file, pid)
    with contextlib.suppress(FileNotFoundError):
        paths.pid_file.unlink()


def _pid_lock(paths: Paths) -> Any:
    """A ``TimeoutPIDLockFile`` that fails at once when held (never waits for a live owner)."""
    from daemon.pidfile import TimeoutPIDLockFile

    ensure_private_dir(paths.runtime_dir)
    return TimeoutPIDLockFile(str(paths.pid_file), acquire_timeout=0)


# --- the server loop --------------------------------------------------------------------------


class _Notifier:
    """sd_notify, if a supervisor asked for it; a no-op otherwise."""

    def __init__(self) -> None:
        import sdnotify

        self._enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._sd = sdnotify.SystemdNotifier() if self._enabled else None
        usec = os.environ.get("WATCHDOG_USEC", "")
        wpid = os.environ.get("WATCHDOG_PID", "")
        self.watchdog_interval: float | None = None
        if self._enabled and usec.isdigit() and int(usec) > 0 and (not wpid or wpid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 2 / 1_000_000
        for name in NOTIFY_VARIABLES:  # read once; agents must not talk to our supervisor
            os.environ.pop(name, None)

    def notify(self, state: str) -> None:
        if self._sd is not None:
            self._sd.notify(state)


async def _watchdog(notifier: _Notifier, interval: float) -> None:
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def _serve(
    settings: Settings, on_ready: Callable[[Daemon], None], sockets: list[socket.socket] | None = None
) -> int:
    """Run one daemon until it is stopped; ``on_ready`` runs once it is listening.

    ``sockets`` are already listening (socket activation); without them the daemon binds.
    Raises :class:`~qwen_daemon.runtime.StartupError` when it cannot listen.
    """
    from qwen_daemon.runtime import Daemon

    notifier = _Notifier()
    daemon = Daemon(settings)
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, daemon.request_stop)
    daemon.on_stopping.append(lambda: notifier.notify("STOPPING=1"))
    await daemon.start(sockets=sockets)
    notifier.notify(f"READY=1\nSTATUS=Listening on {daemon.url}\nMAINPID={os.getpid()}")
    listening = f"STATUS=Listening on {daemon.url}"  # `systemctl --user status` shows a full disk too
    daemon.manager.persist.listeners.append(
        lambda failure: notifier.notify(f"STATUS=degraded: {failure}" if failure else listening)
    )
    on_ready(daemon)
    # What start-up made (modules, classes, the app) lives as long as the daemon: out of the
    # collector's sight, a full collection no longer scans ~50k objects (20-50 ms with streams held).
    gc.freeze()
    watchdog = None
    if notifier.watchdog_interval:
        watchdog = asyncio.create_task(_watchdog(notifier, notifier.watchdog_interval), name="watchdog")
    try:
        await daemon.wait_stopped()
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    return 0


def run_foreground(settings: Settings) -> int:
    """Serve in this process until SIGTERM/SIGINT or ``POST /api/stop``; 0 on a clean stop.

    Listening sockets passed by systemd (``LISTEN_FDS``) are used instead of binding; their
    address then replaces host/port from the settings, so URLs and the Host check match them.
    """
    from qwen_daemon.runtime import StartupError
    from qwen_daemon.service.activation import ActivationError, bound_address, inherited_sockets

    configure_logging(settings)
    # A watchdog abort (SIGABRT) of a hung daemon then leaves its Python stack in the journal.
    faulthandler.enable()
    try:
        sockets = inherited_sockets()
    except ActivationError as exc:
        log.error("socket activation: %s", exc)
        return 1
    if sockets:
        host, port = bound_address(sockets[0])
        settings = dataclasses.replace(settings, host=host, port=port)
        log.info("listening on %d socket(s) passed by the service manager", len(sockets))
    try:
        for repair in secure_paths(settings.paths):  # before the pid file is read or written
            log.warning("%s", repair)
        check_not_running(settings.paths)
        lock = _pid_lock(settings.paths)
        lock.acquire()
    except (AlreadyRunning, ConfigError) as exc:
        log.error("%s", exc)
        return 1
    except Exception as exc:  # lockfile.AlreadyLocked/LockFailed
        log.error("cannot take the pid lock %s: %s", settings.paths.pid_file, exc)
        return 1
    try:
        return asyncio.run(
            _serve(settings, lambda d: log.info("ready; run `qwen-daemon url` for the link"), sockets or None)
        )
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    finally:
        with contextlib.suppress(Exception):
            lock.release()


# --- standalone (detached) --------------------------------------------------------------------


def start_background(settings: Settings, *, exit_when_ready: bool = True) -> int:
    """Start a detached daemon and report its URL once it answers; non-zero if it cannot start.

    ``exit_when_ready=False`` returns 0 instead of ending the process at once, for a caller with
    more to say afterwards (``service install`` bringing the standalone daemon back after a failed
    hand-over must still report the failure and exit non-zero).
    """
    paths = settings.paths
    try:
        for repair in secure_paths(paths):  # before anything here reads or writes them
            print(f"qwen-daemon: warning: {repair}", file=sys.stderr)
        check_not_running(paths)
    except (AlreadyRunning, ConfigError) as exc:
        print(f"qwen-daemon: cannot start: {exc}" if isinstance(exc, ConfigError) else exc, file=sys.stderr)
        return 1
    try:
        token = load_or_create_token(paths)  # before forking, so parent and daemon agree on it
        ensure_private_dir(paths.log_dir)
        ensure_private_dir(paths.runtime_dir)
        log_fd = open_private(paths.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    except ConfigError as exc:  # a link or a foreign file appeared since the check above
        print(f"qwen-daemon: cannot start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a read-only state dir: say which file, no traceback
        name = exc.filename2 or exc.filename  # for a rename, the file it was to replace
        where = f" {name}" if name else ""
        print(f"qwen-daemon: cannot start: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the detached process
        os.close(read_fd)
        _daemon_main(settings, write_fd, log_fd)  # never returns
    os.close(write_fd)
    os.close(log_fd)
    try:
        status, message = _await_ready(read_fd, settings.start_timeout)
    finally:
        os.close(read_fd)
        _reap(child)
    if status == "READY":
        url = make_url(settings.host, int(message), tls=settings.tls)
        print(f"qwen-daemon is running at {url}")
        print(f"Open in a browser: {browser_url(url, token)}")
        if not exit_when_ready:
            return 0
        # Done: skip the interpreter's teardown of Tornado & co., which measured longer than the
        # whole start-up on a loaded 2-core machine. Nothing is left to flush or close but stdio.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    if status == "ERROR":
        print(f"qwen-daemon: cannot start: {message}", file=sys.stderr)
    else:
        if status == "TIMEOUT":  # it stops itself should it get ready later (see _report_ready)
            message += " (start_timeout); it stops itself if it gets ready later"
        print(f"qwen-daemon: {message}; see {paths.log_file}", file=sys.stderr)
    return 1


def _await_ready(fd: int, timeout: float) -> tuple[str, str]:
    """Read one ``READY <port>`` / ``ERROR <message>`` line from the pipe, with a deadline."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "TIMEOUT", f"the daemon did not report readiness within {timeout:.0f} s"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return "EOF", "the daemon exited during startup"
        buf += chunk
    status, _, message = buf.partition(b"\n")[0].decode("utf-8", "replace").partition(" ")
    if status == "READY" and message.isdigit():
        return status, message
    if status == "ERROR":
        return status, message
    return "BAD", f"unexpected readiness message {status!r}"


def _reap(pid: int) -> None:
    """Collect the intermediate child (it exits as soon as it has forked the daemon)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class _ReadyPipe:
    """The write end of the readiness pipe: one line, then closed (the fd may be reused after)."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def send(self, line: str) -> bool:
        """Write the line; False if nobody reads it any more (``start`` gave up waiting)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return True
        try:
            os.write(fd, (line.replace("\n", " ") + "\n").encode("utf-8"))
            return True
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)


def _report_ready(pipe: _ReadyPipe, daemon: Daemon) -> None:
    if not pipe.send(f"READY {daemon.port}"):  # start_timeout passed: start exited 1 already
        log.warning("start stopped waiting for this daemon (start_timeout); stopping, as it said")
        daemon.request_stop()


def _daemon_main(settings: Settings, pipe_w: int, log_fd: int) -> None:  # pragma: no cover
    """Body of the forked child: become a daemon, serve, exit. Never returns."""
    pipe = _ReadyPipe(pipe_w)
    code = 1
    try:
        code = _daemon_body(settings, pipe, log_fd)
    except BaseException as exc:  # the parent must hear about any failure
        with contextlib.suppress(Exception):
            log.exception("daemon failed")
        pipe.send(f"ERROR {type(exc).__name__}: {exc}")
    finally:
        pipe.send("ERROR the daemon stopped before it was ready")
        with contextlib.suppress(Exception):
            logging.shutdown()
        os._exit(code)


def _daemon_body(settings: Settings, pipe: _ReadyPipe, log_fd: int) -> int:  # pragma: no cover
    import daemon
    from lockfile import AlreadyLocked, LockFailed

    from qwen_daemon.runtime import StartupError

    assert pipe.fd is not None
    log_file = os.fdopen(log_fd, "a", buffering=1, encoding="utf-8")
    context = daemon.DaemonContext(
        umask=0o077,
        working_directory="/",
        detach_process=True,  # even when our stdin is a socket: the parent waits for us to go
        files_preserve=[pipe.fd, log_fd],
        pidfile=_pid_lock(settings.paths),
        # SIGTERM is handled in the event loop (clean exit 0), so it is not in this map.
        signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None},
        stdout=log_file,
        stderr=log_file,
    )
    try:
        context.open()  # double fork; from here on we are the daemon
    except (AlreadyLocked, LockFailed):
        pipe.send(f"ERROR another qwen-daemon holds the pid lock {settings.paths.pid_file}")
        return 1
    configure_logging(settings, to_file=True)
    try:
        # The loop and the sd_notify socket are created only now, after open() closed every fd.
        return asyncio.run(_serve(settings, lambda d: _report_ready(pipe, d)))
    except StartupError as exc:
        log.error("%s", exc)
        pipe.send(f"ERROR {exc}")
        return 1
    finally:
        with contextlib.suppress(Exception):
            context.close()

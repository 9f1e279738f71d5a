"""One ACP agent subprocess serving every session of one workspace.

The host spawns the agent lazily, speaks JSON-RPC to it over stdio through the
``agent-client-protocol`` package's :class:`acp.connection.Connection` (wrapped in
``qwen_daemon.agents.connection``), and routes what the agent sends by ACP session id to a
:class:`SessionSink`, translated into the daemon's events first
(:mod:`qwen_daemon.agents.translate`). Incoming messages are handled as raw JSON, not through the
SDK's pydantic models: the daemon is a relay, and a parse/dump round trip would drop fields it
does not know (Qwen Code sends several non-standard ones).

Process hygiene: the agent gets its own process group, an environment without the supervisor's
variables (:mod:`qwen_daemon.supervisor_env`), a stdout line limit far above 64 KiB (one Qwen update
can be 570 KB), and stderr appended to a log file. :meth:`AgentHost.stop` escalates: close stdin,
then SIGTERM to the group, then SIGKILL, each with a deadline.

The daemon advertises no ``fs`` or ``terminal`` client capabilities: the agent does its own I/O.

Where a host is (stopped, starting, running, stopping, retired) is one :class:`HostState`, moved
only through the transition table of ``host_states.py`` (drawn there); ``running``, ``starting``
and ``state`` are read from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from qwen_daemon import __version__
from qwen_daemon.agents.connection import (
    describe_rpc_error,
    open_relay_connection,
    relay_connection_built,
    relay_connection_class,
    request_error,
)
from qwen_daemon.agents.credentials import with_hint
from qwen_daemon.agents.host_states import RETIRED_MESSAGE, HostEvent, HostState, next_host_state, refuses
from qwen_daemon.agents.translate import session_modes, translate_notification, translate_update
from qwen_daemon.config import ConfigError
from qwen_daemon.contract.modes import Modes
from qwen_daemon.errors import AgentFailed
from qwen_daemon.private_files import ensure_private_dir, open_private
from qwen_daemon.supervisor_env import without_supervisor

if TYPE_CHECKING:
    from qwen_daemon.agents.connection import Connection

log = logging.getLogger(__name__)

STDOUT_LINE_LIMIT = 64 * 1024 * 1024
PROTOCOL_VERSION = 1
#: This many unexpected exits within CRASH_WINDOW seconds is a crash loop: stop restarting.
CRASH_LIMIT = 3
CRASH_WINDOW = 60.0


class SessionSink(Protocol):
    """What a host delivers to the daemon session bound to one ACP session id.

    Events arrive translated (:mod:`qwen_daemon.agents.translate`): the session reacts to them by
    their daemon type (``mode_changed``) and never reads ACP's naming.
    """

    def on_event(self, event_type: str, fields: dict[str, Any]) -> None: ...

    async def on_permission_request(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def on_agent_exit(self, message: str) -> None: ...


class AgentHost:
    """Owns one agent process (started on first use) and the sessions living in it."""

    def __init__(
        self,
        command: Sequence[str],
        cwd: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        *,
        start_timeout: float = 60.0,
        stop_timeouts: tuple[float, float, float] = (2.0, 3.0, 2.0),
        on_spawn: Callable[[int], None] | None = None,
        on_gone: Callable[[int], None] | None = None,
        qwen_code: bool = False,
    ) -> None:
        self.command = tuple(command)
        self.cwd = cwd
        self.log_path = log_path
        self._env = without_supervisor(os.environ if env is None else env)
        self._start_timeout = start_timeout
        self._stop_timeouts = stop_timeouts
        self._qwen_code = qwen_code  # its refusals for missing auth say how to give it credentials
        self._proc: asyncio.subprocess.Process | None = None
        self._conn: Connection | None = None
        self._sinks: dict[str, SessionSink] = {}
        self._start_lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self._state = HostState.STOPPED  # changed only by _fire (see host_states.py)
        self._stopped: asyncio.Event | None = None  # set once the last stop() has finished
        #: create one ACP session ahead of time, so the next daemon session skips session/new
        self.keep_spare_session = False
        self._spare_session: _SpareSession | None = None
        self._spare_task: asyncio.Future[None] | None = None
        self.agent_info: dict[str, Any] = {}
        self.agent_capabilities: dict[str, Any] = {}
        self.generation = 0  # bumps on every (re)start, so sessions know their agent session is gone
        self._crashes: deque[float] = deque(maxlen=CRASH_LIMIT)
        # tell the orphan guard about each process group we create and reap
        self._on_spawn = on_spawn
        self._on_gone = on_gone

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def state(self) -> HostState:
        return self._state

    def _fire(self, event: HostEvent) -> None:
        self._state = next_host_state(self._state, event)

    @property
    def running(self) -> bool:
        """Running, and still alive and talking: stdout at EOF means it is gone even before it is
        reaped; one being stopped takes no new work (``ensure_started`` waits, then restarts it)."""
        proc = self._proc
        if self._state is not HostState.RUNNING or proc is None or proc.returncode is not None:
            return False
        return self._conn is not None and proc.stdout is not None and not proc.stdout.at_eof()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def ensure_started(self) -> None:
        """Start the agent and run ``initialize`` unless it already runs. Raises AgentFailed."""
        async with self._start_lock:
            if refuses(self._state, HostEvent.START):
                raise AgentFailed(RETIRED_MESSAGE)
            while self._stopped is not None and not self._stopped.is_set():
                await self._stopped.wait()  # a stop under way ends first (and one begun meanwhile)
            if self.running:
                return
            self._fire(HostEvent.START)  # refused too if it was retired meanwhile
            try:
                await asyncio.wait_for(self._spawn_and_initialize(), self._start_timeout)
            except TimeoutError:
                self._fire(HostEvent.START_FAILED)
                await self._kill_group()
                raise AgentFailed(
                    f"agent did not answer initialize within {self._start_timeout:g} s"
                ) from None
            except AgentFailed:
                self._fire(HostEvent.START_FAILED)
                await self._kill_group()
                raise
            except BaseException:  # cancelled: no start is under way any more
                if self._state is HostState.STARTING:
                    self._fire(HostEvent.START_FAILED)
                raise

    async def _spawn_and_initialize(self) -> None:
        try:  # the agent's log, like every file the daemon owns: never written through a link
            ensure_private_dir(self.log_path.parent)
            fd = open_private(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        except ConfigError as exc:
            raise AgentFailed(f"cannot start the agent: {exc}") from None
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=self.cwd,
                env=self._env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=fd,
                start_new_session=True,
                limit=STDOUT_LINE_LIMIT,
            )
        except OSError as exc:
            raise AgentFailed(f"cannot start agent {self.command[0]!r}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        if self._on_spawn is not None:
            self._on_spawn(self._proc.pid)
        if not relay_connection_built():  # the first agent: import the SDK while Node boots
            await asyncio.to_thread(relay_connection_class)  # off the loop, which keeps serving
        if self._state is not HostState.STARTING:  # a stop (or retire) came while it was spawned
            raise AgentFailed("the agent was stopped while it started")
        self.generation += 1
        conn = open_relay_connection(self._handle, self._on_update, self._proc.stdin, self._proc.stdout)
        self._conn = conn
        self._watch = asyncio.create_task(self._watch_exit(self._proc, self._conn))
        log.info("agent started pid=%s cwd=%s", self._proc.pid, self.cwd)
        self._fire(HostEvent.CONNECTED)  # running: ``initialize`` is its first request
        params = {
            "protocolVersion": PROTOCOL_VERSION,
            "clientCapabilities": {"fs": {"readTextFile": False, "writeTextFile": False}, "terminal": False},
            "clientInfo": {"name": "qwen-daemon", "version": __version__},
        }
        result = await self.request("initialize", params)
        self.agent_info = dict(result.get("agentInfo") or {})
        self.agent_capabilities = dict(result.get("agentCapabilities") or {})

    async def _watch_exit(self, proc: asyncio.subprocess.Process, conn: Connection) -> None:
        code = await proc.wait()
        with contextlib.suppress(Exception):  # e.g. a send still under way hit the closed pipe
            await conn.close()
        # a newer process may already have replaced this one (it was seen dead at stdout EOF)
        current = self._proc is proc
        if current:
            self._conn = None
        message = self._exit_message(code)
        if current and self._state in (HostState.STOPPING, HostState.RETIRED):  # a stop's doing
            log.info("agent pid=%s stopped (%s)", proc.pid, message)
            return
        self._crashes.append(asyncio.get_running_loop().time())
        log.warning("agent pid=%s %s", proc.pid, message)
        self._signal_group(proc.pid, signal.SIGKILL)  # what the dead agent started is orphaned now
        if self._on_gone is not None:
            self._on_gone(proc.pid)
        if current:
            self._fire(HostEvent.EXITED)
            sinks = list(self._sinks.values())
            self._sinks.clear()
            for sink in sinks:
                sink.on_agent_exit(message)

    def _exit_message(self, code: int) -> str:
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"agent exited on signal {signal.Signals(-code).name}"
        return f"agent exited with status {code}; see {self.log_path}"

    @property
    def crash_looping(self) -> bool:
        """Whether the agent died unexpectedly CRASH_LIMIT times within CRASH_WINDOW seconds."""
        if len(self._crashes) < CRASH_LIMIT:
            return False
        return asyncio.get_running_loop().time() - self._crashes[0] <= CRASH_WINDOW

    def forgive_crashes(self) -> None:
        """Start the crash count over: a user reopened its sessions and wants it tried again."""
        self._crashes.clear()

    @property
    def starting(self) -> bool:
        """Whether a start is under way: a caller of :meth:`ensure_started` now waits for it."""
        return self._state is HostState.STARTING

    async def retire(self) -> None:
        """Stop the agent for good: a later :meth:`ensure_started` fails instead of starting a
        process that nobody tracks any more (the host was dropped, or the daemon is stopping)."""
        self._fire(HostEvent.RETIRE)
        await self.stop()

    async def stop(self) -> None:
        """Stop the agent: stdin EOF, then SIGTERM, then SIGKILL to its group, each with a deadline."""
        self._fire(HostEvent.STOP)  # a start under way sees it and gives up
        self._spare_session = None
        if self._spare_task is not None:
            self._spare_task.cancel()
        proc = self._proc
        if proc is None:
            self._fire(HostEvent.STOP_DONE)
            return
        stopped = self._stopped = asyncio.Event()
        try:
            eof_wait, term_wait, kill_wait = self._stop_timeouts
            if proc.returncode is None and proc.stdin is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    proc.stdin.close()
                await self._wait(proc, eof_wait)
            if proc.returncode is None:
                self._signal_group(proc.pid, signal.SIGTERM)
                await self._wait(proc, term_wait)
            await self._kill_group(kill_wait)
            if self._watch is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):  # it logs its own
                    await self._watch
        finally:
            self._fire(HostEvent.STOP_DONE)
            stopped.set()

    async def _kill_group(self, wait: float = 2.0) -> None:
        """SIGKILL whatever is left of the agent's process group (the leader may be gone already)."""
        proc = self._proc
        if proc is None:
            return
        self._signal_group(proc.pid, signal.SIGKILL)
        await self._wait(proc, wait)
        if self._on_gone is not None:
            self._on_gone(proc.pid)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    @staticmethod
    async def _wait(proc: asyncio.subprocess.Process, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), seconds)

    # --- requests -------------------------------------------------------------------------------

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one request; the agent's JSON-RPC error becomes AgentFailed with its message."""
        RequestError = request_error()

        conn = self._conn
        if conn is None:
            raise AgentFailed("agent is not running")
        try:
            result = await conn.send_request(method, params)
        except RequestError as exc:
            message = describe_rpc_error(exc)
            raise AgentFailed(with_hint(message, exc.code) if self._qwen_code else message) from None
        except ConnectionError:
            raise AgentFailed(f"the agent went away; see {self.log_path}") from None
        return result if isinstance(result, dict) else {}

    async def new_session(self, cwd: str, sink: SessionSink) -> tuple[str, Modes | None]:
        """Create an ACP session; returns its id and the modes the agent offers it (if any).

        With ``keep_spare_session`` a session created ahead of time is handed out instead (its
        buffered events replayed to ``sink``), and the next one is prepared in the background:
        Qwen Code takes a few hundred ms to answer ``session/new`` even when it is already up.
        """
        await self.ensure_started()
        if self._spare_task is not None and self.keep_spare_session:
            # one is being made right now: waiting for it beats asking for a second one
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._spare_task)
        spare = self._spare_session
        if spare is not None and spare.cwd == cwd and spare.generation == self.generation and self.running:
            self._spare_session = None
            self._sinks[spare.session_id] = sink
            for event_type, fields in spare.events:
                sink.on_event(event_type, fields)
            self.prepare_spare_session(cwd)
            return spare.session_id, session_modes(spare.result)
        session_id, result = await self._new_acp_session(cwd)
        self._sinks[session_id] = sink
        self.prepare_spare_session(cwd)
        return session_id, session_modes(result)

    async def _new_acp_session(self, cwd: str) -> tuple[str, dict[str, Any]]:
        result = await self.request("session/new", {"cwd": cwd, "mcpServers": []})
        session_id = result.get("sessionId")
        if not isinstance(session_id, str) or not session_id:
            raise AgentFailed("agent answered session/new without a session id")
        return session_id, result

    def prepare_spare_session(self, cwd: str) -> None:
        """Create the next session ahead of time (in the background) if spares are wanted."""
        if not self.keep_spare_session or self._spare_session is not None or self._spare_task is not None:
            return
        self._spare_task = asyncio.ensure_future(self._prepare_spare(cwd))

    async def spare_session_id(self) -> str | None:
        """The ACP session id of the spare ready to be handed out, after waiting for one being
        prepared; None when there is none. Public so the warm-spare contract (the next session
        is made ahead of time) can be observed, e.g. by diagnostics and tests."""
        if self._spare_task is not None:
            await asyncio.wait([self._spare_task])  # its outcome, even a cancel, is not ours to raise
        spare = self._spare_session
        return None if spare is None else spare.session_id

    async def _prepare_spare(self, cwd: str) -> None:
        try:
            await self.ensure_started()
            generation = self.generation
            buffer = _SpareSession(cwd, generation)
            buffer.session_id, buffer.result = await self._new_acp_session(cwd)
            if generation == self.generation and self.running:
                self._spare_session = buffer
                # updates the agent sends for it (e.g. its command list) are kept for its owner
                self._sinks[buffer.session_id] = buffer
        except AgentFailed as exc:
            log.info("no spare session for %s: %s", cwd, exc)
        finally:
            self._spare_task = None

    async def restore_session(self, cwd: str, session_id: str, sink: SessionSink) -> Modes | None:
        """Reattach to an existing agent session: ``session/resume`` if offered, else ``session/load``.
        Returns the modes the agent offers it, when its answer names them."""
        await self.ensure_started()
        caps = self.agent_capabilities
        session_caps = caps.get("sessionCapabilities")
        params = {"sessionId": session_id, "cwd": cwd, "mcpServers": []}
        if isinstance(session_caps, dict) and session_caps.get("resume") is not None:
            method = "session/resume"
        elif caps.get("loadSession"):
            method = "session/load"
        else:
            raise AgentFailed("the agent cannot restore sessions (it offers neither session/load nor resume)")
        self._sinks[session_id] = sink  # a load replays history as updates before it answers
        try:
            return session_modes(await self.request(method, params))
        except AgentFailed:
            self._sinks.pop(session_id, None)
            raise

    async def prompt(self, session_id: str, text: str) -> str:
        """Run one turn; returns the stop reason."""
        result = await self.request(
            "session/prompt", {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}
        )
        reason = result.get("stopReason")
        return reason if isinstance(reason, str) else "end_turn"

    async def cancel(self, session_id: str) -> None:
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await conn.send_notification("session/cancel", {"sessionId": session_id})

    async def set_mode(self, session_id: str, mode_id: str) -> None:
        await self.request("session/set_mode", {"sessionId": session_id, "modeId": mode_id})

    def forget(self, session_id: str) -> None:
        """Stop routing a session's traffic (the daemon session was closed)."""
        self._sinks.pop(session_id, None)

    @property
    def session_count(self) -> int:
        """How many daemon sessions this agent's traffic is routed to (a spare is not one)."""
        return len(self._sinks) - (1 if self._spare_session is not None else 0)

    # --- what the agent sends -----------------------------------------------------------------

    def _on_update(self, params: Any) -> None:
        if not isinstance(params, dict):
            return
        sink = self._sinks.get(str(params.get("sessionId", "")))
        update = params.get("update")
        if sink is not None and isinstance(update, dict):
            sink.on_event(*translate_update(update))

    async def _handle(self, method: str, params: Any, is_notification: bool) -> Any:
        RequestError = request_error()

        if method == "session/update":
            self._on_update(params)
            return None
        params = params if isinstance(params, dict) else {}
        sink = self._sinks.get(str(params.get("sessionId", "")))
        if method == "session/request_permission":
            if sink is None:
                raise RequestError.invalid_params({"details": "unknown session"})
            return await sink.on_permission_request(params)
        if is_notification:
            if sink is not None:
                sink.on_event(*translate_notification(method, params))
            else:
                log.debug("agent notification %s ignored", method)
            return None
        raise RequestError.method_not_found(method)


class _SpareSession:
    """An ACP session created ahead of time; buffers what the agent sends it (translated, e.g. its
    command list) until handed out."""

    def __init__(self, cwd: str, generation: int) -> None:
        self.cwd = cwd
        self.generation = generation
        self.session_id = ""
        self.result: dict[str, Any] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_event(self, event_type: str, fields: dict[str, Any]) -> None:
        notification = event_type == "agent_update" and "method" in fields  # never kept for it
        if not notification and len(self.events) < 100:
            self.events.append((event_type, fields))

    async def on_permission_request(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"outcome": {"outcome": "cancelled"}}

    def on_agent_exit(self, message: str) -> None:
        return None

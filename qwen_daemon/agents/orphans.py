"""The orphan guard: agent process groups never outlive the daemon, however it dies.

Agents run in their own process groups so a stop can signal everything they started. That same
isolation means a daemon killed with ``kill -9`` would leave them running. Two defences:

* a watchman: a tiny ``sh`` process in its own group that holds the read end of a pipe whose
  only write end the daemon owns. When the daemon dies for any reason the pipe reaches EOF and
  the watchman SIGKILLs every group listed in the groups file, then exits. A clean stop empties
  the file first, so the watchman then kills nothing.
* a sweep at start: groups left in the file by a daemon whose watchman also died are killed, but
  only those proven to be this daemon's agents (see :meth:`OrphanGuard.sweep`).

The groups file (in the 0700 runtime dir) lists live agent groups, one per line: the group id,
the leader's start time and this daemon's marker token (see :class:`AgentGroup`), rewritten
atomically whenever an agent starts or stops, so it only ever names groups that are still ours.

Why proof is needed at start and not in the watchman: a process-group id is only a number, and
the system hands it out again once the group is gone. A file left by a daemon killed with
``kill -9`` (its watchman killed too, or the machine rebooted with a runtime dir that survives, as
on macOS) may be read hours later, when its ids name a stranger's processes; the first sweep
SIGKILLed them all. The watchman, in contrast, reads the file within milliseconds of the daemon's
death (the kernel closes the pipe while the daemon exits). Every group listed then is either
alive, and its id cannot be handed out while any member lives, or its leader was reaped at most a
few event-loop turns before the daemon could rewrite the file. For a stranger to own that id by
then, the kernel would have to allocate its way around the whole pid space (32768 ids at the
very least, 4194304 on most Linux systems, 99999 on macOS; ids are given out in increasing order
and wrap) in those milliseconds. An ``sh`` loop also cannot read another process's environment
portably, so a check there would be weaker than this argument, not stronger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qwen_daemon.private_files import read_private, write_private_file

if TYPE_CHECKING:
    import psutil

log = logging.getLogger(__name__)

#: The environment variable that marks a process as an agent of one daemon run: its value is a
#: random token only that run knows (and writes next to each group id in the groups file).
MARKER = "QWEN_DAEMON_AGENT"
#: How far a leader's start time may drift from the recorded one and still match. psutil derives
#: Linux start times from the boot time the kernel recomputes from the wall clock, so the same
#: process can read a second off after a clock adjustment. The marker, not this tolerance, is what
#: tells our processes from a stranger's; the start time tells the very agent we started.
START_TOLERANCE = 2.0

# dash's kill rejects "--"; a negative pid after the signal name is read as a group everywhere.
# Only the first field of a line is the group id; lines that are not all digits are skipped.
_WATCHMAN = (
    "while IFS= read -r _; do :; done; "
    "while read -r g _; do "
    'case "$g" in ""|*[!0-9]*) ;; *) kill -KILL "-$g" 2>/dev/null;; esac; '
    'done < "$1"; exit 0'
)


@dataclass(frozen=True)
class AgentGroup:
    """One line of the groups file: what it takes to prove, later, that a group is ours."""

    pgid: int
    #: the leader's start time (psutil ``create_time``); None if it was gone before it was read
    started: float | None
    #: the value of :data:`MARKER` in the environment of every process of this agent
    token: str

    @classmethod
    def of(cls, pgid: int, token: str) -> AgentGroup:
        """Record a group whose leader was just spawned (still our unreaped child, so its id
        cannot have been reused yet)."""
        import psutil  # here, not at the top: a daemon start with no agent to sweep skips its ~7 ms

        try:
            started: float | None = psutil.Process(pgid).create_time()
        except psutil.Error:  # it died at once and was reaped: its members can still be proven
            started = None
        return cls(pgid, started, token)

    def line(self) -> str:
        started = "-" if self.started is None else f"{self.started:.3f}"
        return f"{self.pgid} {started} {self.token}\n"

    @classmethod
    def parse(cls, line: str) -> AgentGroup | None:
        """The group a line describes; None for anything else (an old bare id included)."""
        fields = line.split()
        if len(fields) != 3 or not fields[0].isdigit() or int(fields[0]) <= 1 or not fields[2]:
            return None
        try:
            started = None if fields[1] == "-" else float(fields[1])
        except ValueError:
            return None
        return cls(int(fields[0]), started, fields[2])

    def unproven(self) -> str | None:
        """Why this group cannot be shown to be ours: None when it is ours (kill it), "" when it
        is gone (nothing to kill or report), else the reason, for the log.

        Ours means: the leader is alive with the recorded start time and carries the marker
        token; or, if the leader is gone (or a zombie), some live member of the group carries it.
        A group id cannot be reused while any member of the group lives, and only processes we
        started (and their descendants) know the token, so either proves the group is the one we
        recorded. An environment the OS will not show counts as not carrying the token: a
        stranger must never be killed for want of a check.
        """
        import psutil

        try:
            leader = psutil.Process(self.pgid)
            if leader.status() == psutil.STATUS_ZOMBIE:
                raise psutil.ZombieProcess(self.pgid)
            started = leader.create_time()
        except psutil.NoSuchProcess:  # ZombieProcess included
            return self._members_unproven()
        if self.started is None or abs(started - self.started) > START_TOLERANCE:
            recorded = "unknown" if self.started is None else f"{self.started:.3f}"
            return f"its leader started at {started:.3f}, recorded {recorded}: the id was reused"
        if not self._carries_token(leader):
            return f"its leader does not carry {MARKER} with this group's token"
        return None

    def _members_unproven(self) -> str | None:
        import psutil

        members = 0
        for proc in psutil.process_iter():
            try:  # psutil has no process-group id; os.getpgid reads any process's, on macOS too
                if os.getpgid(proc.pid) != self.pgid or proc.status() == psutil.STATUS_ZOMBIE:
                    continue  # a zombie is dead already, and its environment is gone
            except (OSError, psutil.Error):
                continue
            members += 1
            if self._carries_token(proc):
                return None
        if not members:
            return ""  # the group is gone: nothing to kill, nothing to report
        return f"none of its {members} process(es) carries {MARKER} with this group's token"

    def _carries_token(self, proc: psutil.Process) -> bool:
        import psutil

        try:
            return proc.environ().get(MARKER) == self.token
        except psutil.Error:  # gone, a zombie, or not ours to read
            return False


def _kill_proven(groups: Iterable[AgentGroup], source: Path) -> int:
    """SIGKILL each group that can be proven ours; log the ones that cannot."""
    killed = 0
    for group in groups:
        why = group.unproven()
        if why:
            log.warning("not killing process group %d listed in %s: %s", group.pgid, source, why)
            continue
        if why is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group.pgid, signal.SIGKILL)
                killed += 1
    return killed


class OrphanGuard:
    """Tracks live agent groups in a file and keeps a watchman ready to kill them."""

    def __init__(self, groups_file: Path) -> None:
        self.groups_file = groups_file
        self.groups: dict[int, AgentGroup] = {}
        #: this run's marker token; every agent gets it in :attr:`agent_env`
        self.token = secrets.token_hex(16)
        self._watchman: subprocess.Popen[bytes] | None = None

    @property
    def agent_env(self) -> dict[str, str]:
        """What to add to an agent's environment so a later sweep can prove the agent is ours."""
        return {MARKER: self.token}

    def sweep(self) -> int:
        """Kill the groups a previous daemon left behind that are provably its agents; returns how
        many were killed. Lines without proof (an old file's bare ids, a reused id, a foreign
        process) are logged and dropped: after this the file lists nothing from before."""
        try:  # never through a link: start refuses one (secure_paths), this checks what it opened
            text = read_private(self.groups_file).decode("utf-8", "replace")
        except FileNotFoundError:
            return 0
        stale: list[AgentGroup] = []
        for line in text.splitlines():
            group = AgentGroup.parse(line)
            if group is not None:
                stale.append(group)
            elif line.strip():
                log.warning(
                    "not killing %r listed in %s: an old or unknown format, without the start time "
                    "and marker that would prove it an agent of ours",
                    line.strip()[:80],
                    self.groups_file,
                )
        killed = _kill_proven(stale, self.groups_file) if stale else 0
        if killed:
            log.warning("killed %d agent process group(s) left by a previous daemon", killed)
        self._write()
        return killed

    def _write(self) -> None:
        text = "".join(g.line() for _, g in sorted(self.groups.items()))
        write_private_file(self.groups_file, text, durable=False)

    def _ensure_watchman(self) -> None:
        if self._watchman is not None and self._watchman.poll() is None:
            return
        self._watchman = subprocess.Popen(
            ["/bin/sh", "-c", _WATCHMAN, "qwen-daemon-watchman", str(self.groups_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a kill of an agent group, or of ours, must not reach it
            close_fds=True,
        )

    def add(self, pgid: int) -> None:
        """A new agent group (its leader just spawned with :attr:`agent_env`)."""
        self.groups[pgid] = AgentGroup.of(pgid, self.token)
        self._write()
        self._ensure_watchman()

    def discard(self, pgid: int) -> None:
        """An agent stopped: the file must stop naming its id, which the system may now reuse."""
        if self.groups.pop(pgid, None) is not None:
            self._write()

    def close(self) -> None:
        """Clean stop: kill any group still listed (if still provably ours), then let the
        watchman go with nothing to do."""
        _kill_proven(self.groups.values(), self.groups_file)
        self.groups.clear()
        self._write()
        watchman, self._watchman = self._watchman, None
        if watchman is not None:
            assert watchman.stdin is not None
            watchman.stdin.close()
            try:
                watchman.wait(timeout=5)
            except subprocess.TimeoutExpired:
                watchman.kill()
                watchman.wait()

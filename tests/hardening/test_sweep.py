"""Finding 3 of issue 14: "The start-up sweep can kill a stranger (low-medium). At start the daemon
SIGKILLs every process group listed in its ``agent-groups`` file without checking that it is still
its agent (``agents/orphans.py``). After a ``kill -9`` the file is never emptied, so a later start
SIGKILLs whatever reused those ids (shown with an unrelated ``setsid sleep``)."

Why these fail on the old code: its sweep took every all-digit word of the file as a group id and
SIGKILLed it, so the strangers below (listed the way a dead daemon's file names an id since reused,
or as an old file's bare id) died at the next start (checked by running them against it). The
other tests check what the old code did too (in its file format): the proof must not cost the
sweep its purpose or the file its accuracy. A real agent left by a daemon and watchman both killed
with -9 is still swept, with its leader alive or gone; and the file follows agents as they stop
and crash, so it never keeps an id the system may hand to someone else.

Real daemons, real processes, psutil itself (nothing mocked). A stranger is started with
``start_new_session=True``: the same as ``setsid sleep``, but its own group before Popen returns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from qwen_daemon.agents.orphans import MARKER, AgentGroup
from qwen_daemon.cli import wait_gone
from qwen_daemon.config import Paths
from qwen_daemon.discovery import pid_alive, read_discovery
from qwen_daemon.sessions.manager import SessionManager
from tests.support.daemon import fake_settings
from tests.support.probe import cli, get_json, poll, start_daemon, until

TINY_AGENT = str(Path(__file__).resolve().parent.parent / "tiny_agent.py")
pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("daemon_reaper")]


@pytest.fixture
def strangers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Unrelated processes, each in its own session and group; killed after the test."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def stranger(strangers: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    assert os.getpgid(proc.pid) == proc.pid
    strangers.append(proc)
    return proc


def listed(paths: Paths) -> list[AgentGroup]:
    lines = paths.agent_groups_file.read_text(encoding="utf-8").splitlines()
    groups = [AgentGroup.parse(line) for line in lines]
    assert None not in groups, lines
    return [g for g in groups if g is not None]


def members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of group ``pgid``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and pid_alive(proc.pid):
                found.append(proc.pid)
        except OSError:
            continue
    return found


def stop_daemon() -> None:
    res = cli("stop")
    assert res.returncode == 0, res.stderr


def test_strangers_whose_group_ids_are_listed_survive_a_start(
    paths: Paths, strangers: list[subprocess.Popen[bytes]]
) -> None:
    reused = stranger(strangers)  # its id was a dead daemon's agent's: different start, no marker
    same_start = stranger(strangers)  # even the very start time matching is not enough alone
    started = psutil.Process(same_start.pid).create_time()
    paths.agent_groups_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.agent_groups_file.write_text(
        AgentGroup(reused.pid, started - 3600.0, "a" * 32).line()
        + AgentGroup(same_start.pid, started, "b" * 32).line()
    )
    start_daemon()
    try:
        assert reused.poll() is None and same_start.poll() is None, "the sweep killed a stranger"
        assert listed(paths) == []  # the unproven ids are forgotten, so no watchman acts on them
        log = paths.log_file.read_text()
        assert f"not killing process group {reused.pid} " in log and "the id was reused" in log
        assert f"not killing process group {same_start.pid} " in log and MARKER in log
    finally:
        stop_daemon()
    assert reused.poll() is None and same_start.poll() is None, "the clean stop killed a stranger"


def test_an_old_format_file_is_harmless(paths: Paths, strangers: list[subprocess.Popen[bytes]]) -> None:
    """A file written before the proof existed lists bare ids: nothing proves them ours."""
    bare = stranger(strangers)
    paths.agent_groups_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.agent_groups_file.write_text(f"{bare.pid}\n")
    start_daemon()
    try:
        assert bare.poll() is None, "the sweep killed a stranger listed in an old-format file"
        assert listed(paths) == []
        assert f"not killing '{bare.pid}' listed in" in paths.log_file.read_text()
    finally:
        stop_daemon()
    assert bare.poll() is None


@pytest.mark.parametrize("leader_outlives_the_daemon", [True, False], ids=["leader-alive", "leader-gone"])
def test_an_agent_orphaned_by_a_daemon_and_watchman_killed_is_swept(
    tmp_path: Path, paths: Paths, monkeypatch: pytest.MonkeyPatch, leader_outlives_the_daemon: bool
) -> None:
    """Leader alive: its start time and marker prove the group. Leader gone (the fake agent exits
    at stdin EOF): only its child is left in the group, and the marker it inherited proves it."""
    monkeypatch.setenv("FAKE_AGENT_SPAWN_CHILD", "1")
    if leader_outlives_the_daemon:
        monkeypatch.setenv("FAKE_AGENT_IGNORE_SIGTERM", "1")  # and stdin EOF
    workspace = tmp_path / "ws"
    workspace.mkdir()
    start_daemon()
    info = read_discovery(paths)
    assert info is not None
    token = paths.token_file.read_text().strip()
    base = f"http://127.0.0.1:{info.port}"
    get_json(f"{base}/api/sessions", token=token, body={"cwd": str(workspace)}, timeout=30)
    [group] = listed(paths)
    doomed = poll(lambda: [pids for pids in [members(group.pgid)] if len(pids) == 2], 15, "the child")[0]
    assert group.pgid in doomed
    for pid in doomed:
        assert psutil.Process(pid).environ()[MARKER] == group.token

    daemon = psutil.Process(info.pid)
    [watchman] = [p for p in daemon.children() if "qwen-daemon-watchman" in " ".join(p.cmdline())]
    watchman.kill()
    assert wait_gone(watchman.pid, 15)
    daemon.kill()
    assert wait_gone(daemon.pid, 15)
    if not leader_outlives_the_daemon:
        assert wait_gone(group.pgid, 15), "the fake agent did not exit at stdin EOF"
    survivors = members(group.pgid)
    assert survivors == (doomed if leader_outlives_the_daemon else [p for p in doomed if p != group.pgid])

    start_daemon()
    try:
        for pid in survivors:
            assert wait_gone(pid, 15), f"orphan {pid} survived the sweep"
        assert "killed 1 agent process group(s) left by a previous daemon" in paths.log_file.read_text()
    finally:
        stop_daemon()


async def test_the_file_is_rewritten_as_agents_stop_and_crash(tmp_path: Path) -> None:
    """Not only at a clean daemon stop: an id the file keeps after its agent is gone is an id the
    system may hand to a stranger."""
    settings = fake_settings(tmp_path, agent_cmd=(sys.executable, TINY_AGENT))
    groups_file = settings.paths.agent_groups_file
    spaces = [tmp_path / "one", tmp_path / "two"]
    for space in spaces:
        space.mkdir()

    def pgids() -> list[int]:
        return sorted(g.pgid for g in listed(settings.paths))

    async def main() -> None:
        manager = SessionManager(settings)
        manager.load()
        assert manager.pool.orphans is not None
        try:
            first, second = [await manager.create(str(space)) for space in spaces]
            assert first.host.pid is not None and second.host.pid is not None
            pids = [first.host.pid, second.host.pid]
            assert pgids() == sorted(pids)
            for group in listed(settings.paths):
                leader = psutil.Process(group.pgid)
                assert group.token == manager.pool.orphans.token
                assert group.started is not None and abs(group.started - leader.create_time()) < 0.01
                assert leader.environ()[MARKER] == group.token
            await manager.delete(first.id)  # its agent stops with its last session
            assert pgids() == [pids[1]]
            os.killpg(pids[1], signal.SIGKILL)  # the second agent crashes
            await until(lambda: not groups_file.read_text(), timeout=15)
        finally:
            await manager.shutdown()
        assert groups_file.read_text() == ""

    await main()

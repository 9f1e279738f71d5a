"""Finding 4 of issue 14: "Files opened before they are checked (low). The token is read and the
log opened (``daemonize.py``) before ``secure_paths`` checks ownership, without ``O_NOFOLLOW``;
``secure_paths`` follows symlinks when it chmods. A dangling ``token`` symlink stops start with a
misleading message."

Why these fail on the old code: ``start`` read a token through a link (and, for a link to an
invalid token, wrote a new one through it), appended to a log file through a link, wrote the start
flags before any check, followed a link at the database with SQLite, and only then did
``secure_paths`` look, with ``chmod`` following links (a link to a 0644 file made the target
0600). Only the token, database, discovery, pid and log files were checked at all, never
``agent-groups``, ``start-flags.json`` or ``config.toml``; another user's ``config.toml`` was
read and its ``agent_cmd`` would have been run. A dangling ``token`` link ended in "cannot write
.../token: No such file or directory". A readable token was made 0600 again and kept, though
others may have read it.

Every case is a real ``qwen-daemon start`` (a subprocess, in the test's isolated home): it must
exit 1 with one line naming the path and what is wrong, no traceback, no daemon, and the link's
target untouched (content, mode, and for a directory its listing).
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.daemon_files import load_or_create_token, secure_paths
from qwen_daemon.discovery import DiscoveryInfo, read_discovery, write_discovery
from qwen_daemon.private_files import UnsafePath, read_private
from qwen_daemon.sessions.store import Store, StoreError
from tests.support.daemon import Api, serve
from tests.support.probe import cli, start_daemon, until
from tests.support.system import need

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("daemon_reaper")]

TOKEN = "t" * 43 + "\n"

#: every file the daemon owns, with content it would accept (so only the check can refuse it)
FILES: dict[str, Callable[[Paths], tuple[Path, str]]] = {
    "token": lambda p: (p.token_file, TOKEN),
    "config.toml": lambda p: (p.config_file, "log_level = 'info'\n"),
    "log": lambda p: (p.log_file, "an old line\n"),
    "pid": lambda p: (p.pid_file, "999999\n"),
    "discovery": lambda p: (p.discovery_file, "{}\n"),
    "agent-groups": lambda p: (p.agent_groups_file, ""),
    "start-flags": lambda p: (p.start_flags_file, "{}"),
    "sessions.db": lambda p: (p.database, ""),
    "sessions.db-wal": lambda p: (Path(f"{p.database}-wal"), ""),
}
DIRS: dict[str, Callable[[Paths], Path]] = {
    "config dir": lambda p: p.config_dir,
    "state dir": lambda p: p.state_dir,
    "log dir": lambda p: p.log_dir,
    "runtime dir": lambda p: p.runtime_dir,
    "agent log dir": lambda p: p.agent_log_dir,
}


def refused(path: Path, why: str) -> None:
    """``start`` exits 1 with one line naming ``path`` and ``why``, and no daemon is running."""
    res = cli("start", "--port", "0", "--agent-cmd", f"{sys.executable} -c pass", timeout=60)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert str(path) in res.stderr and why in res.stderr, res.stderr
    assert "is running at" not in res.stdout
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def victim(tmp_path: Path) -> tuple[Path, bytes]:
    """A file that is not the daemon's, with content it would accept as any of its own files."""
    target = tmp_path / "victim"
    target.write_text(TOKEN, encoding="utf-8")
    target.chmod(0o644)
    return target, target.read_bytes()


def parents_of(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)


@pytest.mark.parametrize("name", FILES)
def test_a_link_to_a_file_is_refused_and_nothing_goes_through_it(
    name: str, paths: Paths, tmp_path: Path
) -> None:
    path, _content = FILES[name](paths)
    target, before = victim(tmp_path)
    parents_of(path)
    path.symlink_to(target)
    refused(path, "is a symbolic link")
    assert target.read_bytes() == before and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert path.is_symlink()


@pytest.mark.parametrize("name", FILES)
def test_a_dangling_link_is_refused_and_nothing_is_created_through_it(
    name: str, paths: Paths, tmp_path: Path
) -> None:
    path, _content = FILES[name](paths)
    parents_of(path)
    path.symlink_to(tmp_path / "nowhere")
    refused(path, "is a symbolic link")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("name", FILES)
def test_another_users_file_is_refused(name: str, paths: Paths) -> None:
    need(os.geteuid() == 0, "giving a file to another user needs root")
    path, content = FILES[name](paths)
    parents_of(path)
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    refused(path, "belongs to another user")
    assert path.read_text(encoding="utf-8") == content


@pytest.mark.parametrize("name", DIRS)
def test_a_link_to_a_directory_is_refused_and_nothing_lands_in_its_target(
    name: str, paths: Paths, tmp_path: Path
) -> None:
    path = DIRS[name](paths)
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    (target / "keep").write_text("mine", encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target, target_is_directory=True)
    refused(path, "is a symbolic link")
    assert [p.name for p in target.iterdir()] == ["keep"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


@pytest.mark.parametrize("name", DIRS)
def test_another_users_directory_is_refused(name: str, paths: Paths) -> None:
    need(os.geteuid() == 0, "giving a directory to another user needs root")
    path = DIRS[name](paths)
    path.mkdir(parents=True, mode=0o700)
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    refused(path, "belongs to another user")
    assert list(path.iterdir()) == []


def test_a_token_others_can_read_is_refused_and_left_alone(paths: Paths) -> None:
    paths.config_dir.mkdir(parents=True, mode=0o700)
    paths.token_file.write_text(TOKEN, encoding="utf-8")
    paths.token_file.chmod(0o640)
    refused(paths.token_file, "can be read by other users (mode 0640)")
    assert stat.S_IMODE(paths.token_file.stat().st_mode) == 0o640
    assert paths.token_file.read_text(encoding="utf-8") == TOKEN
    # the way out the message names works, and start then goes ahead
    assert cli("token", "rotate").returncode == 0
    start_daemon()
    assert paths.token_file.read_text(encoding="utf-8") != TOKEN


def test_a_config_file_others_can_change_is_refused(paths: Paths) -> None:
    """Its ``agent_cmd`` is a command the daemon runs as the user."""
    paths.config_dir.mkdir(parents=True, mode=0o700)
    paths.config_file.write_text("agent_cmd = 'touch /tmp/owned'\n", encoding="utf-8")
    paths.config_file.chmod(0o666)
    refused(paths.config_file, "can be changed by other users (mode 0666)")


def test_the_cli_refuses_a_linked_token_too(paths: Paths, tmp_path: Path) -> None:
    """``url`` would otherwise print whatever the link points at as the token."""
    start_daemon()
    target, _before = victim(tmp_path)
    paths.token_file.unlink()
    paths.token_file.symlink_to(target)
    res = cli("url")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"{paths.token_file} is a symbolic link" in res.stderr
    assert TOKEN.strip() not in res.stdout
    stopped = cli("stop")  # by signal: the link is not read
    assert stopped.returncode == 0 and "is a symbolic link" in stopped.stderr, stopped.stderr
    assert read_discovery(paths) is None and target.read_text(encoding="utf-8") == TOKEN


def test_with_a_readable_token_the_running_daemon_can_still_be_rotated_and_stopped(paths: Paths) -> None:
    """The way out ``start`` names must work while a daemon runs: the CLI still uses the token."""
    start_daemon()
    old = paths.token_file.read_text(encoding="utf-8")
    paths.token_file.chmod(0o644)
    rotated = cli("token", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert paths.token_file.read_text(encoding="utf-8") != old
    assert stat.S_IMODE(paths.token_file.stat().st_mode) == 0o600
    assert cli("stop").returncode == 0


def test_a_fifo_is_refused_without_waiting_for_a_writer(paths: Paths) -> None:
    paths.config_dir.mkdir(parents=True, mode=0o700)
    os.mkfifo(paths.token_file, 0o600)
    with pytest.raises(UnsafePath, match="is not a regular file"):
        load_or_create_token(paths)


def test_repairs_go_through_descriptors_never_through_links(paths: Paths, tmp_path: Path) -> None:
    """Too open a mode of the daemon's own is repaired (fchmod); a link is refused before that."""
    paths.runtime_dir.mkdir(parents=True, exist_ok=True)
    paths.runtime_dir.chmod(0o755)
    paths.discovery_file.write_text("{}", encoding="utf-8")
    paths.discovery_file.chmod(0o644)
    repairs = secure_paths(paths)
    assert stat.S_IMODE(paths.runtime_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.discovery_file.stat().st_mode) == 0o600
    assert len(repairs) == 2 and all("mode 0" in r for r in repairs)
    target, _before = victim(tmp_path)
    paths.discovery_file.unlink()
    paths.discovery_file.symlink_to(target)
    with pytest.raises(UnsafePath, match=r"daemon\.json is a symbolic link"):
        secure_paths(paths)
    with pytest.raises(UnsafePath):
        read_private(paths.discovery_file)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_running_daemon_replaces_a_link_rather_than_writing_through_it(
    paths: Paths, tmp_path: Path
) -> None:
    """Files written while running are written aside and renamed over the name: a link planted
    there is replaced, its target never written."""
    target, before = victim(tmp_path)
    paths.runtime_dir.mkdir(parents=True, mode=0o700)
    paths.discovery_file.symlink_to(target)
    info = DiscoveryInfo(1, "127.0.0.1", 1, "http://127.0.0.1:1/", "0" * 32, "0", "2026-01-01T00:00:00")
    write_discovery(paths, info)
    assert target.read_bytes() == before
    assert not paths.discovery_file.is_symlink()
    assert stat.S_IMODE(paths.discovery_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("end", ["", "-wal", "-shm"])
def test_the_database_is_never_opened_through_a_link(paths: Paths, tmp_path: Path, end: str) -> None:
    """SQLite follows links: the names are checked first, and what was opened must be that file."""
    target, before = victim(tmp_path)
    paths.state_dir.mkdir(parents=True, mode=0o700)
    Path(f"{paths.database}{end}").symlink_to(target)
    with pytest.raises(StoreError, match="is a symbolic link"):
        Store(paths.database)
    assert target.read_bytes() == before


async def test_an_agents_log_is_never_written_through_a_link(tmp_path: Path, paths: Paths) -> None:
    """Agents' logs are the daemon's files too: a link at one fails that agent's start (502,
    naming it) and its target gets nothing."""
    target, before = victim(tmp_path)

    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        (log,) = paths.agent_log_dir.iterdir()
        assert (await api.call("DELETE", f"/api/sessions/{sid}")).status == 204
        await until(lambda: not any(h.running for h in api.daemon.manager.pool.hosts.values()))
        log.unlink()
        log.symlink_to(target)
        refused = await api.call("POST", "/api/sessions", {"cwd": str(ws)})
        assert refused.status == 502, refused.body
        assert f"{log} is a symbolic link" in refused.body["error"]["message"]

    await serve(tmp_path, body)
    assert target.read_bytes() == before

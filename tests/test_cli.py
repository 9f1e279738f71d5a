"""The CLI end to end: `python -m qwen_daemon` subprocesses that really daemonize.

Each test has its own HOME/XDG_* (conftest), so daemons never meet; ``daemon_reaper`` kills any
daemon a failing test leaves behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from qwen_daemon.cli import wait_gone
from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from tests.support.probe import poll

pytestmark = pytest.mark.usefixtures("daemon_reaper")

AGENT = "python3 -c pass"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qwen_daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def start(*extra: str) -> subprocess.CompletedProcess[str]:
    return cli("start", "--port", "0", "--agent-cmd", AGENT, *extra)


def log_text(paths: Paths) -> str:
    try:
        return paths.log_file.read_text(encoding="utf-8")
    except OSError:
        return "(no log file)"


def health(url: str) -> dict[str, object]:
    with _NO_PROXY.open(url + "health", timeout=5) as resp:
        doc: dict[str, object] = json.load(resp)
        return doc


def test_start_status_stop_cycle(paths: Paths) -> None:
    began = time.monotonic()
    res = start()
    assert res.returncode == 0, res.stderr + log_text(paths)
    token = paths.token_file.read_text(encoding="utf-8").strip()
    match = re.search(r"(http://127\.0\.0\.1:(\d+)/)\?token=(\S+)", res.stdout)
    assert match, res.stdout
    url, port, printed_token = match.group(1), int(match.group(2)), match.group(3)
    assert printed_token == token
    # `start` returned only once the server answers
    doc = health(url)
    assert doc["status"] == "ok"
    info = read_discovery(paths)
    assert info is not None
    assert (info.url, info.port, info.pid) == (url, port, doc["pid"])
    assert paths.pid_file.read_text(encoding="ascii").strip() == str(info.pid)
    assert time.monotonic() - began < 30
    assert token not in log_text(paths)

    res = cli("status")
    assert res.returncode == 0, res.stderr
    assert url in res.stdout

    res = cli("status", "--json")
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["running"] is True
    assert status["pid"] == info.pid
    assert status["url"] == url
    assert status["port"] == port
    assert status["version"] == doc["version"]
    assert status["sessions"] == 0
    assert status["manager"] == "standalone"

    res = cli("url")
    assert res.returncode == 0
    assert res.stdout.strip() == f"{url}?token={token}"

    res = cli("sessions")
    assert res.returncode == 0, res.stderr
    assert "no sessions" in res.stdout
    res = cli("sessions", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []

    res = start()
    assert res.returncode != 0
    assert "already running" in res.stderr
    assert url in res.stderr
    assert health(url)["instance_id"] == info.instance_id  # the first daemon is untouched

    res = cli("stop")
    assert res.returncode == 0, res.stderr
    assert "stopped" in res.stdout
    assert wait_gone(info.pid, 20), "daemon still running after stop"
    assert not paths.discovery_file.exists()
    assert not paths.pid_file.exists()
    assert "shutting down" in log_text(paths)

    res = cli("status")
    assert res.returncode == 3
    assert "not running" in res.stdout
    res = cli("status", "--json")
    assert res.returncode == 3
    assert json.loads(res.stdout) == {"running": False, "manager": "standalone", "supervisor": None}
    assert cli("url").returncode == 3
    assert cli("sessions").returncode == 3
    res = cli("stop")
    assert res.returncode == 0
    assert "qwen-daemon is not running" in res.stdout


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_pidfile_and_discovery_file_do_not_block_start(paths: Paths) -> None:
    dead = _dead_pid()
    paths.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.pid_file.write_text(f"{dead}\n", encoding="ascii")
    paths.discovery_file.write_text(
        json.dumps(
            {
                "pid": dead,
                "host": "127.0.0.1",
                "port": 1,
                "url": "http://127.0.0.1:1/",
                "instance_id": "0" * 32,
                "version": "0",
                "started_at": "2020-01-01T00:00:00Z",
            }
        ),
        encoding="utf-8",
    )
    res = start()
    assert res.returncode == 0, res.stderr + log_text(paths)
    info = read_discovery(paths)
    assert info is not None and info.pid != dead
    assert paths.pid_file.read_text(encoding="ascii").strip() == str(info.pid)
    assert cli("stop").returncode == 0
    assert wait_gone(info.pid, 20)


def test_busy_port_fails_fast_and_names_the_port(paths: Paths) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        began = time.monotonic()
        res = cli("start", "--port", str(port), "--agent-cmd", AGENT, timeout=30)
        assert time.monotonic() - began < 15
    assert res.returncode != 0
    assert f"127.0.0.1:{port}" in res.stderr
    assert "already in use" in res.stderr
    assert not paths.discovery_file.exists()
    assert not paths.pid_file.exists()  # the failed daemon released its lock
    assert cli("status").returncode == 3


@pytest.mark.parametrize("agent", ["no-such-agent-xyz --acp", "/nonexistent/agent"])
def test_missing_agent_fails_start_with_a_clear_message(paths: Paths, agent: str) -> None:
    res = cli("start", "--port", "0", "--agent-cmd", agent, timeout=30)
    assert res.returncode != 0
    assert agent.split()[0] in res.stderr and "Traceback" not in res.stderr
    assert not paths.discovery_file.exists()
    assert cli("status").returncode == 3


def test_an_unwritable_log_file_fails_start_with_a_clear_message(paths: Paths) -> None:
    """(Root ignores file modes, so a directory stands where the log file should be; since issue 14
    the check before the first write says so.)"""
    paths.log_file.mkdir(parents=True)
    res = cli("start", "--port", "0", "--agent-cmd", AGENT, timeout=30)
    assert res.returncode == 1
    assert f"cannot start: {paths.log_file} is not a regular file" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not paths.discovery_file.exists()


def test_a_start_that_times_out_leaves_no_daemon(paths: Paths) -> None:
    """``start`` gives up after ``start_timeout`` (here far shorter than any start) and exits 1;
    the daemon, finding nobody waiting for its readiness, stops. It used to run on unannounced."""
    res = cli("start", "--port", "0", "--agent-cmd", AGENT, env={"QWEN_DAEMON_START_TIMEOUT": "0.01"})
    assert res.returncode == 1 and "did not report readiness" in res.stderr, res.stderr
    poll(lambda: "start stopped waiting for this daemon" in log_text(paths), 30, "the daemon to notice")
    poll(lambda: "stopped" in log_text(paths).rsplit("start stopped waiting", 1)[1], 30, "its stop")
    poll(lambda: not paths.pid_file.exists(), 10, "the pid file to go")
    assert read_discovery(paths) is None


def test_status_and_stop_see_a_daemon_that_is_still_starting(paths: Paths) -> None:
    """Between taking the PID lock and publishing daemon.json, ``stop`` said "not running" and
    left it to come up, and ``status`` exited 3. A sleeping process named like the daemon holds
    the PID file here (the real window is about 25 ms)."""
    starting = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "qwen_daemon"], stdin=subprocess.DEVNULL
    )
    try:
        paths.runtime_dir.mkdir(parents=True, exist_ok=True)
        paths.pid_file.write_text(f"{starting.pid}\n")
        res = cli("status")
        assert res.returncode == 4 and f"(pid {starting.pid}) is starting" in res.stdout, res.stdout
        res = cli("status", "--json")
        assert json.loads(res.stdout)["starting"] is True
        res = cli("stop")
        assert res.returncode == 0 and "still starting" in res.stderr, res.stderr
        assert starting.wait(timeout=10) == -signal.SIGTERM
    finally:
        starting.kill()
        starting.wait()


def test_stop_without_the_token_signals_at_once(paths: Paths) -> None:
    """A refused stop request used to wait the whole 40 s grace before signalling, and ``url``
    said the daemon was not running."""
    assert start().returncode == 0
    info = read_discovery(paths)
    assert info is not None
    paths.token_file.unlink()
    res = cli("url")
    assert res.returncode == 1 and str(paths.token_file) in res.stderr, res.stderr
    began = time.monotonic()
    res = cli("stop")
    assert res.returncode == 0 and "stopped" in res.stdout, res.stderr
    assert time.monotonic() - began < 20, "not the 40 s grace of a stop it asked for"
    assert wait_gone(info.pid, 5) and "stopped" in log_text(paths)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_stops_a_background_daemon_cleanly(paths: Paths, signum: int) -> None:
    """(SIGHUP's default action used to kill it outright, leaving its runtime files behind.)"""
    res = start()
    assert res.returncode == 0, res.stderr
    info = read_discovery(paths)
    assert info is not None
    os.kill(info.pid, signum)
    assert wait_gone(info.pid, 20)
    assert not paths.discovery_file.exists()
    assert not paths.pid_file.exists()
    assert "stopped" in log_text(paths)


@pytest.mark.parametrize(
    ("args", "env", "config", "named"),
    [
        (("--port", "99999"), {}, None, "--port"),
        (("--max-sessions", "many"), {}, None, "--max-sessions"),
        ((), {"QWEN_DAEMON_AGENT_IDLE_TIMEOUT": "-1"}, None, "QWEN_DAEMON_AGENT_IDLE_TIMEOUT"),
        ((), {}, 'log_level = "chatty"\n', "log_level"),
    ],
)
def test_bad_config_exits_2_naming_the_setting(
    paths: Paths, args: tuple[str, ...], env: dict[str, str], config: str | None, named: str
) -> None:
    if config is not None:
        paths.config_dir.mkdir(parents=True, exist_ok=True)
        paths.config_file.write_text(config, encoding="utf-8")
    res = cli("start", *args, env=env)
    assert res.returncode == 2
    assert named in res.stderr
    assert "Traceback" not in res.stderr
    assert not paths.discovery_file.exists()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["start"],
        ["stop"],
        ["status"],
        ["sessions"],
        ["rename"],
        ["archive"],
        ["unarchive"],
        ["reopen"],
        ["url"],
        ["restart"],
        ["logs"],
        ["service"],
        ["service", "install"],
        ["token"],
        ["agents"],
        ["new"],
        ["mode"],
        ["pending"],
        ["answer"],
        ["pair"],
        ["devices"],
        ["devices", "revoke"],
        ["devices", "rename"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    res = cli(*command, "--help")
    assert res.returncode == 0
    assert "usage: qwen-daemon" in res.stdout


def test_commands_names_every_subcommand_and_each_parser_builds_alone() -> None:
    """``main`` builds only the named subcommand's parser: each must build alone, under its name."""
    import argparse

    from qwen_daemon.cli.parser import SUBCOMMANDS as COMMANDS
    from qwen_daemon.cli.parser import build_parser

    def subcommands(parser: argparse.ArgumentParser) -> list[str]:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return list(action.choices)

    assert subcommands(build_parser()) == list(COMMANDS)
    for name in COMMANDS:
        assert subcommands(build_parser(only=name)) == [name]


def test_mode_takes_an_id_that_begins_with_a_dash_after_double_dash() -> None:
    """Ids made before new ids stopped beginning with ``-`` stay reachable from the CLI."""
    from qwen_daemon.cli.parser import build_parser

    args = build_parser(only="mode").parse_args(["mode", "--", "-H5-YtY4OgOp", "default"])
    assert (args.session, args.mode) == ("-H5-YtY4OgOp", "default")


def test_version_and_usage_errors() -> None:
    from qwen_daemon import __version__

    res = cli("--version")
    assert res.returncode == 0
    assert __version__ in res.stdout
    res = cli()
    assert res.returncode == 2
    res = cli("frobnicate")
    assert res.returncode == 2
    for bad in (["stop", "--timeout", "nan"], ["restart", "--timeout", "-1"], ["stop", "--timeout", "inf"]):
        res = cli(*bad)  # nan once made stop wait forever
        assert res.returncode == 2 and "finite number" in res.stderr, (bad, res.stderr)
    res = cli("sessions", "--prune", "--older-than-days", "-3")
    assert res.returncode == 2 and "finite number" in res.stderr


@pytest.mark.parametrize("where", ["token_file", "pid_file"])
def test_a_directory_where_a_file_belongs_is_named_without_a_traceback(paths: Paths, where: str) -> None:
    getattr(paths, where).mkdir(parents=True)
    for command in (["start", "--port", "0", "--agent-cmd", AGENT], ["token", "rotate"]):
        res = cli(*command, timeout=30)
        assert res.returncode == 1 or (where == "pid_file" and command[0] == "token"), res
        assert "Traceback" not in res.stderr, res.stderr
        if res.returncode == 1:
            assert str(getattr(paths, where)) in res.stderr, res.stderr
    assert not paths.discovery_file.exists()


def test_a_binary_config_file_is_a_clear_error(paths: Paths) -> None:
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_bytes(b"\xff\xfe port = 1")
    res = cli("start", "--port", "0", "--agent-cmd", AGENT, timeout=30)
    assert res.returncode == 2 and str(paths.config_file) in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_fast_paths_do_not_import_the_server(tmp_path: Path) -> None:
    code = (
        "import sys; from qwen_daemon.cli import main\n"
        "for cmd in (['status'], ['url'], ['sessions'], ['stop']): main(cmd)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tornado', 'acp', 'daemon'))\n"
        "print('HEAVY', heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout


def test_foreground_refuses_when_already_running(paths: Paths) -> None:
    assert start().returncode == 0
    res = cli("start", "--foreground", "--port", "0", "--agent-cmd", AGENT, timeout=30)
    assert res.returncode == 1
    assert "already running" in res.stderr
    assert cli("stop").returncode == 0


# A stand-in daemon that publishes a discovery file and answers /health, but ignores
# POST /api/stop: exercises `stop`'s escalation and its is-it-really-ours check.
_STUBBORN = r"""
import http.server, json, os, signal, sys, uuid
from qwen_daemon.config import Paths
from qwen_daemon.discovery import DiscoveryInfo, write_discovery
instance_id = uuid.uuid4().hex
answer_id = instance_id if sys.argv[1] == "honest" else uuid.uuid4().hex
class H(http.server.BaseHTTPRequestHandler):
    def _send(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self._send(200, {"status": "ok", "pid": os.getpid(), "instance_id": answer_id})
    def do_POST(self):
        self._send(202, {"status": "stopping"})  # ...and carry on regardless
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), H)
port = server.server_address[1]
url = f"http://127.0.0.1:{port}/"
info = DiscoveryInfo(os.getpid(), "127.0.0.1", port, url, instance_id, "0", "2020-01-01T00:00:00Z")
write_discovery(Paths.from_platform(), info)
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
print("LISTENING", flush=True)
server.serve_forever()
"""


def _stubborn(mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUBBORN, mode], stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "LISTENING"
    return proc


def test_stop_escalates_to_sigterm_for_a_verified_daemon(paths: Paths) -> None:
    proc = _stubborn("honest")
    try:
        res = cli("stop", "--timeout", "0.5")
        assert res.returncode == 0, res.stderr
        assert "SIGTERM" in res.stderr
        assert proc.wait(timeout=10) == 0
        assert not paths.discovery_file.exists()
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_stop_never_signals_a_process_it_cannot_verify(paths: Paths) -> None:
    proc = _stubborn("impostor")  # /health answers with another instance id
    try:
        res = cli("stop", "--timeout", "0.5")
        assert res.returncode == 1
        assert "not sending signals" in res.stderr
        assert proc.poll() is None  # untouched
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()

"""Socket activation without systemd: a listening socket passed as fd 3 with LISTEN_FDS/LISTEN_PID.

The real thing (qwen-daemon.socket under a user manager) is in test_service_systemd.py; these run
anywhere and pin the protocol: only our PID's variables count, they are removed either way, a
bad fd is an error, and agents inherit neither the variables nor the descriptor.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from qwen_daemon.service.activation import ActivationError, inherited_sockets
from tests.support.daemon import FAKE_AGENT
from tests.support.probe import get_json, poll

pytestmark = pytest.mark.usefixtures("daemon_reaper")

# Stands in for systemd: moves the socket to fd 3, names our own PID, then execs the daemon.
_ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="http")
os.execv(sys.executable, [sys.executable, "-m", "qwen_daemon", "start", "--foreground", *sys.argv[2:]])
"""


def test_variables_for_another_process_are_ignored_and_removed() -> None:
    env = {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDNAMES": "x", "OTHER": "1"}
    assert inherited_sockets(env) == []
    assert env == {"OTHER": "1"}
    assert inherited_sockets({}) == []


def _ours() -> dict[str, str]:
    return {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}


def test_a_descriptor_that_is_not_a_listening_tcp_socket_is_an_error() -> None:
    read_fd, write_fd = os.pipe()
    left, right = socket.socketpair()
    try:
        env = _ours()
        with pytest.raises(ActivationError, match=f"fd {read_fd} is not a socket"):
            inherited_sockets(env, first_fd=read_fd)
        assert env == {}
        with pytest.raises(ActivationError, match="not a listening TCP socket"):
            inherited_sockets(_ours(), first_fd=left.fileno())
        assert left.fileno() >= 0  # refused, and left open for its owner
        with pytest.raises(ActivationError, match="not a positive number"):
            inherited_sockets({"LISTEN_FDS": "zero", "LISTEN_PID": str(os.getpid())})
    finally:
        os.close(read_fd)
        os.close(write_fd)
        left.close()
        right.close()


def test_a_listening_socket_is_adopted_non_blocking_and_close_on_exec() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        fd = os.dup(listener.fileno())
        os.set_inheritable(fd, True)
        (adopted,) = inherited_sockets(_ours(), first_fd=fd)
        with adopted:
            assert adopted.getsockname() == listener.getsockname()
            assert not adopted.getblocking() and not os.get_inheritable(fd)


def test_foreground_daemon_serves_on_the_passed_socket(tmp_path: Path, paths: Paths) -> None:
    probe = tmp_path / "agent-env.txt"
    # The agent records its environment and open descriptors, then becomes the fake agent.
    out = shlex.quote(str(probe))
    agent = f"ls -l /proc/$$/fd > {out}.fds; env > {out}; exec {shlex.join([sys.executable, FAKE_AGENT])}"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _ACTIVATE,
            str(listener.fileno()),
            "--agent-cmd",
            shlex.join(["sh", "-c", agent]),
        ],
        pass_fds=[listener.fileno()],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    listener.close()  # the daemon holds the only copy now
    try:
        health = get_json(f"http://127.0.0.1:{port}/health", timeout=30)
        assert health["pid"] == proc.pid
        info = read_discovery(paths)
        assert info is not None and info.port == port  # it did not bind a port of its own
        token = paths.token_file.read_text(encoding="utf-8").strip()
        base = f"http://127.0.0.1:{port}/api/sessions"
        session = get_json(base, token=token, body={"cwd": str(tmp_path)}, timeout=30)
        url = f"{base}/{session['id']}"
        poll(lambda: get_json(url, token=token)["state"] == "idle", 30, "an idle session")
        agent_env = probe.read_text(encoding="utf-8")
        assert "LISTEN_" not in agent_env and "NOTIFY_SOCKET" not in agent_env
        # "lrwx------ 1 u g 64 <date> 3 -> socket:[123]": no socket beyond stdio reached the agent
        fds = [
            line.split()[-3:] for line in Path(f"{probe}.fds").read_text(encoding="utf-8").splitlines()[1:]
        ]
        assert [f for f in fds if int(f[0]) > 2 and f[2].startswith("socket:")] == [], fds
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "daemon.log").read_text(encoding="utf-8")
    assert "listening on 1 socket(s) passed by the service manager" in output
    assert token not in output

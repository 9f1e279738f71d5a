"""Socket activation: take over the listening sockets systemd passes (``sd_listen_fds``).

With ``qwen-daemon.socket`` enabled, systemd listens on the daemon's address itself and starts
the service on the first connection (the first browser visit), handing the socket over as fd 3
with ``LISTEN_FDS=1`` and ``LISTEN_PID=<our pid>``. The connection that woke us waits in that
socket's backlog, so nothing is lost, and a restart never races another program for the port.

The protocol is small enough not to need libsystemd: the variables are honoured only when
``LISTEN_PID`` names this process (they may have been inherited by mistake), and are removed
afterwards either way, so agents started later never see them. The fds are made
close-on-exec for the same reason.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

from qwen_daemon.supervisor_env import LISTEN_VARIABLES

#: The first passed descriptor (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3


class ActivationError(Exception):
    """The passed descriptors are unusable; the message says which and why."""


def inherited_sockets(
    environ: MutableMapping[str, str] | None = None, first_fd: int = LISTEN_FDS_START
) -> list[socket.socket]:
    """The listening TCP sockets passed to this process, or ``[]`` when there are none for us.

    ``first_fd`` is always 3 in the protocol; tests pass descriptors of their own.

    Raises :class:`ActivationError` when the variables are meant for us but an fd is not a
    listening TCP stream socket (a misconfigured ``.socket`` unit should fail loudly, not make the
    daemon bind a second, different address).
    """
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    for name in LISTEN_VARIABLES:
        env.pop(name, None)
    if count is None or pid != str(os.getpid()):
        return []
    if not count.isdigit() or int(count) < 1:
        raise ActivationError(f"LISTEN_FDS={count!r} is not a positive number")
    sockets: list[socket.socket] = []
    try:
        for fd in range(first_fd, first_fd + int(count)):
            sockets.append(_adopt(fd))
    except BaseException:
        for sock in sockets:
            sock.detach()  # not ours to close: the fds stay with whoever passed them
        raise
    return sockets


def _adopt(fd: int) -> socket.socket:
    try:
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ActivationError(f"passed fd {fd} is not a socket: {exc.strerror or exc}") from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = 0
    tcp = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
    if not (tcp and listening):
        sock.detach()
        raise ActivationError(
            f"passed fd {fd} is not a listening TCP socket (use ListenStream=<address>:<port>)"
        )
    sock.setblocking(False)
    return sock


def bound_address(sock: socket.socket) -> tuple[str, int]:
    """(host, port) a passed socket listens on, as the settings spell them."""
    host, port = sock.getsockname()[:2]
    return str(host), int(port)

"""A slow-connection attack on a daemon, as its own process: many sockets, none with the token.

Run as ``python -m tests.support.attack --port P [--sockets 2000] [--seconds 60]``. Every socket
is one of three kinds, in turn:

- ``head``: sends a request line and then one header byte at a time, never ending the head;
- ``body``: sends a complete token-less ``POST /api/sessions`` head with ``Content-Length: 100``
  and one body byte, then one more byte now and then (finding 1 of issue 14, verbatim);
- ``public``: the same slow body on ``GET /static/app.css``, a route that needs no token, so the
  daemon cannot refuse it for the missing token.

When the daemon closes a socket, the slot opens a new one at once, so the attack keeps pressing
on whatever capacity the daemon has. Why a process of its own: the figures the test and
``bench/lockout.py`` measure must not include the attacker's event loop.

Bounded three ways: ``--seconds``, ``--max-opens`` (connections opened in all), and stdin (the
attack stops when its parent closes it). It prints ``ready`` once every slot has sent its first
bytes, and one JSON line with its counters when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass

KINDS = ("head", "body", "public")
#: seconds between two dribbled bytes: far below any header or body timeout
DRIBBLE_INTERVAL = 1.0
#: seconds a connect may take (a SYN dropped by a full listen queue is retried after 1 s, 3 s...)
CONNECT_TIMEOUT = 5.0


@dataclass
class Counters:
    opened: int = 0
    connect_failures: int = 0
    closed_by_daemon: int = 0
    open_now: int = 0
    most_open: int = 0


def first_bytes(kind: str, port: int) -> bytes:
    host = f"Host: 127.0.0.1:{port}\r\n"
    if kind == "head":
        return f"GET /health HTTP/1.1\r\n{host}X-Slow: ".encode()
    path, method = ("/api/sessions", "POST") if kind == "body" else ("/static/app.css", "GET")
    head = f"{method} {path} HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    return head.encode() + b"{"


class Attack:
    def __init__(
        self, port: int, sockets: int, seconds: float, max_opens: int, kinds: tuple[str, ...] = KINDS
    ) -> None:
        self.port = port
        self.kinds = kinds
        self.sockets = sockets
        self.deadline = time.monotonic() + seconds
        self.max_opens = max_opens
        self.stop = asyncio.Event()
        self.counters = Counters()
        self._started = 0
        self.ready = asyncio.Event()

    def _running(self) -> bool:
        return (
            not self.stop.is_set()
            and time.monotonic() < self.deadline
            and self.counters.opened < self.max_opens
        )

    def _first_attempt_done(self) -> None:
        self._started += 1
        if self._started == self.sockets:
            self.ready.set()

    async def slot(self, index: int) -> None:
        kind = self.kinds[index % len(self.kinds)]
        first = True
        while self._running():
            try:
                connecting = asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = await asyncio.wait_for(connecting, CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                self.counters.connect_failures += 1
                if first:
                    first = False
                    self._first_attempt_done()
                await self._pause(0.05)  # the listen queue is full: let it drain
                continue
            self.counters.opened += 1
            self.counters.open_now += 1
            self.counters.most_open = max(self.counters.most_open, self.counters.open_now)
            try:
                writer.write(first_bytes(kind, self.port))
                if first:
                    first = False
                    self._first_attempt_done()
                await self._dribble(reader, writer)
            except OSError:
                pass
            finally:
                self.counters.open_now -= 1
                writer.close()

    async def _dribble(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One byte per interval until the daemon closes the socket (or the attack ends)."""
        while self._running():
            try:
                data = await asyncio.wait_for(reader.read(65536), DRIBBLE_INTERVAL)
            except TimeoutError:
                writer.write(b"x")
                continue
            if not data:  # the daemon closed it (an answer, if any, came before the EOF)
                self.counters.closed_by_daemon += 1
                return

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def run(self) -> Counters:
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), self._stdin_readable)
        slots = [asyncio.create_task(self.slot(i)) for i in range(self.sockets)]
        await self.ready.wait()
        print("ready", flush=True)
        await asyncio.gather(*slots)
        loop.remove_reader(sys.stdin.fileno())
        return self.counters

    def _stdin_readable(self) -> None:
        if not sys.stdin.buffer.raw.read(4096):  # type: ignore[union-attr]
            self.stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-opens", type=int, default=1_000_000)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, from: " + ", ".join(KINDS))
    args = parser.parse_args()
    from qwen_daemon.server.connections import raise_file_limit

    raise_file_limit(args.sockets + 256)
    counters = asyncio.run(
        Attack(args.port, args.sockets, args.seconds, args.max_opens, tuple(args.kinds.split(","))).run()
    )
    print(json.dumps(asdict(counters)), flush=True)


if __name__ == "__main__":
    main()

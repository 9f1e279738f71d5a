"""A minimal asyncio WebSocket client for the benchmarks, with kernel receive timestamps.

Why not Tornado's client: it costs tens of microseconds and a future per frame, which on a
2-core machine would be measured as the daemon's latency. This one reads the socket in large
chunks and splits WebSocket frames with plain slicing (server frames are never masked), then each
message into the daemon's frames, its lines (``qwen_daemon.server.stream``: newline-delimited
JSON, several frames per message when they were queued in the same loop turn).

Why kernel timestamps (``SO_TIMESTAMPNS``): with 50 connections in one client process, the
frame for the 50th is read only after the other 49 were handled, so "when the client read it"
adds the client's own queueing to the daemon's figure. Each read here also returns the time the
kernel put the data in this socket's receive queue (the newest data's, for the whole read), i.e.
when the daemon's write reached the client. :meth:`RawWebSocket.frames` keeps both times.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time

_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux
#: Linux's option (and control message) number; Python's socket module does not export it
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class RawWebSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.kernel_ns = 0  # kernel receipt of the newest data returned by frames()
        self.read_ns = 0  # when this process read it

    @classmethod
    async def connect(cls, host: str, port: int, path: str, token: str) -> RawWebSocket:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        await loop.sock_connect(sock, (host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        conn = cls(sock)
        head = b""
        while b"\r\n\r\n" not in head:
            data = await conn._recv()
            if not data:
                raise ConnectionError("closed during the handshake")
            head += data
        head, _, conn.buffer = head.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"handshake refused: {head[:200]!r}")
        return conn

    async def _recv(self) -> bytes:
        """One read (waiting for data); records its kernel and read timestamps."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(_TIMESPEC.size))
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_reader(self.sock.fileno(), ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_reader(self.sock.fileno())
                continue
            self.read_ns = time.time_ns()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = _TIMESPEC.unpack_from(value)
                    self.kernel_ns = seconds * 1_000_000_000 + nanos
            return data

    async def frames(self) -> list[bytes]:
        """Every daemon frame (one JSON text) of the complete messages available now (waits for
        at least one message). A message is one unfragmented WebSocket frame: Tornado writes it so."""
        out: list[bytes] = []
        while not out:
            buf = self.buffer
            if _frame_at(buf, 0) is None:
                chunk = await self._recv()
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            pos = 0
            while (frame := _frame_at(buf, pos)) is not None:
                payload_start, pos = frame
                out.extend(buf[payload_start:pos].split(b"\n"))
            self.buffer = buf[pos:]
        return out

    def close(self) -> None:
        self.sock.close()


def _frame_at(buf: bytes, pos: int) -> tuple[int, int] | None:
    """Where the payload of the frame at ``pos`` starts and ends, if ``buf`` holds all of it."""
    if len(buf) - pos < 2:
        return None
    size, head = buf[pos + 1] & 0x7F, 2
    if size == 126:
        if len(buf) - pos < 4:
            return None
        size, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
    elif size == 127:
        if len(buf) - pos < 10:
            return None
        size, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
    end = pos + head + size
    return (pos + head, end) if len(buf) >= end else None

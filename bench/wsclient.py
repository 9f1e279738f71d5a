"""A minimal asyncio WebSocket client for the benchmarks.

Why not Tornado's client: it costs tens of microseconds and a future per frame, which on a
2-core machine would be measured as the daemon's latency. This one reads the socket in large
chunks and splits frames with plain slicing (server frames are never masked).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct


class RawWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""

    @classmethod
    async def connect(cls, host: str, port: int, path: str, token: str) -> RawWebSocket:
        reader, writer = await asyncio.open_connection(host, port, limit=2**24)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"handshake refused: {head[:200]!r}")
        return cls(reader, writer)

    async def frames(self) -> list[bytes]:
        """Every complete frame payload available now (waits for at least one)."""
        out: list[bytes] = []
        while not out:
            chunk = await self.reader.read(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            buf = self.buffer + chunk
            pos = 0
            while len(buf) - pos >= 2:
                size = buf[pos + 1] & 0x7F
                head = 2
                if size == 126:
                    if len(buf) - pos < 4:
                        break
                    size = struct.unpack_from("!H", buf, pos + 2)[0]
                    head = 4
                elif size == 127:
                    if len(buf) - pos < 10:
                        break
                    size = struct.unpack_from("!Q", buf, pos + 2)[0]
                    head = 10
                if len(buf) - pos < head + size:
                    break
                out.append(buf[pos + head : pos + head + size])
                pos += head + size
            self.buffer = buf[pos:]
        return out

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        size = len(payload)
        header = (
            struct.pack("!BB", 0x81, 0x80 | size) if size < 126 else struct.pack("!BBH", 0x81, 0xFE, size)
        )
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    def close(self) -> None:
        self.writer.close()

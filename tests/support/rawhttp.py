"""One HTTP exchange over a bare socket: for requests no HTTP client library would send."""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def raw_exchange(port: int, head: str, body_chunks: list[bytes] | None = None) -> tuple[int, Any]:
    """Send ``head`` (and maybe body chunks while no answer has come); read one whole response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode())
    reading = asyncio.ensure_future(reader.read(1 << 20))
    for chunk in body_chunks or []:
        if reading.done():
            break
        writer.write(chunk)
        try:
            await writer.drain()
        except ConnectionError:
            break
    data = await asyncio.wait_for(reading, 30)
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        more = await asyncio.wait_for(reader.read(1 << 20), 30)
        assert more, f"the connection closed before the whole answer: {data!r}"
        data += more
    writer.close()
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, json.loads(payload[: _length(data)])


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0

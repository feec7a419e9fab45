"""A load client that is not the limit: asyncio protocols, no SSE parser, no heavy imports.

    python -m bench.sse_reader http://127.0.0.1:PORT SECONDS CID [CID ...]

It reads for SECONDS at most, or until a line arrives on its stdin (the bench says when).

Opens one stream per conversation, prints "ready" once every stream answered, then records
each token's clock mark (``⏱<ns>``, in UTF-8 or escaped as ``\\u23f1``) with its latency
on arrival, and prints them as JSON at the end. A frame of several coalesced tokens carries
several marks: each token counts.

Each stream is a ``asyncio.Protocol``: what arrives is scanned in the callback that
receives it, with no task, ``readline`` or timeout per line. (A ``StreamReader`` with
``wait_for(readline())`` per line cost about 350 µs of CPU per token: at 100
conversations the clients took half a core from the server they measured.) The chunked
encoding's size lines fall between events and are simply not ``event:`` lines: only
complete events (up to the last blank line) are scanned, the rest waits for more bytes.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import cast

from bench.fast_loop import run

MARK = re.compile(rb"(?:\\u23f1|\xe2\x8f\xb1)(\d+)")  # the mark escaped, or in UTF-8
TOKEN = b"\nevent: token\r\n"
END = b"\r\n\r\n"


class _Stream(asyncio.Protocol):
    def __init__(self, request: bytes, out: list[tuple[int, float]]) -> None:
        self.request = request
        self.out = out
        self.buffer = b""
        self.answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.reading = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buffer = self.buffer + data
        if not self.answered.done():
            head, sep, rest = buffer.partition(END)
            if not sep:
                self.buffer = buffer
                return
            self.answered.set_result(b" 200 " in head.split(b"\r\n", 1)[0])
            buffer = b"\r\n" + rest  # so that the first event's block starts with a newline
        cut = buffer.rfind(END)
        if cut < 0:
            self.buffer = buffer
            return
        ready, self.buffer = buffer[:cut], buffer[cut:]
        if not self.reading:
            return
        for block in ready.split(END):
            if TOKEN in block:
                self.out.extend((int(m), (now - int(m)) / 1e6) for m in MARK.findall(block))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_result(False)


async def main(base: str, seconds: float, cids: list[str]) -> None:
    host, port = base.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    out: list[tuple[int, float]] = []
    streams: list[_Stream] = []
    for cid in cids:
        request = (
            f"GET /api/conversations/{cid}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        _, stream = await loop.create_connection(lambda r=request: _Stream(r, out), host, int(port))
        streams.append(stream)
    for cid, stream in zip(cids, streams, strict=True):
        if not await stream.answered:
            raise RuntimeError(f"stream of {cid} was refused")
    for stream in streams:
        stream.reading = True
    print("ready", flush=True)
    told = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    await asyncio.wait({told}, timeout=seconds)
    for stream in streams:
        stream.reading = False
        stream.transport.close()
    print(json.dumps(out), flush=True)
    told.cancel()


if __name__ == "__main__":
    run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))

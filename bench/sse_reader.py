"""A load client that is not the limit: raw asyncio sockets, no SSE parser, no heavy imports.

    python -m bench.sse_reader http://127.0.0.1:PORT SECONDS CID [CID ...]

It reads for SECONDS at most, or until a line arrives on its stdin (the bench says when).

Opens one stream per conversation, prints "ready" once every stream answered (the
chunk-size lines of the chunked body are simply not ``event:``/``data:`` lines: the server
writes each event as one chunk), then records each token's clock mark (``⏱<ns>``, escaped by
json.dumps as ``\\u23f1``) with its latency on arrival, and prints them as JSON at the end.
A frame of several coalesced tokens carries several marks: each token counts.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

MARK = re.compile(rb"\\u23f1(\d+)")


async def _open(
    host: str, port: int, cid: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The stream's reader and writer (kept: a dropped writer closes the connection)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /api/conversations/{cid}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream of {cid}: {status!r}")
    return reader, writer


async def _read(reader: asyncio.StreamReader, until: float, out: list[tuple[int, float]]) -> None:
    token = False
    while (left := until - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(reader.readline(), left)
        except TimeoutError:
            return
        if not line:
            return
        if line.startswith(b"event:"):
            token = line.startswith(b"event: token")
        elif token and line.startswith(b"data:"):
            now = time.time_ns()
            out.extend((int(m), (now - int(m)) / 1e6) for m in MARK.findall(line))


async def main(base: str, seconds: float, cids: list[str]) -> None:
    host, port = base.removeprefix("http://").split(":")
    streams = await asyncio.gather(*(_open(host, int(port), cid) for cid in cids))
    print("ready", flush=True)
    out: list[tuple[int, float]] = []
    until = time.monotonic() + seconds
    reading = asyncio.gather(*(_read(reader, until, out) for reader, _ in streams))
    told = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    await asyncio.wait({reading, told}, return_when=asyncio.FIRST_COMPLETED)
    reading.cancel()
    for _, writer in streams:
        writer.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))

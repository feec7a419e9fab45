"""Server-sent events written as they are ready: one chunk per batch of events.

The event stream is the hottest path of the studio (every token of every specialist goes
through it to every client watching). sse-starlette's response costs a cancel scope per
event and the route asked whether the client was still there before each one; here a
batch of ready events (services/generation_previews.py ``with_previews``) is encoded at
once and written with one send, a client that went away is noticed by Starlette's
disconnect listener, and a send that cannot complete in ``SEND_TIMEOUT`` seconds (a
client that stopped reading) ends the stream: it reconnects with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse
from starlette.types import Send

from creative_studio.services.generation_previews import Line

__all__ = ["EventStream", "encode"]

SEND_TIMEOUT = 30.0
PING = b": ping\r\n\r\n"


def encode(batch: list[Line]) -> bytes:
    """The SSE text of a batch (``id``, ``event``, one ``data`` line of JSON each)."""
    if not batch:
        return PING
    return "".join(
        f"id: {event_id}\r\nevent: {kind}\r\ndata: {json.dumps(data, default=str)}\r\n\r\n"
        for event_id, kind, data in batch
    ).encode()


async def _chunks(batches: AsyncIterator[list[Line]]) -> AsyncIterator[bytes]:
    async for batch in batches:
        yield encode(batch)


class EventStream(StreamingResponse):
    """A text/event-stream response of batches (an empty batch is a keep-alive ping)."""

    media_type = "text/event-stream"

    def __init__(self, batches: AsyncIterator[list[Line]], status_code: int = 200) -> None:
        super().__init__(
            _chunks(batches),
            status_code=status_code,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for chunk in self.body_iterator:
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except TimeoutError:
                return  # the client stopped reading; closing lets it reconnect
        await send({"type": "http.response.body", "body": b"", "more_body": False})

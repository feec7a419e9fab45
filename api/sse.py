"""Server-sent events written as they are ready: one chunk per batch of events.

The event stream is the hottest path of the studio (every token of every specialist goes
through it to every client watching), so a token costs it as little as it can:

* a batch of ready events (services/generation_previews.py ``with_previews``) is encoded
  at once, with orjson, and written with one send; a client that went away is noticed by
  Starlette's disconnect listener (sse-starlette's response cost a cancel scope per event
  and asked whether the client was still there before each one);
* a send that cannot complete in ``SEND_TIMEOUT`` seconds (a client that stopped reading)
  ends the stream, and the client reconnects with Last-Event-ID. One watchdog per stream
  checks that every ``WATCH_EVERY`` seconds: a timeout armed and disarmed around every
  send was two timer operations per token per client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Send

from creative_studio.services.generation_previews import Line

__all__ = ["EventStream", "encode"]

SEND_TIMEOUT = 30.0
WATCH_EVERY = 5.0
PING = b": ping\r\n\r\n"


def encode(batch: list[Line]) -> bytes:
    """The SSE text of a batch (``id``, ``event``, one ``data`` line of JSON each; what JSON
    cannot say is written as its ``str``)."""
    if not batch:
        return PING
    return b"".join(
        b"id: %s\r\nevent: %s\r\ndata: %s\r\n\r\n"
        % (
            event_id.encode(),
            kind.encode(),
            orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS),
        )
        for event_id, kind, data in batch
    )


class EventStream(StreamingResponse):
    """A text/event-stream response of batches (an empty batch is a keep-alive ping)."""

    media_type = "text/event-stream"

    def __init__(self, batches: AsyncIterator[list[Line]], status_code: int = 200) -> None:
        super().__init__(
            cast(AsyncIterator[Any], batches),  # encoded here, in stream_response
            status_code=status_code,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        loop = asyncio.get_running_loop()
        sending_since: float | None = None  # when the send in progress began
        watchdog: asyncio.TimerHandle | None = None
        try:
            async with asyncio.timeout(None) as deadline:

                def watch() -> None:
                    nonlocal watchdog
                    if sending_since is not None and loop.time() - sending_since > SEND_TIMEOUT:
                        deadline.reschedule(loop.time())  # cancels the stuck send
                        return
                    watchdog = loop.call_later(WATCH_EVERY, watch)

                watchdog = loop.call_later(WATCH_EVERY, watch)
                try:
                    async for batch in self.body_iterator:
                        sending_since = loop.time()
                        chunk = encode(cast(list[Line], batch))
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        sending_since = None
                finally:
                    if watchdog is not None:
                        watchdog.cancel()
        except TimeoutError:
            return  # the client stopped reading; closing lets it reconnect
        await send({"type": "http.response.body", "body": b"", "more_body": False})

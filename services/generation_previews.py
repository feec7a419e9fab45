"""Preview frames: live to whoever watches the conversation, never stored.

A preview is a JPEG of the image forming, one per sampler step (about 40 KB each as a
data URL). Stored in the event log they were most of its size (4.4 MB per 30-step run)
and were replayed to every reconnecting client, so they bypass the log entirely:

* the generation service hands each frame to this hub instead of its event sinks;
* the hub keeps only the latest frame per conversation (for a client that connects
  mid-run) and drops it when the generation ends;
* the SSE route merges the hub's frames into the stored events with ``with_previews``.

An SSE event needs an id that only grows (the web client skips anything not newer than
what it has). A frame gets ``<last stored id>.<n>`` ("123.000002"): newer than event 123,
older than event 124, and a client reconnecting with it as Last-Event-ID resumes after
123 — the frame was never stored, so nothing is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

__all__ = ["PreviewHub", "StoredEvent", "ephemeral_id", "with_previews"]

PREVIEW_KIND = "generation_progress"
_MAX_PER_EVENT = 999_999  # frames between two stored events (ids keep six decimals)


class StoredEvent(Protocol):
    """What the event log yields (store/eventlog.py LoggedEvent)."""

    id: int
    kind: str
    data: dict[str, Any]


class _Watcher:
    """One live client: holds only the newest frame it has not sent yet."""

    def __init__(self) -> None:
        self.frame: dict[str, Any] | None = None
        self.ready = asyncio.Event()

    def offer(self, frame: dict[str, Any]) -> None:
        self.frame = frame  # an older unsent frame is simply replaced
        self.ready.set()

    def take(self) -> dict[str, Any] | None:
        frame, self.frame = self.frame, None
        self.ready.clear()
        return frame


class PreviewHub:
    """Latest frame per conversation, fanned out to the clients that watch it."""

    def __init__(self) -> None:
        self._latest: dict[str, dict[str, Any]] = {}
        self._watchers: dict[str, set[_Watcher]] = {}

    def publish(self, conversation_id: str, frame: dict[str, Any]) -> None:
        self._latest[conversation_id] = frame
        for watcher in self._watchers.get(conversation_id, ()):
            watcher.offer(frame)

    def latest(self, conversation_id: str) -> dict[str, Any] | None:
        return self._latest.get(conversation_id)

    def end(self, conversation_id: str | None, generation_id: str) -> None:
        """The generation ended: its last frame is of no use to anyone joining now."""
        if conversation_id is None:
            return
        frame = self._latest.get(conversation_id)
        if frame is not None and frame.get("generation_id") == generation_id:
            del self._latest[conversation_id]

    def kept(self) -> int:
        """How many frames the hub holds (at most one per conversation)."""
        return len(self._latest)

    @contextlib.contextmanager
    def watch(self, conversation_id: str) -> Iterator[_Watcher]:
        watcher = _Watcher()
        self._watchers.setdefault(conversation_id, set()).add(watcher)
        try:
            yield watcher
        finally:
            watchers = self._watchers.get(conversation_id)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[conversation_id]


def ephemeral_id(after: int, n: int) -> str:
    """The SSE id of the n-th frame after stored event ``after`` (see the module doc)."""
    return f"{after}.{n:06d}"


async def _pump(events: AsyncIterator[StoredEvent], queue: asyncio.Queue[Any]) -> None:
    try:
        async for event in events:
            await queue.put(event)
    finally:
        await queue.put(None)


async def with_previews(
    events: AsyncIterator[StoredEvent],
    hub: PreviewHub,
    conversation_id: str,
    *,
    since: int,
    caught_up: int,
) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
    """(sse id, kind, data) of the stored ``events`` with the hub's live frames between.

    ``caught_up`` is the newest stored id when the client connected: the latest frame (a
    late joiner's view of the running generation) is sent once the replay reached it.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    with hub.watch(conversation_id) as watcher:
        pump = asyncio.create_task(_pump(events, queue), name=f"sse-{conversation_id}")
        last, sent = since, 0
        joined = since >= caught_up
        if joined and (frame := hub.latest(conversation_id)) is not None:
            watcher.offer(frame)
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                waits: set[asyncio.Future[Any]] = {getter}
                if joined:  # during the replay frames wait: the replay is not live yet
                    waits.add(asyncio.ensure_future(watcher.ready.wait()))
                try:
                    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also when the client leaves mid-wait
                    for waiting in waits:
                        if not waiting.done():
                            waiting.cancel()
                if getter in done:
                    event = getter.result()
                    if event is None:
                        return
                    last, sent = event.id, 0
                    yield str(event.id), event.kind, event.data
                    if not joined and last >= caught_up:
                        joined = True
                        if (frame := hub.latest(conversation_id)) is not None:
                            watcher.offer(frame)
                if joined and watcher.ready.is_set():
                    frame = watcher.take()
                    if frame is not None and sent < _MAX_PER_EVENT:
                        sent += 1
                        yield ephemeral_id(last, sent), PREVIEW_KIND, frame
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

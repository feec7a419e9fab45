"""Preview frames: live to whoever watches the conversation, never stored.

A preview is a JPEG of the image forming, one per sampler step (about 40 KB each as a
data URL). Stored in the event log they were most of its size (4.4 MB per 30-step run)
and were replayed to every reconnecting client, so they bypass the log entirely:

* the generation service hands each frame to this hub instead of its event sinks;
* the hub keeps only the latest frame per conversation (for a client that connects
  mid-run) and drops it when the generation ends;
* the SSE route merges the hub's frames into the stored events with ``with_previews``,
  in batches (what is ready at once is written as one chunk), waiting on the event log's
  queue for that client only (a frame wakes it).

An SSE event needs an id that only grows (the web client skips anything not newer than
what it has). A frame gets ``<last stored id>.<n>`` ("123.000002"): newer than event 123,
older than event 124, and a client reconnecting with it as Last-Event-ID resumes after
123 — the frame was never stored, so nothing is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
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
    """One live client: holds only the newest frame it has not sent yet.

    A new frame wakes the client's stream (``wake``, set once the stream follows the log),
    once until the frame is taken.
    """

    def __init__(self) -> None:
        self.frame: dict[str, Any] | None = None
        self.wake: Callable[[], None] | None = None
        self.flagged = False

    def offer(self, frame: dict[str, Any]) -> None:
        self.frame = frame  # an older unsent frame is simply replaced
        if not self.flagged and self.wake is not None:
            self.flagged = True
            self.wake()

    def take(self) -> dict[str, Any] | None:
        frame, self.frame = self.frame, None
        self.flagged = False
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


Line = tuple[str, str, dict[str, Any]]
Waker = Callable[[Callable[[], None]], None]
Follow = Callable[[Waker], AsyncIterator[Sequence[StoredEvent]]]


async def with_previews(
    follow: Follow,
    hub: PreviewHub,
    conversation_id: str,
    *,
    since: int,
    caught_up: int,
    ping: float | None = None,
) -> AsyncIterator[list[Line]]:
    """Batches of (sse id, kind, data): the stored batches with the hub's live frames.

    ``follow(waker)`` is the event log's ``follow_batches`` for this client; the waker it
    hands over wakes that one queue for a new frame and for the keep-alive, so an event
    costs no task or hop of its own. ``caught_up`` is the newest stored id when the client
    connected: the latest frame (a late joiner's view of the running generation) is sent
    once the replay reached it. With ``ping``, an empty batch comes every ``ping`` seconds
    (the SSE keep-alive comment).
    """
    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle | None = None
    pinged = False

    with hub.watch(conversation_id) as watcher:

        def tick() -> None:
            nonlocal timer, pinged
            pinged = True
            if watcher.wake is not None:
                watcher.wake()
            assert ping is not None
            timer = loop.call_later(ping, tick)

        def take_wake(wake: Callable[[], None]) -> None:
            watcher.wake = wake
            if watcher.frame is not None:  # a late joiner's frame: as soon as it caught up
                watcher.flagged = True
                wake()

        batches = follow(take_wake)
        if ping:
            timer = loop.call_later(ping, tick)
        last, sent = since, 0
        joined = since >= caught_up
        if joined and (frame := hub.latest(conversation_id)) is not None:
            watcher.frame = frame  # sent with the first batch (or wake-up)
        try:
            async for batch in batches:
                out: list[Line] = []
                for event in batch:
                    last, sent = event.id, 0
                    out.append((str(event.id), event.kind, event.data))
                if not joined and last >= caught_up:
                    joined = True
                    if (frame := hub.latest(conversation_id)) is not None:
                        watcher.frame = frame
                if joined and watcher.frame is not None:
                    frame = watcher.take()
                    if frame is not None and sent < _MAX_PER_EVENT:
                        sent += 1
                        out.append((ephemeral_id(last, sent), PREVIEW_KIND, frame))
                if out or pinged:
                    pinged = False
                    yield out
        finally:
            if timer is not None:
                timer.cancel()
            close = getattr(batches, "aclose", None)
            if close is not None:
                await close()

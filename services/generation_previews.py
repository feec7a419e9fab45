"""Preview frames: live to whoever watches the conversation, never stored.

A preview is a JPEG of the image forming, one per sampler step (about 40 KB each as a
data URL). Stored in the event log they were most of its size (4.4 MB per 30-step run)
and were replayed to every reconnecting client, so they bypass the log entirely:

* the generation service hands each frame to this hub instead of its event sinks;
* the hub keeps only the latest frame per conversation (for a client that connects
  mid-run) and drops it when the generation ends;
* the SSE route merges the hub's frames into the stored events with ``with_previews``,
  in batches (what is ready at once is written as one chunk).

An SSE event needs an id that only grows (the web client skips anything not newer than
what it has). A frame gets ``<last stored id>.<n>`` ("123.000002"): newer than event 123,
older than event 124, and a client reconnecting with it as Last-Event-ID resumes after
123 — the frame was never stored, so nothing is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Protocol

__all__ = ["PreviewHub", "StoredEvent", "ephemeral_id", "with_previews"]

PREVIEW_KIND = "generation_progress"
_MAX_PER_EVENT = 999_999  # frames between two stored events (ids keep six decimals)
_AHEAD = 64  # stored batches that may wait for a slow client before the log waits too
_FRAME, _PING, _END = object(), object(), object()  # mailbox signals besides stored batches


class StoredEvent(Protocol):
    """What the event log yields (store/eventlog.py LoggedEvent)."""

    id: int
    kind: str
    data: dict[str, Any]


class _Watcher:
    """One live client: holds only the newest frame it has not sent yet.

    A new frame wakes the client through its mailbox (the one queue its stream waits on),
    once until the frame is taken.
    """

    def __init__(self, mailbox: asyncio.Queue[Any]) -> None:
        self.frame: dict[str, Any] | None = None
        self.mailbox = mailbox
        self.flagged = False

    def offer(self, frame: dict[str, Any]) -> None:
        self.frame = frame  # an older unsent frame is simply replaced
        if not self.flagged:
            self.flagged = True
            self.mailbox.put_nowait(_FRAME)

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
    def watch(self, conversation_id: str, mailbox: asyncio.Queue[Any]) -> Iterator[_Watcher]:
        watcher = _Watcher(mailbox)
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


async def _pump(
    batches: AsyncIterator[Sequence[StoredEvent]],
    mailbox: asyncio.Queue[Any],
    room: asyncio.Semaphore,
) -> None:
    """Stored batches into the mailbox, at most ``_AHEAD`` waiting (a slow client)."""
    try:
        async for batch in batches:
            await room.acquire()
            mailbox.put_nowait(batch)
    finally:
        mailbox.put_nowait(_END)


Line = tuple[str, str, dict[str, Any]]


async def with_previews(
    batches: AsyncIterator[Sequence[StoredEvent]],
    hub: PreviewHub,
    conversation_id: str,
    *,
    since: int,
    caught_up: int,
    ping: float | None = None,
) -> AsyncIterator[list[Line]]:
    """Batches of (sse id, kind, data): the stored ``batches`` with the hub's live frames.

    ``caught_up`` is the newest stored id when the client connected: the latest frame (a
    late joiner's view of the running generation) is sent once the replay reached it.
    Everything waits on one mailbox (stored batches, "a frame is ready", "ping"), so an
    event costs no task of its own; what is ready at once goes out as one batch. With
    ``ping``, an empty batch comes every ``ping`` seconds (the SSE keep-alive comment).
    """
    mailbox: asyncio.Queue[Any] = asyncio.Queue()
    room = asyncio.Semaphore(_AHEAD)
    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle | None = None

    def tick() -> None:
        nonlocal timer
        mailbox.put_nowait(_PING)
        assert ping is not None
        timer = loop.call_later(ping, tick)

    with hub.watch(conversation_id, mailbox) as watcher:
        pump = asyncio.create_task(_pump(batches, mailbox, room), name=f"sse-{conversation_id}")
        if ping:
            timer = loop.call_later(ping, tick)
        last, sent = since, 0
        joined = since >= caught_up
        if joined and (frame := hub.latest(conversation_id)) is not None:
            watcher.offer(frame)
        try:
            while True:
                items = [await mailbox.get()]
                while not mailbox.empty():
                    items.append(mailbox.get_nowait())
                out: list[Line] = []
                ended = pinged = False
                for item in items:
                    if item is _END:
                        ended = True
                        break
                    if item is _PING:
                        pinged = True
                    elif item is not _FRAME:
                        room.release()
                        for event in item:
                            last, sent = event.id, 0
                            out.append((str(event.id), event.kind, event.data))
                        if not joined and last >= caught_up:
                            joined = True
                            if (frame := hub.latest(conversation_id)) is not None:
                                watcher.offer(frame)
                if joined and watcher.frame is not None:
                    frame = watcher.take()
                    if frame is not None and sent < _MAX_PER_EVENT:
                        sent += 1
                        out.append((ephemeral_id(last, sent), PREVIEW_KIND, frame))
                if out or pinged:
                    yield out
                if ended:
                    return
        finally:
            if timer is not None:
                timer.cancel()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

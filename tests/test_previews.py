"""with_previews: stored batches and live preview frames on one queue per client.

The event log's follower is replaced by a small one with the same contract (a waker that
wakes it with nothing stored yields an empty batch), so each case is exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from creative_studio.services.generation_previews import PreviewHub, with_previews

CID = "c1"


@dataclass
class Event:
    id: int
    kind: str
    data: dict[str, Any]


class Follower:
    """Batches put here come out of ``follow``; a wake with nothing put yields []."""

    def __init__(self, *, replay: list[Event] | None = None) -> None:
        self.queue: asyncio.Queue[list[Event] | None] = asyncio.Queue()
        self.replay = replay or []

    def put(self, *events: Event) -> None:
        self.queue.put_nowait(list(events))

    async def follow(
        self, waker: Callable[[Callable[[], None]], None]
    ) -> AsyncIterator[list[Event]]:
        waker(lambda: self.queue.put_nowait([]))
        if self.replay:
            yield self.replay
        while (batch := await self.queue.get()) is not None:
            yield batch


async def take(stream: AsyncIterator[list[Any]], n: int) -> list[list[Any]]:
    return [await asyncio.wait_for(anext(stream), 5) for _ in range(n)]


async def test_a_late_joiner_gets_the_running_frame_at_once():
    hub = PreviewHub()
    hub.publish(CID, {"generation_id": "g", "step": 3})
    follower = Follower()
    stream = with_previews(follower.follow, hub, CID, since=10, caught_up=10)
    [batch] = await take(stream, 1)
    assert batch == [("10.000001", "generation_progress", {"generation_id": "g", "step": 3})]
    await stream.aclose()


async def test_a_replaying_client_gets_the_frame_after_the_replay_and_live_frames_wake_it():
    hub = PreviewHub()
    hub.publish(CID, {"step": 1})
    follower = Follower(replay=[Event(5, "phase", {}), Event(7, "status", {})])
    stream = with_previews(follower.follow, hub, CID, since=0, caught_up=7)
    [first] = await take(stream, 1)
    assert [line[0] for line in first] == ["5", "7", "7.000001"]  # frame after the replay
    hub.publish(CID, {"step": 2})  # live: wakes the follower with nothing stored
    [second] = await take(stream, 1)
    assert second == [("7.000002", "generation_progress", {"step": 2})]
    follower.put(Event(8, "token", {"text": "hi"}))
    hub.publish(CID, {"step": 3})
    batches = await take(stream, 1)
    assert batches[0][0] == ("8", "token", {"text": "hi"})
    await stream.aclose()


async def test_an_idle_stream_pings_and_a_closed_one_lets_go_of_the_hub():
    hub = PreviewHub()
    follower = Follower()
    stream = with_previews(follower.follow, hub, CID, since=0, caught_up=0, ping=0.05)
    assert await take(stream, 2) == [[], []]  # keep-alives
    await stream.aclose()
    hub.publish(CID, {"step": 1})  # nobody watches any more: nothing to wake
    assert CID not in hub._watchers

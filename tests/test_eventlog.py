"""The event log's token path: tokens are coalesced into frames while a write is in flight,
and a client that reconnects reads exactly the frames it missed (real Postgres)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from creative_studio.core.events import StudioEvent
from creative_studio.store.database import Database
from creative_studio.store.event_frames import coalesce
from creative_studio.store.event_notices import read_notice
from creative_studio.store.eventlog import CHANNEL, EventLog, LoggedEvent
from creative_studio.store.notify import Notifier
from creative_studio.store.repository import StudioRepository


def token(cid: str, text: str, message_id: str = "m1") -> StudioEvent:
    data = {"message_id": message_id, "role": "style", "speaker": "Luna", "text": text}
    return StudioEvent(kind="token", conversation_id=cid, data=data)


def test_only_consecutive_tokens_of_one_message_are_joined() -> None:
    a, b = "a", "b"
    events = [
        token(a, "one "),
        token(b, "x"),  # another conversation in between does not split a's run
        token(a, "two "),
        token(a, "other", message_id="m2"),  # another message: a new frame
        StudioEvent(kind="typing", conversation_id=a, data={"role": "style", "active": False}),
        token(a, "three"),  # after a non-token event of a: a new frame
    ]
    frames, carriers = coalesce(events)
    assert [(f.conversation_id, f.data.get("text")) for f in frames] == [
        (a, "one two "),
        (b, "x"),
        (a, "other"),
        (a, None),
        (a, "three"),
    ]
    assert carriers == [0, 1, 0, 2, 3, 4]


async def _conversation(database: Database) -> str:
    repository = StudioRepository(database.pool)
    session = await repository.create_session("eventlog")
    return str((await repository.create_conversation(session.id)).id)


async def _take(
    stream: AsyncIterator[LoggedEvent], count: int | None = None, until: str = ""
) -> list[LoggedEvent]:
    taken: list[LoggedEvent] = []
    async for event in stream:
        taken.append(event)
        if len(taken) == count or event.kind == until:
            break
    return taken


async def test_tokens_become_frames_and_a_reconnect_gets_exactly_the_rest(
    database: Database,
) -> None:
    log = EventLog(database.pool)
    await log.start()
    try:
        cid = await _conversation(database)
        texts = [f"t{i} " for i in range(400)]
        for i, text in enumerate(texts):  # as a run does: tokens do not wait for their commit
            assert await log.publish(token(cid, text)) == 0
            if i % 40 == 39:
                await asyncio.sleep(0.05)  # the model pauses: what waited is written meanwhile
        done = StudioEvent(kind="message", conversation_id=cid, data={"message_id": "m1"})
        last = await log.publish(done)  # stored after every token before it
        stored = await log.read(cid)
        assert stored[-1].id == last and stored[-1].kind == "message"
        frames = stored[:-1]
        assert "".join(str(f.data["text"]) for f in frames) == "".join(texts)
        assert 1 < len(frames) < len(texts), "tokens waiting together were not coalesced"
        assert all(set(f.data) == {"message_id", "role", "speaker", "text"} for f in frames)

        # A client that saw the first frames reconnects: it gets exactly the others.
        seen = await _take(log.follow(cid), 1)
        rest = await _take(log.follow(cid, seen[-1].id), len(stored) - 1)
        assert [e.id for e in seen + rest] == [e.id for e in stored]

        # Live: a subscriber gets each frame once, in order, as it is stored.
        follower = asyncio.create_task(_take(log.follow(cid, last), until="status"))
        await asyncio.sleep(0.2)
        for i in range(50):
            await log.publish(token(cid, f"live{i} ", message_id="m3"))
            await asyncio.sleep(0.002)
        end = await log.publish(StudioEvent(kind="status", conversation_id=cid, data={}))
        live = await asyncio.wait_for(follower, 30)
        assert live[-1].id == end
        assert "".join(str(e.data["text"]) for e in live[:-1]) == "".join(
            f"live{i} " for i in range(50)
        )
        assert [e.id for e in live] == [e.id for e in await log.read(cid, last)]
    finally:
        await log.stop()


@dataclass
class TwoWorkers:
    """Two event logs with their own listeners on one database, as two workers; B's table
    reads (``reads``: their ``after``) and the payloads B's listener heard are counted."""

    a: EventLog
    b: EventLog
    reads: list[int] = field(default_factory=list)
    payloads: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def two_workers(database: Database) -> AsyncIterator[TwoWorkers]:
    notifiers = [Notifier(lambda: database.monitor.url) for _ in range(2)]
    logs = TwoWorkers(
        EventLog(database.pool, notifier=notifiers[0]),
        EventLog(database.pool, notifier=notifiers[1]),
    )
    notifiers[1].listen(CHANNEL, logs.payloads.append)
    for notifier in notifiers:  # after the logs registered their channel
        await notifier.start()
    read = logs.b.read

    async def counted(conversation_id: str, after: int = 0, limit: int = 1000) -> list[LoggedEvent]:
        logs.reads.append(after)
        return await read(conversation_id, after, limit)

    logs.b.read = counted  # type: ignore[method-assign]
    try:
        yield logs
    finally:
        await logs.a.stop()
        await logs.b.stop()
        for notifier in notifiers:
            await notifier.stop()


async def test_another_workers_events_arrive_in_order_once_small_ones_without_a_read(
    database: Database,
) -> None:
    """Two event logs with their own listeners on one database, as two workers: what A
    stores reaches B's follower in order, exactly once; small events come in the
    notification itself (B reads nothing back), a large one makes B read the table."""
    async with two_workers(database) as logs:
        a, b, reads = logs.a, logs.b, logs.reads
        cid = await _conversation(database)
        follower = asyncio.create_task(_take(b.follow(cid), until="status"))
        for _ in range(100):
            if b.listeners(cid):
                break
            await asyncio.sleep(0.01)
        reads.clear()  # the catch-up read is done
        for text in ("one ", "two "):
            await a.publish(token(cid, text))
            await asyncio.sleep(0.05)
        assert reads == [], "small events were read back from the table"
        long = "x" * 9000  # over a notification's 8,000 bytes
        await a.publish(StudioEvent(kind="message", conversation_id=cid, data={"content": long}))
        await a.publish_status(cid, "idle")
        seen = await asyncio.wait_for(follower, 10)
        assert reads, "a large event is read from the table"
        stored = await a.read(cid)
        assert [(e.id, e.kind, e.data) for e in seen] == [(e.id, e.kind, e.data) for e in stored]


async def test_a_burst_reaches_another_worker_in_grouped_notifications_without_a_read(
    database: Database,
) -> None:
    """A burst of events of three conversations, written in a few large batches, reaches
    B in payloads that each carry many events (store/event_sql.py): every follower gets
    its conversation's events in order, exactly once, from the notifications alone."""
    async with two_workers(database) as logs:
        a, b, reads, payloads = logs.a, logs.b, logs.reads, logs.payloads
        cids = [await _conversation(database) for _ in range(3)]
        followers = [asyncio.create_task(_take(b.follow(cid), until="status")) for cid in cids]
        for _ in range(100):
            if all(b.listeners(cid) for cid in cids):
                break
            await asyncio.sleep(0.01)
        reads.clear()
        for i in range(240):  # a new message id each time: nothing is coalesced
            cid = cids[i % 3]
            await a.publish(token(cid, f"word {i} " + "·" * 60, message_id=f"m{i}"))
        for cid in cids:
            await a.publish_status(cid, "idle")
        seen = await asyncio.wait_for(asyncio.gather(*followers), 20)
        assert reads == [], "events of a burst were read back from the table"
        assert all(len(p.encode()) < 8000 for p in payloads)
        assert len(payloads) < 243 / 4, f"{len(payloads)} notifications for 243 events"
        for cid, events in zip(cids, seen, strict=True):
            stored = await a.read(cid)
            assert len(stored) == 81
            assert [(e.id, e.kind, e.data) for e in events] == [
                (e.id, e.kind, e.data) for e in stored
            ]


def test_notices_of_older_workers_and_garbage_are_read_without_harm() -> None:
    """store/event_notices.py: grouped payloads, the one-event payloads of workers from
    before them, our own payloads (skipped) and garbage (nothing, or a hint to read)."""
    cid, other = "c1", "c2"
    at = '"2026-12-01T12:00:00+00:00"'
    grouped = f'w2|[["{cid}", 5, 4, "token", {at}, {{"text": "a"}}], ["{other}", 6, 0, "token", {at}, null], ["{cid}", 7, 5, "message", {at}, null]]'
    notices = read_notice(grouped, "w1", {cid})
    assert [(n.conversation_id, n.id, n.previous, n.event is not None) for n in notices] == [
        (cid, 5, 4, True),
        (cid, 7, 0, False),
    ]
    assert notices[0].event is not None and notices[0].event.data == {"text": "a"}
    assert read_notice(grouped, "w2", {cid}) == []  # our own
    single = read_notice(f'w2|{cid}|9|8|token|{at}|{{"text": "b"}}', "w1", {cid})
    assert [(n.id, n.previous, n.event and n.event.data) for n in single] == [(9, 8, {"text": "b"})]
    assert [(n.id, n.event) for n in read_notice(f"w2|{cid}|10", "w1", {cid})] == [(10, None)]
    for garbage in (
        "",
        "w2",
        "w2|[not json",
        "w2|[[1, 2]]",
        f'w2|[["{cid}", "x", 1, "k", "t", {{}}]]',
    ):
        assert all(n.event is None for n in read_notice(garbage, "w1", {cid}))

"""The conversation event log: durable, ordered, and fanned out to live clients.

Every studio event (token, message, phase, typing, interrupt, generation_progress,
generation_done, error, status) is stored in ``conversation_events`` before any client
sees it, and gets the row's id, which only grows. A client that reconnects with
Last-Event-ID receives exactly the events after that id, from the table, then the live
ones - nothing lost, nothing twice - also after a restart; an id that does not belong to
the conversation is an error, not a silent full replay.

Writes are group-committed: one writer task takes whatever events are waiting (from all
conversations) and stores them in one statement (store/event_sql.py), then
hands them to the subscribers. Tokens, the bulk of the traffic, are cheaper: their
``publish`` does not wait for the commit (a later event of the conversation is stored
after them), consecutive tokens of one message waiting together become one frame
(store/event_frames.py; nothing is delayed to coalesce), and a backlog of more than
``TOKEN_BACKLOG`` events makes token publishers wait, so a slow database slows the
producers instead of filling memory.

Several workers on one database (store/notify.py): writers of a conversation are
serialised by a transaction-level advisory lock taken before the ids are drawn, so within
a conversation ids follow commit order. Every stored event carries the id of the
conversation's previous event, and is NOTIFYed on ``studio_events`` when committed, a
few notifications per batch, with its content when it fits (store/event_notices.py reads
them). A subscriber sends an event - its own worker's or one that came
in a notification - straight from memory only when it follows the last one it sent;
otherwise, and for a notification without content, it reads the table (the log stays the
truth). So order and exactly-once hold with any number of writers, and Last-Event-ID
resumes on any worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from creative_studio.core.errors import InvalidInputError
from creative_studio.core.events import StudioEvent
from creative_studio.store.availability import is_connection_error
from creative_studio.store.event_frames import coalesce
from creative_studio.store.event_notices import LoggedEvent, read_notice
from creative_studio.store.event_sql import INSERT_BATCH, rows_document
from creative_studio.store.notify import Notifier

log = logging.getLogger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]
MAX_BATCH = 500
TOKEN_BACKLOG = 5_000  # events waiting to be stored before token publishers wait too
SUBSCRIBER_BACKLOG = 10_000  # a client that falls this far behind is dropped; it reconnects
CHANNEL = "studio_events"
_LOCK_CLASS = 0x5E7E  # advisory lock space of the event log (two-key form: its own space)


class _Stored:
    """An event this process stored, with the id of its conversation's previous event."""

    __slots__ = ("event", "previous")

    def __init__(self, event: LoggedEvent, previous: int) -> None:
        self.event = event
        self.previous = previous


# What a subscriber's queue holds: an event stored here, a hint that the table has rows up
# to that id (another worker's, 0: look anyway), _WAKE (nothing stored: a wake-up from
# outside), or None: the stream ends.
_Item = _Stored | int | None
_WAKE = -1


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self.dropped = False

    def wake(self) -> None:
        """Wake the follower with nothing stored (see ``follow_batches``' ``waker``)."""
        with contextlib.suppress(asyncio.QueueFull):  # a full queue wakes it anyway
            self.queue.put_nowait(_WAKE)


@functools.lru_cache(maxsize=4096)
def _canonical(conversation_id: str) -> tuple[str, int]:
    """The conversation id as the table spells it, and its 31-bit lock key (a collision
    only serialises two conversations). Cached: every event of a batch asks."""
    value = UUID(conversation_id)
    return str(value), value.int & 0x7FFFFFFF


class EventLog:
    """Store-then-deliver event log with live subscriptions per conversation.

    With a ``notifier`` (several workers on one database) it announces what it stored and
    hears what the others stored; without one it serves the subscribers of this process.
    """

    def __init__(self, pool: Pool, *, notifier: Notifier | None = None) -> None:
        self.pool = pool
        self.notifier = notifier
        # (event, future): the future is None for a token nobody waits for.
        self._pending: asyncio.Queue[tuple[StudioEvent, asyncio.Future[int] | None]] = (
            asyncio.Queue()
        )
        self._subscribers: dict[str, set[_Subscriber]] = {}
        self._writer: asyncio.Task[None] | None = None
        self._closing = False  # end_streams was called: no new follower is served
        if notifier is not None:
            notifier.listen(CHANNEL, self._on_notify)
            notifier.on_reconnect(self._wake_all)

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="event-log-writer")

    async def stop(self) -> None:
        """Write what is waiting, then stop; subscribers are told the stream ended."""
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pending.join(), 10)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        self.end_streams()

    def end_streams(self) -> None:
        """Every live follower ends, and any that starts from now on ends at once (the
        server stops; a client resumes with Last-Event-ID on the next one)."""
        self._closing = True
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                with contextlib.suppress(asyncio.QueueFull):
                    subscriber.queue.put_nowait(None)

    async def publish(self, event: StudioEvent) -> int:
        """Store the event; returns its id once it is durable and on its way to clients."""
        if self._writer is None:
            await self.start()
        if event.kind == "token" and self._pending.qsize() < TOKEN_BACKLOG:
            self._pending.put_nowait((event, None))  # stored in order; nobody waits for it
            return 0
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._pending.put((event, done))
        return await done

    async def publish_status(self, conversation_id: str, state: str) -> int:
        return await self.publish(
            StudioEvent(kind="status", conversation_id=conversation_id, data={"state": state})
        )

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty() and len(batch) < MAX_BATCH:
                batch.append(self._pending.get_nowait())
            frames, carriers = coalesce([event for event, _ in batch])
            try:
                stored = await self._insert(frames)
            except Exception as error:
                if is_connection_error(error):  # the publisher hears of it; no traceback
                    log.debug("could not store %d events: %s", len(batch), error)
                else:
                    log.exception("could not store %d events", len(batch))
                for _, done in batch:
                    if done is not None and not done.done():
                        done.set_exception(error)
                    self._pending.task_done()  # else stop() waits its 10 s for them
                continue
            delivered = -1
            for (_, done), index in zip(batch, carriers, strict=True):
                item = stored[index]
                if index > delivered:  # each frame once, in order
                    delivered = index
                    self._deliver(item.event.conversation_id, item)
                if done is not None and not done.done():
                    done.set_result(item.event.id)
                self._pending.task_done()

    async def _insert(self, events: list[StudioEvent]) -> list[_Stored]:
        """One statement (store/event_sql.py): lock the conversations, insert the batch, read
        each event's previous id and NOTIFY the other workers - one round trip, in the
        statement's own transaction (the pool's connections are autocommit)."""
        keys = sorted({_canonical(e.conversation_id)[1] for e in events})
        notifier = self.notifier
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                INSERT_BATCH,
                {
                    "lock_class": _LOCK_CLASS,
                    "keys": keys,
                    "rows": rows_document(events),
                    "channel": CHANNEL if notifier is not None else None,
                    "instance": notifier.instance if notifier is not None else "",
                },
            )
            rows = await cur.fetchall()
        stored = []
        for event, row in zip(events, rows, strict=True):  # rows in id order: events' order
            logged = LoggedEvent(
                id=int(row["id"]),
                conversation_id=_canonical(event.conversation_id)[0],
                kind=event.kind,
                data=event.data,
                created_at=event.at,
            )
            stored.append(_Stored(logged, int(row["previous"])))
        return stored

    def _deliver(self, conversation_id: str, item: _Stored | int) -> None:
        for subscriber in list(self._subscribers.get(conversation_id, ())):
            try:
                subscriber.queue.put_nowait(item)
            except asyncio.QueueFull:
                subscriber.dropped = True
                self._subscribers[conversation_id].discard(subscriber)

    def _on_notify(self, payload: str) -> None:
        """Another worker stored events: hand them to their conversations' subscribers here
        (store/event_notices.py); one that came without its data only wakes them."""
        if self.notifier is None:
            return
        for notice in read_notice(payload, self.notifier.instance, self._subscribers):
            if notice.event is None:
                self._deliver(notice.conversation_id, notice.id)
            else:
                self._deliver(notice.conversation_id, _Stored(notice.event, notice.previous))

    def _wake_all(self) -> None:
        """The listener reconnected: notifications may be lost, every subscriber looks."""
        for cid in list(self._subscribers):
            self._deliver(cid, 0)

    async def check_last_id(self, conversation_id: str, last_id: int) -> None:
        """An id the client claims to have seen must be one of this conversation's events."""
        if last_id == 0:
            return
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select 1 from conversation_events where conversation_id = %s and id = %s",
                (conversation_id, last_id),
            )
            if await cur.fetchone() is None:
                raise InvalidInputError(
                    f"Last-Event-ID {last_id} is not an event of conversation {conversation_id}; "
                    "reconnect without it (or with 0) to receive the whole stream."
                )

    async def read(
        self, conversation_id: str, after: int = 0, limit: int = 1000
    ) -> list[LoggedEvent]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select id, conversation_id, kind, data, created_at from conversation_events"
                " where conversation_id = %s and id > %s order by id limit %s",
                (conversation_id, after, limit),
            )
            rows = await cur.fetchall()
        return [
            LoggedEvent(
                id=row["id"],
                conversation_id=str(row["conversation_id"]),
                kind=row["kind"],
                data=row["data"],
                created_at=row["created_at"],
            )
            for row in rows
        ]

    async def read_last_run(self, conversation_id: str) -> list[LoggedEvent]:
        """The events since the conversation's last "running" status (a run's events)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select coalesce(max(id), 0) as start from conversation_events"
                " where conversation_id = %s and kind = 'status' and data->>'state' = 'running'",
                (conversation_id,),
            )
            row = await cur.fetchone()
        after = int(row["start"]) if row else 0
        events: list[LoggedEvent] = []
        while True:
            page = await self.read(conversation_id, after, limit=1000)
            events.extend(page)
            if len(page) < 1000:
                return events
            after = page[-1].id

    async def last_id(self, conversation_id: str) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select coalesce(max(id), 0) as last from conversation_events"
                " where conversation_id = %s",
                (conversation_id,),
            )
            row = await cur.fetchone()
        return int(row["last"]) if row else 0

    async def follow(self, conversation_id: str, after: int = 0) -> AsyncIterator[LoggedEvent]:
        """Stored events after ``after``, then live ones, each exactly once, in id order."""
        async with contextlib.aclosing(self.follow_batches(conversation_id, after)) as batches:
            async for batch in batches:
                for event in batch:
                    yield event

    async def follow_batches(
        self,
        conversation_id: str,
        after: int = 0,
        *,
        waker: Callable[[Callable[[], None]], None] | None = None,
    ) -> AsyncGenerator[list[LoggedEvent], None]:
        """``follow`` in batches: whatever is ready at once comes as one list.

        A client that fell behind by several frames gets them in one write; when it keeps
        up, a batch is one frame. The SSE route writes a batch as one chunk. ``waker`` is
        handed a function that wakes this follower from outside (a preview frame, a
        keep-alive ping): it then yields an empty batch if nothing was stored meanwhile, so
        the caller waits on one queue for everything.
        """
        if self._closing:
            return  # the server is stopping: reconnect to the next one
        conversation_id = _canonical(conversation_id)[0]
        subscriber = _Subscriber()
        self._subscribers.setdefault(conversation_id, set()).add(subscriber)
        if waker is not None:
            waker(subscriber.wake)
        last = after

        async def from_table() -> AsyncIterator[list[LoggedEvent]]:
            nonlocal last
            while True:  # in pages
                page = await self.read(conversation_id, last, limit=1000)
                if page:
                    last = page[-1].id
                    yield page
                if len(page) < 1000:
                    return

        try:
            async for page in from_table():  # catch up, then switch to live
                yield page
            queue = subscriber.queue
            while True:
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                batch: list[LoggedEvent] = []
                woken = False
                for item in items:
                    if item is None:
                        if batch:
                            yield batch
                        return
                    if item == _WAKE:
                        woken = True
                        continue
                    if isinstance(item, _Stored):
                        if item.event.id <= last:
                            continue  # already sent from the table
                        if item.previous == last:  # the next one: no need to read it back
                            last = item.event.id
                            batch.append(item.event)
                            continue
                        # else another worker wrote in between: the table has it all, in order
                    elif item != 0 and item <= last:
                        continue  # a hint about rows already sent
                    if batch:
                        yield batch
                        batch = []
                    async for page in from_table():
                        yield page
                if batch or woken:
                    yield batch
                if subscriber.dropped and queue.empty():
                    return  # too slow: the client reconnects with Last-Event-ID
        finally:
            subscribers = self._subscribers.get(conversation_id)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._subscribers[conversation_id]

    def watched(self) -> list[str]:
        """Conversations that have a live subscriber in this process."""
        return [cid for cid, subscribers in self._subscribers.items() if subscribers]

    def listeners(self, conversation_id: str) -> int:
        return len(self._subscribers.get(conversation_id, ()))

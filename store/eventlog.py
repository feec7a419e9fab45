"""The conversation event log: durable, ordered, and fanned out to live clients.

Every studio event (token, message, phase, typing, interrupt, generation_progress,
generation_done, error, status) is stored in ``conversation_events`` before any client
sees it, and gets the row's id, which only grows. So:

* a client that reconnects with Last-Event-ID receives exactly the events after that id,
  from the table, then the live ones - nothing lost, nothing twice - also after the
  server restarted;
* an id that does not belong to the conversation is an error, not a silent full replay.

Writes are group-committed: one writer task takes whatever events are waiting (from all
conversations), inserts them in one pipelined batch and only then hands them to the
subscribers. Under load the batch grows; when idle an event costs one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from creative_studio.core.errors import InvalidInputError
from creative_studio.core.events import StudioEvent
from creative_studio.store.availability import is_connection_error

log = logging.getLogger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]
MAX_BATCH = 500
SUBSCRIBER_BACKLOG = 10_000  # a client that falls this far behind is dropped; it reconnects


class LoggedEvent(BaseModel):
    id: int
    conversation_id: str
    kind: str
    data: dict[str, Any]
    created_at: datetime | None = None


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[LoggedEvent | None] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self.dropped = False


class EventLog:
    """Store-then-deliver event log with live subscriptions per conversation."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._pending: asyncio.Queue[tuple[StudioEvent, asyncio.Future[int]]] = asyncio.Queue()
        self._subscribers: dict[str, set[_Subscriber]] = {}
        self._writer: asyncio.Task[None] | None = None

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
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                with contextlib.suppress(asyncio.QueueFull):
                    subscriber.queue.put_nowait(None)

    async def publish(self, event: StudioEvent) -> int:
        """Store the event; returns its id once it is durable and on its way to clients."""
        if self._writer is None:
            await self.start()
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
            try:
                ids = await self._insert([event for event, _ in batch])
            except Exception as error:
                if is_connection_error(error):  # the publisher hears of it; no traceback
                    log.debug("could not store %d events: %s", len(batch), error)
                else:
                    log.exception("could not store %d events", len(batch))
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                    self._pending.task_done()  # else stop() waits its 10 s for them
                continue
            for (event, done), event_id in zip(batch, ids, strict=True):
                logged = LoggedEvent(
                    id=event_id,
                    conversation_id=event.conversation_id,
                    kind=event.kind,
                    data=event.data,
                    created_at=event.at,
                )
                self._deliver(logged)
                if not done.done():
                    done.set_result(event_id)
                self._pending.task_done()

    async def _insert(self, events: list[StudioEvent]) -> list[int]:
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                "insert into conversation_events (conversation_id, kind, data, created_at)"
                " values (%s, %s, %s, %s) returning id",
                [(e.conversation_id, e.kind, Jsonb(e.data), e.at) for e in events],
                returning=True,
            )
            ids: list[int] = []
            while True:
                row = await cur.fetchone()
                if row is not None:
                    ids.append(int(row["id"]))
                if not cur.nextset():
                    break
            return ids

    def _deliver(self, event: LoggedEvent) -> None:
        for subscriber in list(self._subscribers.get(event.conversation_id, ())):
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                subscriber.dropped = True
                self._subscribers[event.conversation_id].discard(subscriber)

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
        conversation_id = str(UUID(conversation_id))
        subscriber = _Subscriber()
        self._subscribers.setdefault(conversation_id, set()).add(subscriber)
        try:
            last = after
            while True:  # catch up from the table (in pages), then switch to live
                page = await self.read(conversation_id, last, limit=1000)
                for event in page:
                    last = event.id
                    yield event
                if len(page) < 1000:
                    break
            while True:
                live = await subscriber.queue.get()
                if live is None:
                    return
                if live.id <= last:
                    continue  # already sent from the table
                last = live.id
                yield live
                if subscriber.dropped and subscriber.queue.empty():
                    return  # too slow: the client reconnects with Last-Event-ID
        finally:
            subscribers = self._subscribers.get(conversation_id)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._subscribers[conversation_id]

    def listeners(self, conversation_id: str) -> int:
        return len(self._subscribers.get(conversation_id, ()))

"""Handing a person's message to the worker that runs the conversation.

A message can arrive at any worker, but only the lease holder (store/leases.py) runs the
conversation. The worker that received it stores it (the messages table is the truth), then
NOTIFYs ``studio_inbox`` with ``holder|conversation|message id``; the holder reads the
stored message - its text and its metadata (the images it carries, ...) - and queues it
into its running turn as an interjection, as the same message the receiving worker would
have queued. Hand-offs from one worker arrive in the order they were sent, and the holder
takes them one at a time, so they reach the turn in arrival order.

A cancel pressed on a worker that does not run the conversation travels the same way, as
``holder|conversation|!cancel`` (message ids are uuids, so the marker cannot collide), and
the holder stops the run and its generation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from creative_studio.core.tasks import cancel_task
from creative_studio.store.notify import Notifier, notify

log = logging.getLogger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]
CHANNEL = "studio_inbox"
CANCEL = "!cancel"


@dataclass(frozen=True)
class HandedMessage:
    """A person's message another worker stored for this worker's run: its messages row."""

    conversation_id: str
    message_id: str
    content: str
    phase: str | None = None
    kind: str | None = None
    interrupted: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


Receiver = Callable[[HandedMessage], Awaitable[None]]
Canceller = Callable[[str], Awaitable[None]]


class Inbox:
    """Sends hand-offs to other lease holders and receives the ones meant for ``owner``."""

    def __init__(
        self,
        notifier: Notifier,
        pool: Pool,
        owner: str,
        receive: Receiver,
        *,
        cancel: Canceller | None = None,
    ) -> None:
        self.pool = pool
        self.owner = owner
        self._receive = receive
        self._cancel = cancel
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        notifier.listen(CHANNEL, self._on_notify)

    async def hand_off(self, holder: str, conversation_id: str, message_ids: list[str]) -> None:
        """Tell ``holder`` that these stored messages are for its run, in this order."""
        payloads = [f"{holder}|{conversation_id}|{message_id}" for message_id in message_ids]
        async with self.pool.connection() as conn:
            await notify(conn, CHANNEL, payloads)

    async def send_cancel(self, holder: str, conversation_id: str) -> None:
        """Ask ``holder`` to stop the conversation's run (and its generation)."""
        async with self.pool.connection() as conn:
            await notify(conn, CHANNEL, [f"{holder}|{conversation_id}|{CANCEL}"])

    def _on_notify(self, payload: str) -> None:
        holder, _, rest = payload.partition("|")
        cid, _, message_id = rest.partition("|")
        if holder != self.owner or not message_id:
            return  # for another worker
        self._queue.put_nowait((cid, message_id))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="inbox")

    async def _drain(self) -> None:
        while not self._queue.empty():
            cid, message_id = self._queue.get_nowait()
            try:
                if message_id == CANCEL:
                    if self._cancel is not None:
                        await self._cancel(cid)
                    continue
                message = await self._load(cid, message_id)
                if message is not None:
                    await self._receive(message)
            except Exception:
                log.exception("could not take over message %s of %s", message_id, cid)

    async def _load(self, cid: str, message_id: str) -> HandedMessage | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select content, phase, kind, interrupted, metadata from messages"
                " where conversation_id = %s and message_id = %s and role = 'user'",
                (cid, message_id),
            )
            row = await cur.fetchone()
        if row is None:
            log.warning("handed message %s of %s is not stored", message_id, cid)
            return None
        return HandedMessage(
            cid,
            message_id,
            str(row["content"]),
            phase=row["phase"],
            kind=row["kind"],
            interrupted=bool(row["interrupted"]),
            metadata=dict(row["metadata"] or {}),
        )

    async def close(self) -> None:
        await cancel_task(self._task)
        self._task = None


__all__ = ["CANCEL", "CHANNEL", "HandedMessage", "Inbox"]

"""Conversations a database outage cut short: which ones, and when to go on with them.

The conversation runner hands a conversation over when its run failed because the database
could not be reached (store/availability.py tells). It is continued, from its last
checkpoint, as soon as the database is back - announced by the database's monitor, or, when
the monitor never saw an outage (only the run's connection died), after one probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from creative_studio.store.database import Database

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1.0  # a run cut by a dead connection while the database looks up


class OutageWaiter:
    def __init__(self, database: Database, go_on: Callable[[str], None]) -> None:
        self.database = database
        self._go_on = go_on
        self._waiting: set[str] = set()
        self._back = asyncio.Event()
        self._retry: asyncio.Task[None] | None = None
        self._closed = False
        database.on_recovered(self.database_back)

    def __contains__(self, conversation_id: str) -> bool:
        return conversation_id in self._waiting

    def add(self, conversation_id: str) -> None:
        self._waiting.add(conversation_id)
        if self.database.available and (self._retry is None or self._retry.done()):
            # The database looks up (it came back before this run touched it, or only its
            # connection died): no recovery will be announced, so look once more ourselves.
            self._retry = asyncio.create_task(self._retry_if_available(), name="database-retry")

    async def wait(self) -> None:
        """Until the next time waiting conversations are continued."""
        await self._back.wait()

    async def database_back(self) -> None:
        waiting, self._waiting = self._waiting, set()
        back, self._back = self._back, asyncio.Event()
        back.set()
        if self._closed:
            return
        for conversation_id in sorted(waiting):
            log.info("the database is back: continuing conversation %s", conversation_id)
            self._go_on(conversation_id)

    async def _retry_if_available(self) -> None:
        await asyncio.sleep(RETRY_AFTER_S)
        if self.database.available and await self.database.monitor.verify():
            await self.database_back()
        # else the monitor saw the outage too, and announces the recovery when it comes

    async def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry


__all__ = ["RETRY_AFTER_S", "OutageWaiter"]

"""Postgres LISTEN/NOTIFY for a studio process: one dedicated connection, any number of
channels, reconnected when the database comes back.

Several API workers share one database; what one of them writes (an event of a conversation
it runs, a person's message for a conversation another one runs) must wake the others. A
NOTIFY carries only *which* rows are new; the rows themselves stay the truth and are read
from their tables, so a notification that is lost (a connection that broke) costs a read,
never an event: after every reconnection the ``on_reconnect`` handlers run, and they read
what they may have missed.

LISTEN needs a session: against Supabase use the direct or session connection (port 5432),
not the transaction pooler (6543), which cannot deliver notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any
from uuid import uuid4

import psycopg
from psycopg import AsyncConnection, sql

from creative_studio.core.tasks import cancel_task

log = logging.getLogger(__name__)

Handler = Callable[[str], None]
_KEEPALIVE_S = 15.0  # a silent connection is checked this often (a half-open socket)
_RETRY_S = (0.2, 0.5, 1.0, 2.0)  # waits between reconnection attempts, then every 2 s
_CONNECT_TIMEOUT_S = 5


async def notify(conn: AsyncConnection[Any], channel: str, payloads: Sequence[str]) -> None:
    """Send ``payloads`` on ``channel`` through ``conn`` (inside its transaction, if any:
    Postgres delivers them when that transaction commits, after the rows they announce)."""
    if payloads:
        await conn.execute("select pg_notify(%s, p) from unnest(%s::text[]) p", (channel, payloads))


class Notifier:
    """The process's listening connection; handlers are called in the order NOTIFYs arrive.

    Handlers run on the listener's task and must not block: they queue work or wake tasks.
    ``instance`` names this process in payloads, so it can ignore what it sent itself.
    """

    def __init__(self, conninfo: Callable[[], str]) -> None:
        self.conninfo = conninfo  # read at each connection: an embedded restart may move it
        self.instance = uuid4().hex[:12]
        self._handlers: dict[str, list[Handler]] = {}
        self._reconnect_handlers: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.connections = 0  # how often it connected (1 + reconnections)

    def listen(self, channel: str, handler: Handler) -> None:
        """Call ``handler(payload)`` for every NOTIFY on ``channel`` (register before start)."""
        if not channel.isidentifier():
            raise ValueError(f"not a channel name: {channel!r}")
        self._handlers.setdefault(channel, []).append(handler)

    def on_reconnect(self, handler: Callable[[], None]) -> None:
        """Call ``handler()`` after each reconnection (notifications may have been missed)."""
        self._reconnect_handlers.append(handler)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def start(self, wait_s: float = 10.0) -> None:
        """Connect and LISTEN; returns once listening (or after ``wait_s``, still trying)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notify-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), wait_s)
        if not self.listening:
            log.warning("not listening for other workers' notifications yet; still trying")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        self._listening.clear()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                conn = await AsyncConnection.connect(
                    self.conninfo(), autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
                )
            except (psycopg.Error, OSError) as error:
                await self._pause(failures, error)
                failures += 1
                continue
            try:
                for channel in self._handlers:
                    await conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
                self.connections += 1
                self._listening.set()
                if self.connections > 1:
                    log.info("listening again for notifications (connection %d)", self.connections)
                    self._call_reconnect_handlers()
                failures = 0
                await self._receive(conn)
            except (psycopg.Error, OSError) as error:
                self._listening.clear()
                await self._pause(failures, error)
                failures += 1
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _receive(self, conn: AsyncConnection[Any]) -> None:
        while True:
            async for note in conn.notifies(timeout=_KEEPALIVE_S):
                for handler in self._handlers.get(note.channel, ()):
                    try:
                        handler(note.payload)
                    except Exception:
                        log.exception("a %s notification handler failed", note.channel)
            await conn.execute("select 1")  # quiet for a while: is the server still there?

    def _call_reconnect_handlers(self) -> None:
        for handler in self._reconnect_handlers:
            try:
                handler()
            except Exception:
                log.exception("a reconnection handler failed")

    @staticmethod
    async def _pause(failures: int, error: BaseException) -> None:
        log.log(
            logging.WARNING if failures == 0 else logging.DEBUG,
            "the notification listener lost the database: %s",
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
        )
        await asyncio.sleep(_RETRY_S[min(failures, len(_RETRY_S) - 1)])


__all__ = ["Notifier", "notify"]

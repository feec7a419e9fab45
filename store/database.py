"""The studio's PostgreSQL: embedded or external, migrated, with the LangGraph checkpointer.

There is exactly one code path for persistence (DESIGN §5): psycopg 3 against a Postgres
server, whether that server is Supabase's (``DATABASE_URL`` set) or one the studio starts
itself from its data directory (store/embedded_postgres.py). Keeping SQLite or an
in-memory saver out of the picture means what a developer runs locally is what runs in
production, including the lease rows that keep one writer per conversation.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Coroutine, Generator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from creative_studio.store.availability import DatabaseMonitor, Listener, SupervisedPool
from creative_studio.store.checkpointer import PooledPostgresSaver
from creative_studio.store.embedded_postgres import start_embedded_postgres
from creative_studio.store.leases import Leases, WriterLock
from creative_studio.store.migrations import (
    _MIGRATION_LOCK_KEY,
    _apply_locked,
    _protect_unmigrated_tables,
    _session_advisory_lock,
)

__all__ = ["Database"]

logger = logging.getLogger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]

_IDLE_CHECK_AFTER_S = 2.0
# A lost connection is retried with backoff (1, 2, 4 s...) for this long, then its slot is
# given back and the pool grows again on demand with a fresh attempt: after a long outage
# the pool reconnects within seconds of the server's return, not after a minutes-long backoff.
_RECONNECT_TIMEOUT_S = 10.0
_returned_at: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = weakref.WeakKeyDictionary()


def _connection_kwargs() -> dict[str, Any]:
    """Connection settings: what the checkpointer needs, on every server.

    Commits are synchronous, the embedded server's included. ``synchronous_commit=off``
    saved ~0.25 ms per commit here (~1.5 ms per graph step), but a killed *server* then loses
    its last few hundred milliseconds of commits - measured: a message the API had already
    served vanished after a kill -9 of the postmaster, and event ids could be handed out
    again. Now that the studio restarts a killed server and carries on, what it acknowledged
    must survive that.
    """
    return {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


async def _note_return(conn: AsyncConnection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


async def _check_if_idle(conn: AsyncConnection[Any]) -> None:
    returned = _returned_at.get(conn)
    if returned is not None and time.monotonic() - returned < _IDLE_CHECK_AFTER_S:
        if conn.closed or conn.broken:
            raise psycopg.OperationalError("connection closed")
        return
    await AsyncConnectionPool.check_connection(conn)


class Database:
    """The open database of one studio process: pool, checkpointer, writer locks.

    Open it with ``db = await Database.open(url, data_dir)`` or
    ``async with Database.open(url, data_dir) as db:``; close it with :meth:`close`.
    """

    def __init__(
        self,
        *,
        url: str,
        pool: Pool,
        checkpointer: AsyncPostgresSaver,
        embedded: bool,
        data_dir: Path,
        monitor: DatabaseMonitor | None = None,
    ) -> None:
        self.url = url
        self.pool = pool
        self.checkpointer = checkpointer
        self.embedded = embedded
        self.data_dir = data_dir
        self.leases = Leases(pool)
        # Watches the server, restarts the embedded one, and says when it is back.
        self.monitor = monitor or DatabaseMonitor(url)

    @classmethod
    def open(
        cls, database_url: str | None, data_dir: Path, *, max_pool_size: int = 10
    ) -> _OpenDatabase:
        """Connect (starting the embedded server when ``database_url`` is None) and migrate.

        Returns an awaitable that is also an async context manager, so both
        ``await Database.open(...)`` and ``async with Database.open(...) as db`` work.
        """
        return _OpenDatabase(cls._open(database_url, data_dir, max_pool_size=max_pool_size))

    @classmethod
    async def _open(
        cls, database_url: str | None, data_dir: Path, *, max_pool_size: int
    ) -> Database:
        embedded = database_url is None
        if database_url is None:
            url = await start_embedded_postgres(data_dir)
        else:
            url = database_url
            # One direct attempt first: a wrong DATABASE_URL then fails at once with the
            # server's own message, instead of a pool timeout 30 s later.
            probe = await AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
            await probe.close()
        monitor = DatabaseMonitor(url, embedded_data_dir=data_dir if embedded else None)
        pool = SupervisedPool(
            url,
            min_size=min(2, max_pool_size),
            max_size=max_pool_size,
            # The checkpointer's own migrations use CREATE INDEX CONCURRENTLY (needs
            # autocommit) and read rows as dicts; prepare_threshold=0 is what langgraph uses.
            kwargs=_connection_kwargs(),
            connection_class=AsyncConnection[DictRow],
            # Check a connection that sat idle as it leaves the pool: after a server restart
            # (or a killed embedded postmaster) its first query would fail on a dead socket.
            # Connections used a moment ago skip the extra round trip (hot path: every
            # checkpoint write checks one out).
            check=_check_if_idle,
            reset=_note_return,
            reconnect_timeout=_RECONNECT_TIMEOUT_S,
            reconnect_failed=lambda _pool: monitor.suspect(),
            open=False,
            name="creative-studio",
        )
        pool.attach(monitor)
        await pool.open(wait=True, timeout=30)
        try:
            checkpointer = PooledPostgresSaver(pool)
            async with pool.connection() as conn, _session_advisory_lock(conn, _MIGRATION_LOCK_KEY):
                await _apply_locked(conn)
                # setup() is not safe against a concurrent starter (both insert the same
                # checkpoint_migrations row), so it runs under the same lock.
                await checkpointer.setup()
                await _protect_unmigrated_tables(conn)
        except BaseException:
            await pool.close()
            raise
        monitor.start()
        return cls(
            url=url,
            pool=pool,
            checkpointer=checkpointer,
            embedded=embedded,
            data_dir=data_dir,
            monitor=monitor,
        )

    @property
    def available(self) -> bool:
        """False while the database is known to be unreachable (see store/availability.py)."""
        return self.monitor.up

    def on_recovered(self, listener: Listener) -> None:
        """Call ``listener`` whenever the database is back after an outage."""
        self.monitor.on_recovered(listener)

    async def close(self) -> None:
        """Stop watching, close the pool. An embedded server keeps running until exit.

        Other Database objects in this process may share that server, and stopping it takes a
        checkpoint; the atexit hook of embedded-postgres stops it when the studio exits (if
        no other live studio process uses it).
        """
        await self.monitor.stop()
        await self.leases.stop()
        await self.pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def writer_lock(self, conversation_id: str | UUID) -> AbstractAsyncContextManager[WriterLock]:
        """Be the only writer of ``conversation_id`` across all studio processes, or fail fast.

        A lease row (store/leases.py), not a held connection: running conversations cost no
        Postgres connections, and a killed studio's lease is recognised and taken over.
        Raises ConversationBusyError at once (no waiting) when another holder exists.
        """
        return self.leases.hold(conversation_id)


class _OpenDatabase:
    """What :meth:`Database.open` returns: await it, or use it with ``async with``."""

    def __init__(self, opening: Coroutine[Any, Any, Database]) -> None:
        self._opening = opening
        self._db: Database | None = None

    def __await__(self) -> Generator[Any, None, Database]:
        return self._opening.__await__()

    async def __aenter__(self) -> Database:
        self._db = await self._opening
        return self._db

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._db is not None:
            await self._db.close()

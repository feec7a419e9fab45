"""LangGraph's Postgres checkpointer on the studio's pool, without its saver-wide lock.

``AsyncPostgresSaver`` takes one ``asyncio.Lock`` around every read and write it makes -
there for a saver on a single connection, which only one coroutine may use at a time. On a
pool every operation checks out its own connection, so the lock only queued the checkpoint
I/O of every conversation of the process behind one another, their blobs' serialisation in
a thread included: at 100 conversations a step waited for the others' checkpoints before
its own was written, and the studio produced ~2,100 tokens/s of the ~4,700 offered; without
the lock, ~3,100 (bench/api.py, docs/benchmarks.md). On a pool this saver's lock is one
every coroutine holds at once; on a single connection it is LangGraph's. Everything else -
SQL, pipelines, serialisation - is LangGraph's (the package is pinned exactly).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg_pool import AsyncConnectionPool

__all__ = ["PooledPostgresSaver"]


class _SharedLock(asyncio.Lock):
    """A lock every coroutine holds at once: nothing to serialise."""

    async def acquire(self) -> Literal[True]:
        return True

    def release(self) -> None:
        return None


class PooledPostgresSaver(AsyncPostgresSaver):
    """``AsyncPostgresSaver`` whose operations on a pool run side by side."""

    def __init__(self, conn: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(conn, *args, **kwargs)
        if isinstance(conn, AsyncConnectionPool):
            self.lock = _SharedLock()

"""Schema migrations: ``supabase/migrations/*.sql`` applied in order, once, under a lock.

The same SQL runs on Supabase (``supabase db push``) and here; applied versions are
recorded in ``studio_schema_migrations`` so a restart applies nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.resources
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


logger = logging.getLogger(__name__)

MIGRATIONS_TABLE = "studio_schema_migrations"


def _stable_key(text: str) -> int:
    """A signed 64-bit advisory-lock key that is the same in every process and release.

    Python's ``hash()`` is salted per process, and ``hashtext()`` is an undocumented
    Postgres internal; blake2b is neither.
    """
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_MIGRATION_LOCK_KEY = _stable_key("creative-studio:schema-migrations")


def _migrations_dir() -> Traversable:
    return importlib.resources.files("creative_studio") / "supabase" / "migrations"


def migration_files() -> list[tuple[str, str]]:
    """``(version, sql)`` for every migration, in filename order (``0001_...`` first).

    Read through importlib.resources so an installed wheel finds them as package data just
    like an editable checkout does.
    """
    folder = _migrations_dir()
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")) for entry in files]


# Tables created outside supabase/migrations (by us or by AsyncPostgresSaver.setup()).
_UNMIGRATED_TABLES = (
    MIGRATIONS_TABLE,
    "checkpoint_migrations",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
)


async def _protect_unmigrated_tables(conn: AsyncConnection[Any]) -> None:
    """Enable row level security on tables our SQL files do not create.

    On Supabase every table in ``public`` is reachable through the REST API with the anon
    key unless RLS is on; checkpoints hold the whole conversation state. The studio connects
    as the owner, which RLS does not restrict, so this changes nothing for it.
    """
    for table in _UNMIGRATED_TABLES:
        await conn.execute(
            f"do $$ begin if to_regclass('public.{table}') is not null then"
            f" execute 'alter table public.{table} enable row level security'; end if; end $$",
            prepare=False,
        )


def _first_value(row: Any) -> Any:
    """First column of a row from any row factory (callers may pass their own connection)."""
    if row is None:
        return None
    if isinstance(row, Mapping):
        return next(iter(row.values()))
    return row[0]


@contextlib.asynccontextmanager
async def _session_advisory_lock(conn: AsyncConnection[Any], key: int) -> AsyncIterator[None]:
    """Wait until this session holds ``key``; the server frees it if the process dies.

    Polls ``pg_try_advisory_lock`` instead of blocking in ``pg_advisory_lock``: a session
    blocked in that statement keeps a snapshot open, and the checkpointer's
    ``CREATE INDEX CONCURRENTLY`` (run by the holder, under this lock) waits for every open
    snapshot to go away. Blocking would deadlock two studios starting at once, through the
    client where Postgres' deadlock detector cannot see it (observed, not theoretical).
    """
    delay = 0.02
    while True:
        cur = await conn.execute("select pg_try_advisory_lock(%s)", (key,))
        if _first_value(await cur.fetchone()):
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    try:
        yield
    finally:
        await conn.execute("select pg_advisory_unlock(%s)", (key,))


async def _apply_locked(conn: AsyncConnection[Any]) -> list[str]:
    await conn.execute(
        f"create table if not exists {MIGRATIONS_TABLE} ("
        " version text primary key,"
        " applied_at timestamptz not null default now())"
    )
    cur = await conn.execute(f"select version from {MIGRATIONS_TABLE}")
    done = {_first_value(row) for row in await cur.fetchall()}
    applied: list[str] = []
    for version, sql in await asyncio.to_thread(migration_files):
        if version in done:
            continue
        # One transaction per file: a failing migration leaves no half-built schema behind and
        # is retried in full by the next start.
        async with conn.transaction():
            # prepare=False: a file holds many statements, which the extended protocol (and a
            # pool configured with prepare_threshold=0) cannot prepare.
            await conn.execute(sql, prepare=False)
            await conn.execute(f"insert into {MIGRATIONS_TABLE} (version) values (%s)", (version,))
        logger.info("applied migration %s", version)
        applied.append(version)
    return applied


@contextlib.asynccontextmanager
async def _autocommit(conn: AsyncConnection[Any]) -> AsyncIterator[None]:
    """Run in autocommit so each migration's own transaction really commits."""
    if conn.autocommit:
        yield
        return
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("apply_migrations needs a connection that is not inside a transaction")
    await conn.set_autocommit(True)
    try:
        yield
    finally:
        await conn.set_autocommit(False)


async def apply_migrations(
    conn_or_pool: AsyncConnection[Any] | AsyncConnectionPool[Any],
) -> list[str]:
    """Apply the pending ``supabase/migrations/*.sql``; return the versions applied now.

    Every studio process calls this at start, possibly at the same moment (CLI + API server),
    so the work is serialised with a session advisory lock; the loser then sees the winner's
    rows in ``studio_schema_migrations`` and applies nothing.
    """
    if isinstance(conn_or_pool, AsyncConnectionPool):
        async with conn_or_pool.connection() as conn:
            return await apply_migrations(conn)
    async with _autocommit(conn_or_pool), _session_advisory_lock(conn_or_pool, _MIGRATION_LOCK_KEY):
        applied = await _apply_locked(conn_or_pool)
        await _protect_unmigrated_tables(conn_or_pool)
        return applied


# --------------------------------------------------------------------------------------------
# Database

__all__ = ["MIGRATIONS_TABLE", "apply_migrations", "migration_files"]

"""One writer per conversation: a lease row, not a held connection.

Two runs on one LangGraph thread would interleave checkpoints and duplicate turns, so a
process must own a conversation while it runs it. A session advisory lock would do, but
it pins one Postgres connection per running conversation: a hundred conversations would
take a hundred connections, more than a small Supabase instance allows. A lease is one
row (``conversation_leases``) with an owner and an expiry, renewed while the run lasts:

* taken with one upsert that only succeeds when the row is free or expired;
* renewed every ``ttl / 3`` seconds by a background task; released on exit;
* a studio that was killed leaves its row behind: it expires after ``ttl`` seconds, and a
  process on the same host whose pid is gone is recognised as dead at once (so a restart
  continues a conversation immediately);
* a release that failed because the database was away leaves this process's own row
  behind: the same Leases object takes it back at once when it continues the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import psutil
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from creative_studio.core.errors import ConversationBusyError

log = logging.getLogger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]
DEFAULT_TTL_S = 30.0


def conversation_key(conversation_id: str | UUID) -> str:
    """Every spelling of the same uuid names the same conversation."""
    text = str(conversation_id).strip()
    with contextlib.suppress(ValueError):
        text = str(UUID(text))
    return text.lower()


def _owner_is_dead(owner: str) -> bool:
    """True when ``owner`` names a process on this host that no longer runs."""
    host, _, rest = owner.partition("/")
    pid_text = rest.split("/", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass
class WriterLock:
    """Proof that this process is the writer of a conversation, for as long as it is held."""

    conversation_id: str
    owner: str
    _pool: Pool = field(repr=False)
    lost: bool = False

    async def is_held(self) -> bool:
        """Ask the database whether the lease is still ours and current."""
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "select exists (select 1 from conversation_leases where conversation_id = %s"
                    " and owner = %s and expires_at > now()) as held",
                    (self.conversation_id, self.owner),
                )
                row = await cur.fetchone()
        except psycopg.Error:
            return False
        return bool(row and row["held"]) and not self.lost


class Leases:
    """Takes, renews and releases conversation leases for one studio process."""

    def __init__(self, pool: Pool, *, ttl: float = DEFAULT_TTL_S) -> None:
        self.pool = pool
        self.ttl = ttl
        # host/pid/instance: two Database objects in one process are two owners.
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{uuid4().hex[:8]}"
        self._held: set[str] = set()

    async def _take(self, key: str, *, steal_from: str | None = None) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """
                insert into conversation_leases (conversation_id, owner, expires_at)
                values (%(key)s, %(owner)s, now() + make_interval(secs => %(ttl)s))
                on conflict (conversation_id) do update
                  set owner = excluded.owner, acquired_at = now(), expires_at = excluded.expires_at
                  where conversation_leases.expires_at < now()
                     or conversation_leases.owner = %(dead)s
                returning owner
                """,
                {"key": key, "owner": self.owner, "ttl": self.ttl, "dead": steal_from or ""},
            )
            return await cur.fetchone() is not None

    async def _holder(self, key: str) -> str | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select owner from conversation_leases where conversation_id = %s", (key,)
            )
            row = await cur.fetchone()
        return str(row["owner"]) if row else None

    async def _renew(self, lock: WriterLock) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(
                        "update conversation_leases set expires_at = now() + make_interval(secs => %s)"
                        " where conversation_id = %s and owner = %s returning owner",
                        (self.ttl, lock.conversation_id, self.owner),
                    )
                    if await cur.fetchone() is None:
                        lock.lost = True
                        log.error("lost the lease of conversation %s", lock.conversation_id)
                        return
            except psycopg.Error as error:  # keep trying: the lease lasts ttl seconds
                log.warning("could not renew the lease of %s: %s", lock.conversation_id, error)

    async def _release(self, key: str) -> None:
        try:
            async with self.pool.connection() as conn:
                await conn.execute(
                    "delete from conversation_leases where conversation_id = %s and owner = %s",
                    (key, self.owner),
                )
        except psycopg.Error as error:  # it expires by itself
            log.warning("could not release the lease of %s: %s", key, error)

    @contextlib.asynccontextmanager
    async def hold(self, conversation_id: str | UUID) -> AsyncIterator[WriterLock]:
        """Be the only writer of ``conversation_id``, or fail at once with ConversationBusyError."""
        key = conversation_key(conversation_id)
        busy = ConversationBusyError(
            f"Conversation {conversation_id} is already running in another studio "
            "process (or another request); wait for it to finish or stop it first."
        )
        if key in self._held:  # held (or being taken) by this process already
            raise busy
        self._held.add(key)
        try:
            taken = await self._take(key)
            if not taken:
                holder = await self._holder(key)
                # Our own row while we hold nothing: its release failed (database away).
                if holder and (holder == self.owner or _owner_is_dead(holder)):
                    taken = await self._take(key, steal_from=holder)
            if not taken:
                raise busy
        except BaseException:
            self._held.discard(key)
            raise
        lock = WriterLock(key, self.owner, self.pool)
        renewer = asyncio.create_task(self._renew(lock), name=f"lease-{key}")
        try:
            yield lock
        finally:
            self._held.discard(key)
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await asyncio.shield(self._release(key))


__all__ = ["DEFAULT_TTL_S", "Leases", "WriterLock", "conversation_key"]

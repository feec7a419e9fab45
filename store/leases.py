"""One writer per conversation: a lease row, not a held connection.

Two runs on one LangGraph thread would interleave checkpoints and duplicate turns, so a
process must own a conversation while it runs it. A session advisory lock would do, but
it pins one Postgres connection per running conversation: a hundred conversations would
take a hundred connections, more than a small Supabase instance allows. A lease is one
row (``conversation_leases``) with an owner and an expiry, renewed while the run lasts:

* taken with one upsert that only succeeds when the row is free or expired;
* renewed every ``ttl / 3`` seconds by one heartbeat task per process, all of its leases in
  one statement (a hundred running conversations cost one update, not a hundred); released
  on exit;
* a studio that was killed (kill -9, a lost machine) leaves its row behind: it expires after
  ``ttl`` seconds (6 by default, ``CREATIVE_STUDIO_LEASE_TTL_S``), and every other worker's
  takeover sweep (services/takeover.py) looks for such rows of conversations left
  "running" (``expired_running``) and continues them; a process on the same host whose pid
  is gone is recognised as dead at once (so a restart continues a conversation immediately);
* a holder whose heartbeat could not be written for a whole ``ttl`` (or found its row taken)
  knows another worker may have taken over: ``WriterLock.lost`` is set and the runner stops
  the run, so two workers never speak for one conversation;
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
DEFAULT_TTL_S = 6.0  # a dead worker's conversations are taken over this long after its death
TTL_ENV = "CREATIVE_STUDIO_LEASE_TTL_S"


def configured_ttl() -> float:
    """The lease ttl from ``CREATIVE_STUDIO_LEASE_TTL_S`` (seconds, >= 1), else the default."""
    text = os.environ.get(TTL_ENV, "").strip()
    if not text:
        return DEFAULT_TTL_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{TTL_ENV} must be a number of seconds, got {text!r}") from None
    if not 1.0 <= value <= 3600.0:
        raise ValueError(f"{TTL_ENV} must be between 1 and 3600 seconds, got {value}")
    return value


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
    renewed: float = 0.0  # loop time of the last heartbeat that got through
    # Set with ``lost``: the run waits on it to stop before another worker's takeover.
    lost_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def lose(self) -> None:
        self.lost = True
        self.lost_event.set()

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

    def __init__(self, pool: Pool, *, ttl: float | None = None) -> None:
        self.pool = pool
        self.ttl = configured_ttl() if ttl is None else ttl
        # host/pid/instance: two Database objects in one process are two owners.
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{uuid4().hex[:8]}"
        self._held: set[str] = set()
        self._locks: dict[str, WriterLock] = {}  # what the heartbeat renews
        self._heartbeat: asyncio.Task[None] | None = None

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

    async def holder(self, conversation_id: str | UUID) -> str | None:
        """Who holds the conversation's lease now, if anyone (an expired row holds nothing)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select owner from conversation_leases where conversation_id = %s"
                " and expires_at > now()",
                (conversation_key(conversation_id),),
            )
            row = await cur.fetchone()
        return str(row["owner"]) if row else None

    async def expired_running(self, limit: int = 100) -> list[tuple[str, str]]:
        """(conversation, dead owner) of conversations left "running" whose lease expired.

        A worker that is alive renews its rows every ``ttl / 3``; a row past its expiry with
        the conversation still "running" means its holder died mid-run (any host).
        """
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select l.conversation_id, l.owner from conversation_leases l"
                " join conversations c on c.id::text = l.conversation_id"
                " where l.expires_at < now() and c.status = 'running' and l.owner <> %s"
                " order by l.expires_at limit %s",
                (self.owner, limit),
            )
            rows = await cur.fetchall()
        return [(str(row["conversation_id"]), str(row["owner"])) for row in rows]

    async def _beat(self) -> None:
        """Renew every lease this process holds, together, until it holds none."""
        loop = asyncio.get_running_loop()
        while self._locks:
            await asyncio.sleep(self.ttl / 3)
            locks = dict(self._locks)
            if not locks:
                return
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(
                        "update conversation_leases set expires_at = now() + make_interval(secs => %s)"
                        " where owner = %s and conversation_id = any(%s) returning conversation_id",
                        (self.ttl, self.owner, list(locks)),
                    )
                    kept = {str(row["conversation_id"]) for row in await cur.fetchall()}
            except psycopg.Error as error:  # keep trying: a lease lasts ttl seconds
                log.warning("could not renew %d lease(s): %s", len(locks), error)
                kept = None
            now = loop.time()
            for key, lock in locks.items():
                if self._locks.get(key) is not lock:
                    continue  # released meanwhile
                if kept is not None and key in kept:
                    lock.renewed = now
                    continue
                if kept is not None:  # the row is gone or another owner's
                    log.error("lost the lease of conversation %s", key)
                elif now - lock.renewed > self.ttl:
                    # No heartbeat got through for a whole ttl: the row may be taken by now.
                    log.error("could not renew the lease of %s in time", key)
                else:
                    continue
                lock.lose()
                del self._locks[key]

    async def stop(self) -> None:
        """Stop the heartbeat (closing the database: the leases expire or were released)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None

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
        lock = WriterLock(key, self.owner, self.pool, renewed=asyncio.get_running_loop().time())
        self._locks[key] = lock
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat(), name="lease-heartbeat")
        try:
            yield lock
        finally:
            self._held.discard(key)
            if self._locks.get(key) is lock:
                del self._locks[key]
            await asyncio.shield(self._release(key))


__all__ = ["DEFAULT_TTL_S", "TTL_ENV", "Leases", "WriterLock", "configured_ttl", "conversation_key"]

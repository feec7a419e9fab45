"""The person's presence per conversation, shared by the workers on one database.

A worker only knows the clients connected to it; the conversation may run on another
worker (the lease holder). So presence lives in ``conversation_presence.last_seen_at``
(written in one statement for all the conversations a worker saw lately) and the idle pause
in ``paused_at`` (taken back atomically, so exactly one worker continues a paused run when
the person returns). See supabase/migrations/0006_conversation_presence.sql.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]

__all__ = ["PresenceStore"]


class PresenceStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def seen(self, conversation_ids: Iterable[str]) -> None:
        """The person was here just now (watching or sending) in these conversations."""
        ids = sorted(set(conversation_ids))
        if not ids:
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                "insert into conversation_presence (conversation_id, last_seen_at)"
                " select c, now() from unnest(%s::uuid[]) c"
                " where exists (select 1 from conversations where id = c)"
                " on conflict (conversation_id) do update set last_seen_at = excluded.last_seen_at",
                (ids,),
            )

    async def away_for(self, conversation_ids: Iterable[str]) -> dict[str, float]:
        """Seconds since the person was last seen, per conversation seen at least once."""
        ids = sorted(set(conversation_ids))
        if not ids:
            return {}
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select conversation_id::text as id, extract(epoch from now() - last_seen_at)::float8 as away"
                " from conversation_presence where conversation_id = any(%s::uuid[])"
                " and last_seen_at is not null",
                (ids,),
            )
            rows = await cur.fetchall()
        return {row["id"]: float(row["away"]) for row in rows}

    async def mark_paused(self, conversation_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "insert into conversation_presence (conversation_id, paused_at) values (%s, now())"
                " on conflict (conversation_id) do update set paused_at = excluded.paused_at",
                (conversation_id,),
            )

    async def take_paused(self, conversation_id: str) -> bool:
        """Clear the pause; True for the one caller that found it paused."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "update conversation_presence set paused_at = null"
                " where conversation_id = %s and paused_at is not null returning conversation_id",
                (conversation_id,),
            )
            return await cur.fetchone() is not None

"""What every studio-table query shares: a pool connection per statement, errors translated.

Kept apart from the per-table queries (sessions, conversations, messages, generations) so
each of those files holds the statements of one table, and the one place that turns
psycopg exceptions into StudioErrors (``records._translate``) is used the same way by all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import psycopg
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from creative_studio.core.errors import NotFoundError
from creative_studio.store.records import _Record, _translate

__all__ = ["QueryBase"]

R = TypeVar("R", bound=_Record)


class QueryBase:
    """The shared pool (autocommit, dict rows) and the three ways a query returns rows."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def _fetch(self, query: str, params: Mapping[str, Any] | None = None) -> list[DictRow]:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(query, params)
                if cur.description is None:
                    return []
                rows: list[DictRow] = await cur.fetchall()
                return rows
        except psycopg.Error as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    async def _one(self, model: type[R], query: str, params: Mapping[str, Any], missing: str) -> R:
        rows = await self._fetch(query, params)
        if not rows:
            raise NotFoundError(missing)
        return model.model_validate(rows[0])

    async def _many(
        self, model: type[R], query: str, params: Mapping[str, Any] | None = None
    ) -> list[R]:
        return [model.model_validate(row) for row in await self._fetch(query, params)]

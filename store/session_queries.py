"""Queries on ``sessions``: create, read, list, rename, settings and preferences, delete.

One table per file (see ``store/repository.py``, which composes them into
StudioRepository); conversations, messages and generations build on these lookups to
name a missing session in their errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb

from creative_studio.core.errors import InvalidInputError, NotFoundError
from creative_studio.store.query_base import QueryBase
from creative_studio.store.records import (
    IdLike,
    SessionRecord,
    _assignments,
    _json_object,
    _page,
    _uuid,
)

__all__ = ["SessionQueries"]


class SessionQueries(QueryBase):
    """The session rows: a person's workspace, with its model assignments and preferences."""

    async def create_session(
        self,
        name: str,
        model_assignments: Mapping[str, str] | None = None,
        preferences: Mapping[str, Any] | None = None,
    ) -> SessionRecord:
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            raise InvalidInputError("A session needs a name.")
        return await self._one(
            SessionRecord,
            "insert into sessions (name, model_assignments, preferences)"
            " values (%(name)s, %(assignments)s, %(preferences)s) returning *",
            {
                "name": name,
                "assignments": Jsonb(_assignments(model_assignments)),
                "preferences": Jsonb(_json_object(preferences, "preferences")),
            },
            "session was not created",
        )

    async def get_session(self, session_id: IdLike) -> SessionRecord:
        sid = _uuid(session_id, "session")
        return await self._one(
            SessionRecord,
            "select * from sessions where id = %(id)s",
            {"id": sid},
            f"No session with id {sid}.",
        )

    async def list_sessions(self, limit: int = 50, offset: int = 0) -> list[SessionRecord]:
        """Newest first; ``id`` breaks ties so pages never overlap or skip."""
        limit, offset = _page(limit, offset)
        return await self._many(
            SessionRecord,
            "select * from sessions order by created_at desc, id desc"
            " limit %(limit)s offset %(offset)s",
            {"limit": limit, "offset": offset},
        )

    async def rename_session(self, session_id: IdLike, name: str) -> SessionRecord:
        sid = _uuid(session_id, "session")
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            raise InvalidInputError("A session needs a name.")
        return await self._one(
            SessionRecord,
            "update sessions set name = %(name)s where id = %(id)s returning *",
            {"id": sid, "name": name},
            f"No session with id {sid}.",
        )

    async def update_session_settings(
        self,
        session_id: IdLike,
        model_assignments: Mapping[str, str] | None = None,
        preferences: Mapping[str, Any] | None = None,
    ) -> SessionRecord:
        """Replace ``model_assignments``; merge ``preferences`` key by key.

        Assignments are one coherent choice (the settings form sends all roles), preferences
        are independent toggles that different screens change one at a time, so a partial
        update must not wipe the others. A preference set to ``None`` is removed, like in a
        JSON merge patch. ``None`` arguments leave that column untouched; the update is one
        statement, so concurrent changes to different keys do not lose each other.
        """
        sid = _uuid(session_id, "session")
        patch = _json_object(preferences, "preferences")
        removed = [key for key, value in patch.items() if value is None]
        kept = {key: value for key, value in patch.items() if value is not None}
        assignments = None if model_assignments is None else Jsonb(_assignments(model_assignments))
        return await self._one(
            SessionRecord,
            "update sessions set"
            " model_assignments = coalesce(%(assignments)s::jsonb, model_assignments),"
            " preferences = (preferences || %(kept)s::jsonb) - %(removed)s::text[]"
            " where id = %(id)s returning *",
            {"id": sid, "assignments": assignments, "kept": Jsonb(kept), "removed": removed},
            f"No session with id {sid}.",
        )

    async def replace_preferences(
        self, session_id: IdLike, preferences: Mapping[str, Any]
    ) -> SessionRecord:
        """Set the whole preferences object (the API's PUT semantics)."""
        sid = _uuid(session_id, "session")
        return await self._one(
            SessionRecord,
            "update sessions set preferences = %(prefs)s where id = %(id)s returning *",
            {"id": sid, "prefs": Jsonb(dict(preferences))},
            f"No session with id {session_id}.",
        )

    async def delete_session(self, session_id: IdLike) -> None:
        """Delete a session with its conversations, messages and generations (cascade).

        Checkpoints of its conversations stay in the checkpointer's tables; the caller that
        knows the thread ids (the runner) deletes those through the checkpointer.
        """
        sid = _uuid(session_id, "session")
        rows = await self._fetch("delete from sessions where id = %(id)s returning id", {"id": sid})
        if not rows:
            raise NotFoundError(f"No session with id {sid}.")

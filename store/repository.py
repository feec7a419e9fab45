"""Typed access to the studio's own tables: sessions, conversations, messages, generations.

Everything above this module (graph runner, API, CLI) talks in records and StudioErrors, never
in SQL or psycopg exceptions: an unknown or malformed id is a NotFoundError, a value the schema
refuses is an InvalidInputError, so every caller can answer a person with a clear message and
the right status code. Ids are ``uuid.UUID`` in records; methods accept ``UUID`` or ``str``.

The LangGraph checkpoint tables are not touched here: the checkpointer owns them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from creative_studio.core.errors import InvalidInputError, NotFoundError
from creative_studio.store.records import (
    _CONVERSATION_STATUSES,
    _FINISHED_GENERATION,
    _GENERATION_STATUSES,
    _MESSAGE_ROLES,
    UNSET,
    ConversationRecord,
    ConversationStatus,
    GenerationRecord,
    GenerationStatus,
    IdLike,
    MessageRecord,
    MessageRole,
    SessionRecord,
    _assignments,
    _choice,
    _json_object,
    _page,
    _Record,
    _translate,
    _Unset,
    _uuid,
)

__all__ = [
    "ConversationRecord",
    "ConversationStatus",
    "GenerationRecord",
    "GenerationStatus",
    "MessageRecord",
    "MessageRole",
    "SessionRecord",
    "StudioRepository",
]

R = TypeVar("R", bound=_Record)


class StudioRepository:
    """CRUD over the studio tables, on the shared pool (autocommit, dict rows).

    Each method is one short statement (or two with nothing to roll back), so it takes a pool
    connection only for that long; nothing here holds a transaction open across awaits of
    other work, which keeps the pool free for streaming runs.
    """

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    # ---------------------------------------------------------------- plumbing

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

    # ---------------------------------------------------------------- sessions

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

    # ---------------------------------------------------------------- conversations

    async def create_conversation(
        self,
        session_id: IdLike,
        title: str | None = None,
        parent_id: IdLike | None = None,
        forked_from_checkpoint: str | None = None,
        conversation_id: IdLike | None = None,
    ) -> ConversationRecord:
        """Create a conversation; pass ``conversation_id`` to reuse an existing thread id."""
        sid = _uuid(session_id, "session")
        params: dict[str, Any] = {
            "session_id": sid,
            "title": title,
            "parent_id": None if parent_id is None else _uuid(parent_id, "conversation"),
            "forked": forked_from_checkpoint,
            "id": None if conversation_id is None else _uuid(conversation_id, "conversation"),
        }
        try:
            return await self._one(
                ConversationRecord,
                "insert into conversations"
                " (id, session_id, title, parent_id, forked_from_checkpoint)"
                " values (coalesce(%(id)s::uuid, gen_random_uuid()), %(session_id)s,"
                " %(title)s, %(parent_id)s, %(forked)s) returning *",
                params,
                "conversation was not created",
            )
        except NotFoundError:
            # Name which reference is missing rather than echo the server's FK detail.
            await self.get_session(sid)
            if params["parent_id"] is not None:
                await self.get_conversation(params["parent_id"])
            raise
        except psycopg.errors.UniqueViolation:
            raise InvalidInputError(
                f"A conversation with id {params['id']} already exists."
            ) from None

    async def get_conversation(self, conversation_id: IdLike) -> ConversationRecord:
        cid = _uuid(conversation_id, "conversation")
        return await self._one(
            ConversationRecord,
            "select * from conversations where id = %(id)s",
            {"id": cid},
            f"No conversation with id {cid}.",
        )

    async def list_conversations(self, session_id: IdLike) -> list[ConversationRecord]:
        """Oldest first: the order a person started them in the session's sidebar."""
        sid = _uuid(session_id, "session")
        rows = await self._many(
            ConversationRecord,
            "select * from conversations where session_id = %(id)s order by created_at, id",
            {"id": sid},
        )
        if not rows:
            await self.get_session(sid)  # an unknown session is an error, not an empty list
        return rows

    async def conversations_with_status(
        self, status: ConversationStatus, limit: int = 1000
    ) -> list[ConversationRecord]:
        """E.g. the conversations a stopped process left ``running``, to resume them."""
        return await self._many(
            ConversationRecord,
            "select * from conversations where status = %(status)s order by updated_at limit %(limit)s",
            {"status": status, "limit": limit},
        )

    async def set_conversation_status(
        self, conversation_id: IdLike, status: ConversationStatus
    ) -> ConversationRecord:
        cid = _uuid(conversation_id, "conversation")
        _choice(status, _CONVERSATION_STATUSES, "conversation status")
        return await self._one(
            ConversationRecord,
            "update conversations set status = %(status)s where id = %(id)s returning *",
            {"id": cid, "status": status},
            f"No conversation with id {cid}.",
        )

    # ---------------------------------------------------------------- messages

    async def add_message(
        self,
        conversation_id: IdLike,
        message_id: str,
        role: MessageRole,
        speaker: str,
        content: str,
        phase: str | None = None,
        kind: str | None = None,
        interrupted: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> MessageRecord:
        """Store a completed message once; a repeat with the same ``message_id`` is a no-op.

        A node replayed after a crash, or a stream that reconnects, writes the same LangChain
        message again: the existing row (with its original ``seq``) is returned unchanged.
        """
        cid = _uuid(conversation_id, "conversation")
        if not isinstance(message_id, str) or not message_id:
            raise InvalidInputError("A message needs a message_id.")
        _choice(role, _MESSAGE_ROLES, "message role")
        params = {
            "cid": cid,
            "message_id": message_id,
            "role": role,
            "speaker": speaker,
            "content": content,
            "phase": phase,
            "kind": kind,
            "interrupted": bool(interrupted),
            "metadata": Jsonb(_json_object(metadata, "metadata")),
        }
        try:
            rows = await self._fetch(
                "insert into messages (conversation_id, message_id, role, speaker, content,"
                " phase, kind, interrupted, metadata)"
                " values (%(cid)s, %(message_id)s, %(role)s, %(speaker)s, %(content)s,"
                " %(phase)s, %(kind)s, %(interrupted)s, %(metadata)s)"
                " on conflict (conversation_id, message_id) do nothing returning *",
                params,
            )
        except NotFoundError:
            raise NotFoundError(f"No conversation with id {cid}.") from None
        if not rows:
            rows = await self._fetch(
                "select * from messages where conversation_id = %(cid)s"
                " and message_id = %(message_id)s",
                params,
            )
        if not rows:  # pragma: no cover - conflict row deleted in between (cascade)
            raise NotFoundError(f"No conversation with id {cid}.")
        return MessageRecord.model_validate(rows[0])

    async def list_messages(
        self, conversation_id: IdLike, after_seq: int | None = None, limit: int = 500
    ) -> list[MessageRecord]:
        """Messages in the order they were stored; ``after_seq`` pages forward (SSE replay)."""
        cid = _uuid(conversation_id, "conversation")
        limit, _ = _page(limit, 0)
        rows = await self._many(
            MessageRecord,
            "select * from messages where conversation_id = %(cid)s"
            " and (%(after)s::bigint is null or seq > %(after)s::bigint)"
            " order by seq limit %(limit)s",
            {"cid": cid, "after": after_seq, "limit": limit},
        )
        if not rows:
            await self.get_conversation(cid)
        return rows

    async def count_messages(self, conversation_id: IdLike) -> int:
        cid = _uuid(conversation_id, "conversation")
        rows = await self._fetch(
            "select (select count(*) from messages where conversation_id = c.id) as n"
            " from conversations c where c.id = %(cid)s",
            {"cid": cid},
        )
        if not rows:
            raise NotFoundError(f"No conversation with id {cid}.")
        return int(rows[0]["n"])

    # ---------------------------------------------------------------- generations

    async def create_generation(
        self,
        session_id: IdLike,
        conversation_id: IdLike | None,
        parameters: Mapping[str, Any],
        template: str | None = None,
        status: GenerationStatus = "queued",
    ) -> GenerationRecord:
        sid = _uuid(session_id, "session")
        cid = None if conversation_id is None else _uuid(conversation_id, "conversation")
        _choice(status, _GENERATION_STATUSES, "generation status")
        try:
            return await self._one(
                GenerationRecord,
                "insert into generations (session_id, conversation_id, parameters, template,"
                " status, started_at, completed_at)"
                " values (%(sid)s, %(cid)s, %(parameters)s, %(template)s, %(status)s,"
                " case when %(status)s <> 'queued' then now() end,"
                " case when %(status)s in ('complete', 'failed', 'cancelled') then now() end)"
                " returning *",
                {
                    "sid": sid,
                    "cid": cid,
                    "parameters": Jsonb(_json_object(parameters, "parameters")),
                    "template": template,
                    "status": status,
                },
                "generation was not created",
            )
        except NotFoundError:
            await self.get_session(sid)
            if cid is not None:
                await self.get_conversation(cid)
            raise

    async def update_generation(
        self,
        generation_id: IdLike,
        *,
        status: GenerationStatus | _Unset = UNSET,
        progress: float | _Unset = UNSET,
        prompt_id: str | _Unset | None = UNSET,
        server_url: str | _Unset | None = UNSET,
        workflow_json: Mapping[str, Any] | _Unset | None = UNSET,
        outputs: list[Any] | _Unset = UNSET,
        error: str | _Unset | None = UNSET,
        started_at: datetime | _Unset | None = UNSET,
        completed_at: datetime | _Unset | None = UNSET,
    ) -> GenerationRecord:
        """Change only the fields given (``None`` clears a nullable one).

        Moving to ``running`` stamps ``started_at`` and to a finished status stamps
        ``completed_at`` when they are still empty and not given, so the history is right
        even if a caller forgets.
        """
        gid = _uuid(generation_id, "generation")
        sets: list[str] = []
        params: dict[str, Any] = {"id": gid}
        if not isinstance(status, _Unset):
            _choice(status, _GENERATION_STATUSES, "generation status")
            sets.append("status = %(status)s")
            params["status"] = status
            if status != "queued" and isinstance(started_at, _Unset):
                sets.append("started_at = coalesce(started_at, now())")
            if status in _FINISHED_GENERATION and isinstance(completed_at, _Unset):
                sets.append("completed_at = coalesce(completed_at, now())")
        if not isinstance(progress, _Unset):
            if not isinstance(progress, int | float) or not 0.0 <= float(progress) <= 1.0:
                raise InvalidInputError(f"progress must be between 0 and 1, got {progress!r}.")
            sets.append("progress = %(progress)s")
            params["progress"] = float(progress)
        if not isinstance(prompt_id, _Unset):
            sets.append("prompt_id = %(prompt_id)s")
            params["prompt_id"] = prompt_id
        if not isinstance(server_url, _Unset):
            sets.append("server_url = %(server_url)s")
            params["server_url"] = server_url
        if not isinstance(workflow_json, _Unset):
            sets.append("workflow_json = %(workflow_json)s")
            params["workflow_json"] = (
                None if workflow_json is None else Jsonb(_json_object(workflow_json, "workflow"))
            )
        if not isinstance(outputs, _Unset):
            if not isinstance(outputs, list):
                raise InvalidInputError("outputs must be a list.")
            sets.append("outputs = %(outputs)s")
            params["outputs"] = Jsonb(outputs)
        if not isinstance(error, _Unset):
            sets.append("error = %(error)s")
            params["error"] = error
        if not isinstance(started_at, _Unset):
            sets.append("started_at = %(started_at)s")
            params["started_at"] = started_at
        if not isinstance(completed_at, _Unset):
            sets.append("completed_at = %(completed_at)s")
            params["completed_at"] = completed_at
        if not sets:
            return await self.get_generation(gid)
        return await self._one(
            GenerationRecord,
            f"update generations set {', '.join(sets)} where id = %(id)s returning *",
            params,
            f"No generation with id {gid}.",
        )

    async def get_generation(self, generation_id: IdLike) -> GenerationRecord:
        gid = _uuid(generation_id, "generation")
        return await self._one(
            GenerationRecord,
            "select * from generations where id = %(id)s",
            {"id": gid},
            f"No generation with id {gid}.",
        )

    async def list_generations(
        self, session_id: IdLike | None = None, limit: int = 50, offset: int = 0
    ) -> list[GenerationRecord]:
        """Newest first, for one session (unknown session: NotFoundError) or for all."""
        limit, offset = _page(limit, offset)
        if session_id is None:
            return await self._many(
                GenerationRecord,
                "select * from generations order by created_at desc, id desc"
                " limit %(limit)s offset %(offset)s",
                {"limit": limit, "offset": offset},
            )
        sid = _uuid(session_id, "session")
        rows = await self._many(
            GenerationRecord,
            "select * from generations where session_id = %(sid)s"
            " order by created_at desc, id desc limit %(limit)s offset %(offset)s",
            {"sid": sid, "limit": limit, "offset": offset},
        )
        if not rows:
            await self.get_session(sid)
        return rows

"""Queries on ``generations``: create, update only the fields given (stamping times), read, list.

Separate because a generation's row changes many times over its life (status, progress,
the ComfyUI prompt, outputs), which is what most of this file is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from creative_studio.core.errors import InvalidInputError, NotFoundError
from creative_studio.store.conversation_queries import ConversationQueries
from creative_studio.store.records import (
    _FINISHED_GENERATION,
    _GENERATION_STATUSES,
    UNSET,
    GenerationRecord,
    GenerationStatus,
    IdLike,
    _choice,
    _json_object,
    _page,
    _Unset,
    _uuid,
)

__all__ = ["GenerationQueries"]


class GenerationQueries(ConversationQueries):
    """The generation rows of a session (and, when a conversation asked, of that conversation)."""

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
        plain = {  # columns written as given (their names are ours, not the caller's)
            "prompt_id": prompt_id,
            "server_url": server_url,
            "error": error,
            "started_at": started_at,
            "completed_at": completed_at,
        }
        for column, value in plain.items():
            if not isinstance(value, _Unset):
                sets.append(f"{column} = %({column})s")
                params[column] = value
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

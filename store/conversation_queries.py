"""Queries on ``conversations``: create (new, forked, or on a given thread id), read, list, status.

Separate from the session queries it builds on (an unknown session is named as such) and
from the messages and generations that hang off a conversation.
"""

from __future__ import annotations

from typing import Any

import psycopg

from creative_studio.core.errors import InvalidInputError, NotFoundError
from creative_studio.store.records import (
    _CONVERSATION_STATUSES,
    ConversationRecord,
    ConversationStatus,
    IdLike,
    _choice,
    _uuid,
)
from creative_studio.store.session_queries import SessionQueries

__all__ = ["ConversationQueries"]


class ConversationQueries(SessionQueries):
    """The conversation rows of a session; their ids are the LangGraph thread ids."""

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

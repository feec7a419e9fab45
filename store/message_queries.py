"""Queries on ``messages``: store a completed message once, list them in order, count them.

Separate because messages are written idempotently (a replayed node or a reconnecting
stream writes the same message again) and read by ``seq`` for SSE replay, unlike the
other tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb

from creative_studio.core.errors import InvalidInputError, NotFoundError
from creative_studio.store.conversation_queries import ConversationQueries
from creative_studio.store.records import (
    _MESSAGE_ROLES,
    IdLike,
    MessageRecord,
    MessageRole,
    _choice,
    _json_object,
    _page,
    _uuid,
)

__all__ = ["MessageQueries"]


class MessageQueries(ConversationQueries):
    """The message rows of a conversation, in the order they were stored."""

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

"""Typed access to the studio's own tables: sessions, conversations, messages, generations.

Everything above this module (graph runner, API, CLI) talks in records and StudioErrors, never
in SQL or psycopg exceptions: an unknown or malformed id is a NotFoundError, a value the schema
refuses is an InvalidInputError, so every caller can answer a person with a clear message and
the right status code. Ids are ``uuid.UUID`` in records; methods accept ``UUID`` or ``str``.

The LangGraph checkpoint tables are not touched here: the checkpointer owns them.

The queries live one table per module (``session_queries``, ``conversation_queries``,
``message_queries``, ``generation_queries``, on the plumbing in ``query_base``);
StudioRepository composes them so callers keep one object and one import.
"""

from __future__ import annotations

from creative_studio.store.generation_queries import GenerationQueries
from creative_studio.store.message_queries import MessageQueries
from creative_studio.store.records import (
    ConversationRecord,
    ConversationStatus,
    GenerationRecord,
    GenerationStatus,
    MessageRecord,
    MessageRole,
    SessionRecord,
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


class StudioRepository(MessageQueries, GenerationQueries):
    """CRUD over the studio tables, on the shared pool (autocommit, dict rows).

    Each method is one short statement (or two with nothing to roll back), so it takes a pool
    connection only for that long; nothing here holds a transaction open across awaits of
    other work, which keeps the pool free for streaming runs.
    """

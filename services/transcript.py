"""Writing the graph's messages to the messages table, as clients will read them."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AnyMessage

from creative_studio.graph.events import message_payload
from creative_studio.store.repository import StudioRepository


async def store_message(
    repository: StudioRepository, conversation_id: str, message: AnyMessage
) -> dict[str, Any]:
    """Write a message to the messages table (idempotent on its id); returns its payload."""
    payload = message_payload(message)
    await repository.add_message(conversation_id, **payload)
    return payload

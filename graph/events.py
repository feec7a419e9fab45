"""Events a conversation emits while the team works, for the CLI, the API and the web.

One vocabulary for every client: ``token`` (a piece of a turn being written),
``message`` (a complete message, already stored), ``phase``, ``typing`` (who is
composing), ``interrupt`` (a question for the person), ``generation_progress`` /
``generation_done``, ``error`` and ``status`` (running / idle / waiting).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from langchain_core.messages import AnyMessage
from pydantic import BaseModel, Field

from creative_studio.graph.prompting import personas, team_prompts
from creative_studio.tools.repository import StudioRepository

EventKind = Literal[
    "token",
    "message",
    "phase",
    "typing",
    "interrupt",
    "generation_progress",
    "generation_done",
    "error",
    "status",
]


class StudioEvent(BaseModel):
    kind: EventKind
    conversation_id: str
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


EventSink = Callable[[StudioEvent], Awaitable[None]]


def role_of(message: AnyMessage) -> str:
    """The speaker role stored with a message: user, a specialist, or system."""
    if message.type == "human":
        return "user"
    return message.name if message.name and message.name in personas() else "system"


def display_name(role: str) -> str:
    if role == "user":
        return "You"
    if role in personas():
        return personas()[role].name
    return str(team_prompts()["moderator"]["name"])


def message_payload(message: AnyMessage) -> dict[str, Any]:
    """The JSON form of a message for clients (and the messages table)."""
    role = role_of(message)
    extra = dict(message.additional_kwargs or {})
    return {
        "message_id": str(message.id),
        "role": role,
        "speaker": display_name(role),
        "content": message.text,
        "phase": extra.pop("phase", None),
        "kind": extra.pop("kind", "user" if role == "user" else None),
        "interrupted": bool(extra.pop("interrupted", False)),
        "metadata": {k: v for k, v in extra.items() if k != "speaker"},
    }


async def store_message(
    repository: StudioRepository, conversation_id: str, message: AnyMessage
) -> dict[str, Any]:
    """Write a message to the messages table (idempotent on its id); returns its payload."""
    payload = message_payload(message)
    await repository.add_message(conversation_id, **payload)
    return payload

"""How the graph's messages look to clients: the speaker role, its display name, the payload.

The event vocabulary itself is a shared data type (core/events.py); this module knows
the personas, so it belongs to the graph.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AnyMessage

from creative_studio.core.events import EventKind, EventSink, StudioEvent
from creative_studio.graph.prompting import personas, team_prompts
from creative_studio.graph.state import role_of

__all__ = ["EventKind", "EventSink", "StudioEvent", "display_name", "message_payload", "role_of"]


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
        "metadata": {k: v for k, v in extra.items() if k not in ("speaker", "role")},
    }

"""What the conversation runner keeps about a conversation while this process runs it,
and what it accepts from the person (services/runner.py does the running)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from creative_studio.core.errors import InvalidInputError

MAX_MESSAGE_CHARS = 8_000


class Interjected(Exception):
    """Raised inside a run to stop it at the next safe point."""


@dataclass
class Resume:
    value: Any  # Command(resume=...) payload, or None to continue an unfinished run


@dataclass
class Partial:
    role: str
    text: str = ""
    phase: str | None = None
    kind: str | None = None


@dataclass
class Live:
    """In-process bookkeeping of one conversation."""

    pending: list[HumanMessage | Resume] = field(default_factory=list)
    carry: list[AIMessage] = field(default_factory=list)  # interrupted turns for the next input
    worker: asyncio.Task[None] | None = None
    run: asyncio.Task[None] | None = None
    working: set[str] = field(default_factory=set)  # graph tasks in flight
    cancel_pending: bool = False
    partial: dict[str, Partial] = field(default_factory=dict)
    phase: str | None = None
    turn: dict[str, Any] | None = None
    started: bool = False  # a node of the current run started: its input is checkpointed
    # Specialist turns said (stored, announced) since the last run that ended well: a step
    # LangGraph runs again says them as they were (core/events.py REPLAY_KEY).
    said: dict[str, str] = field(default_factory=dict)
    cut: set[str] = field(default_factory=set)  # turns cut mid-stream (CUT_KEY)


def validate_message(text: str) -> str:
    """Refuse empty and oversized messages with a clear reason (nothing is stored)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("The message is empty: tell the team what you would like.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise InvalidInputError(
            f"The message is {len(text):,} characters long; the limit is {MAX_MESSAGE_CHARS:,}. "
            "Shorten it or split it into several messages."
        )
    return text.strip()


def stored_person_message(stored: Mapping[str, Any]) -> HumanMessage:
    """The person's message as the worker that received it queued it for the graph, rebuilt
    from its stored form (a messages row, or the "message" event that announced it).

    The inverse of ``message_payload`` (graph/events.py) for the person's messages: their
    images and any other metadata travel in ``additional_kwargs`` exactly as ``send`` put
    them, so a message handed to another worker (store/inbox.py) or re-queued by a takeover
    reaches the team the same as one the running worker received itself.
    """
    extra = dict(stored.get("metadata") or {})
    if stored.get("phase"):
        extra["phase"] = stored["phase"]
    if stored.get("kind") not in (None, "user"):  # "user" is what message_payload defaults
        extra["kind"] = stored["kind"]
    if stored.get("interrupted"):
        extra["interrupted"] = True
    return HumanMessage(
        content=str(stored["content"]),
        name="user",
        id=str(stored["message_id"]),
        additional_kwargs=extra,
    )


__all__ = [
    "MAX_MESSAGE_CHARS",
    "Interjected",
    "Live",
    "Partial",
    "Resume",
    "stored_person_message",
    "validate_message",
]

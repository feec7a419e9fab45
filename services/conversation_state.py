"""What the conversation runner keeps about a conversation while this process runs it,
and what it accepts from the person (services/runner.py does the running)."""

from __future__ import annotations

import asyncio
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


__all__ = ["MAX_MESSAGE_CHARS", "Interjected", "Live", "Partial", "Resume", "validate_message"]

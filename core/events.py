"""Events a conversation emits while the team works, for the CLI, the API and the web.

One vocabulary for every client: ``token`` (a piece of a turn being written),
``message`` (a complete message, already stored), ``phase``, ``typing`` (who is
composing), ``interrupt`` (a question for the person), ``generation_progress`` /
``generation_done``, ``error`` and ``status`` (running / idle / waiting).

A plain data type at the bottom of the layers: the runner produces events, the event
log stores them, the API and the terminal render them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

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

TokenSink = Callable[[str, str, str], Awaitable[None]]
"""Where a specialist's tokens go as they are written: ``(role, message_id, text)``.

The conversation runner puts one in the run's ``configurable`` under ``TOKEN_SINK_KEY``;
a node that finds it streams its turn there directly instead of through LangGraph's
"messages" stream, which costs several times more per token (docs/benchmarks.md). Without
one (LangGraph Studio, ``langgraph dev``, an embedding app) tokens stream the LangGraph way.
"""

TOKEN_SINK_KEY = "token_sink"


__all__ = ["TOKEN_SINK_KEY", "EventKind", "EventSink", "StudioEvent", "TokenSink"]

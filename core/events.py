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

REPLAY_KEY = "replayed_turns"
"""``configurable`` key: the turns a run already said before its step was checkpointed,
``{message_id: text}``. LangGraph re-runs a step whose checkpoint was lost (the database
went away just after the runner stored the turn, a worker was killed); a specialist whose
turn id is here returns what was said instead of asking its model again, so the history
and the checkpoint hold the turn once, with one text."""

CUT_KEY = "cut_turns"
"""``configurable`` key: ids of turns that streamed but never finished (their run was cut).
Their text stays as it streamed (kept as interrupted); the re-run turn takes a new id."""


__all__ = [
    "CUT_KEY",
    "REPLAY_KEY",
    "TOKEN_SINK_KEY",
    "EventKind",
    "EventSink",
    "StudioEvent",
    "TokenSink",
]

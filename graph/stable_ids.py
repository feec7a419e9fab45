"""Message ids that a replayed step gives again.

LangGraph re-runs a step whose checkpoint was not written (the database went away mid-step,
a worker was killed). The runner stores a node's messages as soon as the node returns, so a
message can be in the messages table while its step is not in the checkpoint; if the re-run
gave it a new id (``add_messages`` draws a uuid4 for a message without one), the transcript
would hold it twice and the checkpoint once. The studio's own lines (moderator notes,
questions, plan and generation results) are deterministic functions of the state, so their
ids are too: derived from the step's input (the newest message's id and the count) and the
message itself. A re-run with the same input writes the same ids, and storing is idempotent.
Messages that come with an id keep it: a specialist's reply carries the id its tokens
streamed under, its task's (nodes/speaking.py ``turn_id``), the same when the step runs
again, and the runner hands a turn it already said back to the re-run node.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid5

from langchain_core.messages import BaseMessage

from creative_studio.graph.state import StudioState

__all__ = ["stable_message_ids", "with_stable_ids"]

_NAMESPACE = UUID("5b0f9a54-7c1e-4c55-9d59-2f4f3a7d6e21")

Node = Callable[..., Awaitable[Any]]


def stable_message_ids(update: Any, state: StudioState, node: str) -> Any:
    """``update`` with an id on every message that had none, the same for the same input."""
    if not isinstance(update, dict) or not update.get("messages"):
        return update
    history = state.get("messages") or []
    anchor = f"{history[-1].id if history else 'start'}|{len(history)}|{node}"
    for index, message in enumerate(update["messages"]):
        if isinstance(message, BaseMessage) and not message.id:
            seed = f"{anchor}|{index}|{message.type}|{message.text}"
            message.id = str(uuid5(_NAMESPACE, seed))
    return update


def with_stable_ids(name: str, node: Node) -> Node:
    """The node, its messages given ids that a re-run of the same step gives again."""

    @functools.wraps(node)  # LangGraph reads the node's signature (config, runtime) through it
    async def run(state: StudioState, *args: Any, **kwargs: Any) -> Any:
        return stable_message_ids(await node(state, *args, **kwargs), state, name)

    return run

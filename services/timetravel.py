"""Time travel: list a conversation's checkpoints, read the state at one, fork from one.

A fork is a new conversation (a new LangGraph thread) that starts from a past
checkpoint of the original with the person's message at that point edited. The
original thread is never written to, so its history stays intact and both branches
can be continued independently; the fork records its parent and the checkpoint it
came from. (LangGraph's in-thread forks are still available to Studio users through
``update_state``; a separate thread keeps the studio's conversation list simple.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot
from pydantic import BaseModel

from creative_studio.core.errors import InvalidStateError, NotFoundError
from creative_studio.graph.events import message_payload
from creative_studio.services.transcript import store_message
from creative_studio.store.repository import ConversationRecord, StudioRepository

Graph = CompiledStateGraph[Any, Any, Any, Any]


class CheckpointInfo(BaseModel):
    """One point in a conversation's history, as a person would want to pick it."""

    checkpoint_id: str
    parent_checkpoint_id: str | None
    created_at: datetime | None
    step: int | None
    phase: str | None
    next: list[str]
    message_count: int
    last_message: dict[str, Any] | None
    last_user_message: str | None


def _config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _last_user(messages: list[AnyMessage]) -> AnyMessage | None:
    return next((m for m in reversed(messages) if m.type == "human"), None)


def describe(snapshot: StateSnapshot) -> CheckpointInfo:
    values = snapshot.values or {}
    messages: list[AnyMessage] = values.get("messages", [])
    parent = (snapshot.parent_config or {}).get("configurable", {})
    user = _last_user(messages)
    return CheckpointInfo(
        checkpoint_id=str(snapshot.config["configurable"]["checkpoint_id"]),
        parent_checkpoint_id=parent.get("checkpoint_id"),
        created_at=datetime.fromisoformat(snapshot.created_at) if snapshot.created_at else None,
        step=(snapshot.metadata or {}).get("step"),
        phase=values.get("phase"),
        next=list(snapshot.next),
        message_count=len(messages),
        last_message=message_payload(messages[-1]) if messages else None,
        last_user_message=user.text if user else None,
    )


async def list_checkpoints(
    graph: Graph, repository: StudioRepository, conversation_id: str, *, limit: int = 100
) -> list[CheckpointInfo]:
    """Newest first. Raises NotFoundError for an unknown conversation."""
    conversation = await repository.get_conversation(conversation_id)
    history = graph.aget_state_history(_config(str(conversation.id)), limit=limit)
    return [describe(snapshot) async for snapshot in history]


async def state_at(
    graph: Graph, repository: StudioRepository, conversation_id: str, checkpoint_id: str
) -> StateSnapshot:
    conversation = await repository.get_conversation(conversation_id)
    snapshot = await graph.aget_state(_config(str(conversation.id), checkpoint_id))
    found = snapshot.config.get("configurable", {}).get("checkpoint_id")
    if not snapshot.values or found != checkpoint_id:
        raise NotFoundError(f"Conversation {conversation_id} has no checkpoint {checkpoint_id!r}.")
    return snapshot


def _forked_values(values: dict[str, Any], edited: HumanMessage) -> dict[str, Any]:
    """The past state with its last user message replaced by ``edited`` (and what followed cut)."""
    messages: list[AnyMessage] = list(values.get("messages", []))
    original = _last_user(messages)
    if original is None:
        raise InvalidStateError("That checkpoint has no message from you to edit.")
    index = max(i for i, m in enumerate(messages) if m.id == original.id)
    kept = messages[:index]
    forked = {**values, "messages": [*kept, edited]}
    forked.update(current=None, agenda=[], question=None, awaiting_person=False)
    handled = [i for i in values.get("handled_user_ids") or [] if i != original.id]
    forked["handled_user_ids"] = handled
    if not any(m.type == "human" for m in kept):
        # The very first request was edited: the team starts over from a clean brief.
        for key in ("brief", "plan", "verdict", "consensus", "generation", "phase", "round"):
            forked.pop(key, None)
        forked.update(clarifying_asked=False, turn_count=0, send_backs=0)
    return forked


async def fork(
    graph: Graph,
    repository: StudioRepository,
    conversation_id: str,
    checkpoint_id: str,
    edited_text: str,
) -> ConversationRecord:
    """A new conversation from ``checkpoint_id`` with the person's message edited.

    The new thread's state is written as if the consensus node had just run, so the
    next run starts at the router, which takes in the edited message like any new one.
    """
    snapshot = await state_at(graph, repository, conversation_id, checkpoint_id)
    original = await repository.get_conversation(conversation_id)
    edited = HumanMessage(content=edited_text, name="user", id=str(uuid4()))
    values = _forked_values(dict(snapshot.values), edited)
    branch = await repository.create_conversation(
        original.session_id,
        title=f"{original.title or 'Conversation'} (fork)",
        parent_id=original.id,
        forked_from_checkpoint=checkpoint_id,
    )
    await graph.aupdate_state(_config(str(branch.id)), values, as_node="consensus")
    for message in values["messages"]:
        await store_message(repository, str(branch.id), message)
    return branch

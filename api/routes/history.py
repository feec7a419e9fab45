"""Time travel: a conversation's checkpoints, the state at one, and forks."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, status
from langchain_core.messages import AnyMessage, BaseMessage

from creative_studio.api.deps import StudioDep
from creative_studio.api.schemas import CheckpointState, ConversationOut, ForkIn
from creative_studio.graph.events import message_payload
from creative_studio.services.runner import validate_message
from creative_studio.services.timetravel import CheckpointInfo, fork, list_checkpoints, state_at

router = APIRouter(prefix="/conversations", tags=["history"])


@router.get("/{conversation_id}/checkpoints")
async def checkpoints(
    conversation_id: str,
    studio: StudioDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[CheckpointInfo]:
    """Newest first, each with its phase and last message."""
    return await list_checkpoints(
        studio.runner.graph, studio.repository, conversation_id, limit=limit
    )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    out["messages"] = [
        message_payload(cast(AnyMessage, m))
        for m in values.get("messages", [])
        if isinstance(m, BaseMessage)
    ]
    return out


@router.get("/{conversation_id}/checkpoints/{checkpoint_id}")
async def checkpoint_state(
    conversation_id: str, checkpoint_id: str, studio: StudioDep
) -> CheckpointState:
    snapshot = await state_at(
        studio.runner.graph, studio.repository, conversation_id, checkpoint_id
    )
    return CheckpointState(
        checkpoint_id=checkpoint_id,
        values=_jsonable(dict(snapshot.values)),
        next=list(snapshot.next),
    )


@router.post("/{conversation_id}/fork", status_code=status.HTTP_201_CREATED)
async def fork_conversation(
    conversation_id: str, body: ForkIn, studio: StudioDep
) -> ConversationOut:
    """A new conversation from a past checkpoint, with your message there edited; the team
    answers it at once. The original conversation is left as it was."""
    text = validate_message(body.content)
    branch = await fork(
        studio.runner.graph, studio.repository, conversation_id, body.checkpoint_id, text
    )
    studio.touch(str(branch.id))
    await studio.runner.resume(str(branch.id))
    return ConversationOut.model_validate(branch.model_dump())

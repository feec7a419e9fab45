"""Chat: post messages, follow the conversation live (SSE), answer the team, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, status

from creative_studio.api.deps import Studio, StudioDep
from creative_studio.api.routes.images import resolve_images
from creative_studio.api.schemas import (
    MAX_PAGE,
    Accepted,
    Answer,
    ConversationDetail,
    EventOut,
    MessageIn,
    MessageOut,
    RunState,
)
from creative_studio.api.sse import EventStream
from creative_studio.core.errors import InvalidInputError
from creative_studio.services.generation_previews import with_previews

router = APIRouter(prefix="/conversations", tags=["chat"])


@router.get("/{conversation_id}")
async def get_conversation(conversation_id: str, studio: StudioDep) -> ConversationDetail:
    """The conversation with where the team is: phase, open question, plan, generation."""
    record = await studio.repository.get_conversation(conversation_id)
    cid = str(record.id)
    snapshot = await studio.runner.graph.aget_state({"configurable": {"thread_id": cid}})
    values: dict[str, Any] = snapshot.values or {}
    question = snapshot.interrupts[0].value if snapshot.interrupts else None
    return ConversationDetail(
        **record.model_dump(),
        phase=values.get("phase"),
        # Running here, or on the worker that holds its lease (several workers).
        running=studio.runner.is_running(cid) or await studio.runner.running_elsewhere(cid),
        question=question,
        plan=values.get("plan"),
        generation=_linked(studio, values.get("generation")),
        brief=values.get("brief"),
        last_event_id=await studio.events.last_id(cid),
    )


def _linked(studio: Studio, generation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The generation with its outputs at the studio's own URLs, as the event stream has them
    (never the storage's address: a local file path, or a signed link that expires)."""
    if not generation or not generation.get("outputs") or not generation.get("generation_id"):
        return generation
    outputs = studio.outputs.rewrite(str(generation["generation_id"]), generation["outputs"])
    return {**generation, "outputs": outputs}


@router.post("/{conversation_id}/messages", status_code=status.HTTP_202_ACCEPTED)
async def post_message(conversation_id: str, body: MessageIn, studio: StudioDep) -> Accepted:
    """Returns at once; the team answers on the event stream. A message sent while the team
    is talking interrupts it (it wins); several in a row are handled in order. ``images``
    (refs from POST /sessions/{id}/images, or a result's output path) give the team a
    starting image: the message's ``metadata.images`` says which."""
    record = await studio.repository.get_conversation(conversation_id)
    cid = str(record.id)
    # Images given with the message (uploads or results): checked before the team hears.
    images = await resolve_images(studio, str(record.session_id), body.images)
    busy = studio.runner.is_running(cid)
    await studio.person_is_back(cid)
    stored = await studio.runner.send(cid, body.content, images=images)
    return Accepted(message=stored, queued=busy)


@router.get("/{conversation_id}/messages")
async def list_messages(
    conversation_id: str,
    studio: StudioDep,
    after_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[MessageOut]:
    """Complete messages in order; ``after_seq`` pages on (for clients without SSE)."""
    records = await studio.repository.list_messages(
        conversation_id, after_seq=after_seq, limit=limit
    )
    return [MessageOut.model_validate(r.model_dump()) for r in records]


def _last_event_id(header: str | None, query: int | None) -> int:
    if query is not None:
        return query
    if header is None or not header.strip():
        return 0
    try:
        # "123.000002" is a live preview frame's id (never stored): resume after event 123.
        value = int(header.strip().split(".", 1)[0])
    except ValueError:
        raise InvalidInputError(f"Last-Event-ID must be an integer, got {header[:40]!r}.") from None
    if value < 0:
        raise InvalidInputError("Last-Event-ID cannot be negative.")
    return value


@router.get(
    "/{conversation_id}/events",
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}},
)
async def stream_events(
    conversation_id: str,
    studio: StudioDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="Same as Last-Event-ID.")
    ] = None,
) -> EventStream:
    """The conversation as server-sent events: token, message, phase, typing, interrupt,
    generation_progress, generation_done, error, status. Each has an increasing ``id``;
    reconnect with ``Last-Event-ID`` to receive exactly what was missed. Live preview
    frames (``generation_progress`` with ``preview``) are not stored: they have ids like
    ``123.000002`` and are only sent while they are current."""
    record = await studio.repository.get_conversation(conversation_id)
    cid = str(record.id)
    since = _last_event_id(last_event_id, after)
    await studio.events.check_last_id(cid, since)
    await studio.person_is_back(cid)

    caught_up = await studio.events.last_id(cid)

    # An open stream counts as the person being here: the idle watch asks the event log
    # who is followed (services/presence.py), so nothing is touched per event.
    return EventStream(
        with_previews(
            lambda waker: studio.events.follow_batches(cid, since, waker=waker),
            studio.generations.previews,
            cid,
            since=since,
            caught_up=caught_up,
            ping=15,
        )
    )


@router.get("/{conversation_id}/events/log")
async def event_log(
    conversation_id: str,
    studio: StudioDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> list[EventOut]:
    """The same events as the stream, as a page of JSON (polling clients)."""
    record = await studio.repository.get_conversation(conversation_id)
    await studio.events.check_last_id(str(record.id), after)
    return [
        EventOut(id=e.id, kind=e.kind, data=e.data, created_at=e.created_at)
        for e in await studio.events.read(str(record.id), after, limit)
    ]


@router.post("/{conversation_id}/answer", status_code=status.HTTP_202_ACCEPTED)
async def answer(conversation_id: str, body: Answer, studio: StudioDep) -> RunState:
    """Answer the team's open question: ``text``/``choice`` for "which option?",
    ``approved`` (and optional ``text`` feedback) for "shall we generate this plan?"."""
    record = await studio.repository.get_conversation(conversation_id)
    payload = body.model_dump(exclude_none=True)
    if not payload:
        raise InvalidInputError("Send text, choice or approved to answer the team's question.")
    await studio.person_is_back(str(record.id))
    await studio.runner.resume(str(record.id), payload)
    return RunState(conversation_id=record.id, running=True)


@router.post("/{conversation_id}/cancel")
async def cancel(conversation_id: str, studio: StudioDep) -> RunState:
    """Stop the team at the next safe point; what was said so far stays. A generation of the
    conversation stops too (in ComfyUI), and the conversation leaves "generating" before
    this answers, with "Generation cancelled." in the chat. Sent to a worker that does not run
    the conversation, the cancel is forwarded to the one that does, and this answers once it
    is on its way (the status event tells when the team stopped)."""
    record = await studio.repository.get_conversation(conversation_id)
    cancelled = await studio.runner.cancel(str(record.id), stop_generation=True)
    if not cancelled:
        cancelled = await studio.runner.cancel_elsewhere(str(record.id))
    return RunState(conversation_id=record.id, running=False, cancelled=cancelled)


@router.post("/{conversation_id}/resume", status_code=status.HTTP_202_ACCEPTED)
async def resume(conversation_id: str, studio: StudioDep) -> RunState:
    """Continue a run that was cancelled, paused or cut short by a crash."""
    record = await studio.repository.get_conversation(conversation_id)
    cid = str(record.id)
    await studio.idle.unpause(cid)
    await studio.runner.resume(cid)
    return RunState(conversation_id=record.id, running=True)

"""Sessions: create, list, read, rename, delete, and their settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from creative_studio.api.deps import StudioDep
from creative_studio.api.schemas import (
    MAX_PAGE,
    ConversationCreate,
    ConversationOut,
    Preferences,
    SessionCreate,
    SessionOut,
    SessionPage,
    SessionRename,
    SettingsOut,
    SettingsUpdate,
)
from creative_studio.graph.configuration import Configuration
from creative_studio.tools.models import EMBEDDED_NOTE, AssignmentProvider, embedded_name

router = APIRouter(prefix="/sessions", tags=["sessions"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_session(body: SessionCreate, studio: StudioDep) -> SessionOut:
    record = await studio.repository.create_session(
        body.name,
        model_assignments=body.model_assignments,
        preferences=body.preferences.model_dump(exclude_defaults=True),
    )
    return SessionOut.model_validate(record.model_dump())


@router.get("")
async def list_sessions(
    studio: StudioDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> SessionPage:
    records = await studio.repository.list_sessions(limit=limit, offset=offset)
    return SessionPage(
        items=[SessionOut.model_validate(r.model_dump()) for r in records],
        limit=limit,
        offset=offset,
    )


@router.get("/{session_id}")
async def get_session(session_id: str, studio: StudioDep) -> SessionOut:
    return SessionOut.model_validate((await studio.repository.get_session(session_id)).model_dump())


@router.patch("/{session_id}")
async def rename_session(session_id: str, body: SessionRename, studio: StudioDep) -> SessionOut:
    record = await studio.repository.rename_session(session_id, body.name)
    return SessionOut.model_validate(record.model_dump())


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(session_id: str, studio: StudioDep) -> None:
    """Deletes the session with its conversations, messages, generations and stored files."""
    session = await studio.repository.get_session(session_id)
    for conversation in await studio.repository.list_conversations(session.id):
        await studio.runner.cancel(str(conversation.id))
    await studio.delete_session_files(str(session.id))
    await studio.repository.delete_session(session.id)


async def _settings_out(studio: StudioDep, session_id: str) -> SettingsOut:
    session = await studio.repository.get_session(session_id)
    preferences = Preferences.model_validate(session.preferences)
    config = Configuration.model_validate(
        {
            **preferences.model_dump(include=set(Configuration.model_fields)),
            # The server's defaults per role (serve --assign) under the session's own.
            "model_assignments": {**studio.settings.model_assignments, **session.model_assignments},
        }
    )
    notes = []
    resolved: dict[str, str] = {}
    if isinstance(studio.provider, AssignmentProvider):
        await studio.provider.ensure_ready()
        resolved = studio.provider.assignments(config)
        if any(embedded_name(model) for model in resolved.values()):
            notes.append(f"Some roles use the embedded model: {EMBEDDED_NOTE}.")
    return SettingsOut(
        model_assignments=session.model_assignments,
        resolved_models=resolved,
        preferences=preferences,
        notes=notes,
    )


@router.get("/{session_id}/settings")
async def get_settings(session_id: str, studio: StudioDep) -> SettingsOut:
    return await _settings_out(studio, session_id)


@router.put("/{session_id}/settings")
async def update_settings(session_id: str, body: SettingsUpdate, studio: StudioDep) -> SettingsOut:
    """Model assignments are replaced as a whole; preferences are replaced when given."""
    session = await studio.repository.get_session(session_id)
    await studio.repository.update_session_settings(
        session.id,
        model_assignments=body.model_assignments,
        preferences=None,
    )
    if body.preferences is not None:
        await studio.repository.replace_preferences(
            session.id, body.preferences.model_dump(exclude_defaults=True)
        )
    return await _settings_out(studio, session_id)


@router.post("/{session_id}/conversations", status_code=status.HTTP_201_CREATED)
async def create_conversation(
    session_id: str, body: ConversationCreate, studio: StudioDep
) -> ConversationOut:
    record = await studio.repository.create_conversation(
        session_id, title=body.title or (body.message or "")[:80] or None
    )
    if body.message:
        studio.touch(str(record.id))
        await studio.runner.send(str(record.id), body.message)
    return ConversationOut.model_validate(record.model_dump())


@router.get("/{session_id}/conversations")
async def list_conversations(session_id: str, studio: StudioDep) -> list[ConversationOut]:
    records = await studio.repository.list_conversations(session_id)
    return [ConversationOut.model_validate(r.model_dump()) for r in records]

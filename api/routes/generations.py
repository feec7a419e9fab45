"""Generations: the gallery across sessions, one generation's status, outputs, cancel, retry."""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import Response

from creative_studio.api.deps import Studio, StudioDep
from creative_studio.api.schemas import MAX_PAGE, GenerationOut, GenerationPage
from creative_studio.core.errors import InvalidStateError, NotFoundError
from creative_studio.services.generation import GenerationSettings
from creative_studio.store.repository import GenerationRecord
from creative_studio.tools.storage import object_path
from creative_studio.workflows.plan import TechnicalPlan

router = APIRouter(prefix="/generations", tags=["generations"])


def _out(studio: Studio, record: GenerationRecord) -> GenerationOut:
    data = record.model_dump()
    data["outputs"] = studio.outputs.rewrite(str(record.id), list(record.outputs))
    return GenerationOut.model_validate(data)


@router.get("")
async def list_generations(
    studio: StudioDep,
    session_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> GenerationPage:
    """Newest first; ``session_id`` filters to one session (the gallery's filter)."""
    records = await studio.repository.list_generations(
        session_id=session_id, limit=limit, offset=offset
    )
    return GenerationPage(items=[_out(studio, r) for r in records], limit=limit, offset=offset)


@router.get("/{generation_id}")
async def get_generation(generation_id: str, studio: StudioDep) -> GenerationOut:
    return _out(studio, await studio.repository.get_generation(generation_id))


@router.get(
    "/{generation_id}/outputs/{filename}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/webp": {}, "video/mp4": {}}}},
)
async def get_output(generation_id: str, filename: str, studio: StudioDep) -> Response:
    """An output file, from local storage or Supabase Storage."""
    record = await studio.repository.get_generation(generation_id)
    known = {str(o.get("filename")): o for o in record.outputs if isinstance(o, dict)}
    if filename not in known:
        raise NotFoundError(f"Generation {generation_id} has no output named {filename!r}.")
    output = known[filename]
    path = str(output.get("path") or object_path(str(record.session_id), str(record.id), filename))
    data = await studio.storage.get(path)
    media = str(
        output.get("content_type")
        or mimetypes.guess_type(filename)[0]
        or "application/octet-stream"
    )
    return Response(
        data,
        media_type=media,
        headers={
            "Cache-Control": "private, max-age=86400, immutable",
            "Content-Disposition": f'inline; filename="{filename}"',
        },
    )


@router.post("/{generation_id}/cancel")
async def cancel_generation(generation_id: str, studio: StudioDep) -> GenerationOut:
    """Queue delete while pending, a targeted interrupt while running; answers with the
    generation as it is after the cancel ("cancelled")."""
    record = await studio.repository.get_generation(generation_id)
    if record.status in ("complete", "failed", "cancelled"):
        raise InvalidStateError(f"Generation {generation_id} has already ended ({record.status}).")
    await studio.generations.cancel(str(record.id))
    return _out(studio, await studio.repository.get_generation(record.id))


@router.post("/{generation_id}/retry", status_code=status.HTTP_202_ACCEPTED)
async def retry_generation(generation_id: str, studio: StudioDep) -> GenerationOut:
    """Run the same plan again as a new generation (same seed, same settings)."""
    record = await studio.repository.get_generation(generation_id)
    if record.status in ("queued", "running"):
        raise InvalidStateError(f"Generation {generation_id} is still {record.status}.")
    plan = TechnicalPlan.model_validate(record.parameters.get("plan") or {})
    settings = GenerationSettings.model_validate(record.parameters.get("settings") or {})
    job = await studio.generations.submit(
        session_id=str(record.session_id),
        conversation_id=str(record.conversation_id) if record.conversation_id else None,
        plan=plan,
        settings=settings,
        init_image=record.parameters.get("init_image"),
        explicit=record.parameters.get("explicit"),
    )
    return _out(studio, await studio.repository.get_generation(job.generation_id))

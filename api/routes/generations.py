"""Generations: the gallery across sessions, one generation's status and outputs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from creative_studio.api.deps import StudioDep
from creative_studio.api.schemas import MAX_PAGE, GenerationOut, GenerationPage

router = APIRouter(prefix="/generations", tags=["generations"])


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
    return GenerationPage(
        items=[GenerationOut.model_validate(r.model_dump()) for r in records],
        limit=limit,
        offset=offset,
    )


@router.get("/{generation_id}")
async def get_generation(generation_id: str, studio: StudioDep) -> GenerationOut:
    return GenerationOut.model_validate(
        (await studio.repository.get_generation(generation_id)).model_dump()
    )

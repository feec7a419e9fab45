"""Models: what Ollama has installed, what `auto` picks, and pulling a model with progress."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from creative_studio.api.deps import StudioDep
from creative_studio.api.schemas import InstalledModelOut, ModelsOut, PullIn
from creative_studio.core.errors import StudioError
from creative_studio.tools.embedded import embedded_available
from creative_studio.tools.models import EMBEDDED_NOTE
from creative_studio.tools.ollama import OllamaService, resolve_auto

router = APIRouter(prefix="/models", tags=["models"])


@router.get("")
async def list_models(studio: StudioDep) -> ModelsOut:
    service = OllamaService(studio.settings.ollama_host)
    status = await service.status()
    return ModelsOut(
        ollama_host=status.host,
        ollama_reachable=status.reachable,
        ollama_error=status.error,
        installed=[
            InstalledModelOut(
                assignment=f"ollama:{m.name}",
                name=m.name,
                parameter_size=m.parameter_size,
                quantization=m.quantization,
                size=m.size,
            )
            for m in status.models
        ],
        embedded_available=embedded_available(),
        embedded_note=EMBEDDED_NOTE,
        auto=(await resolve_auto(studio.settings.ollama_host))[0],
    )


@router.post("/pull", response_class=StreamingResponse)
async def pull_model(body: PullIn, studio: StudioDep) -> StreamingResponse:
    """Download a model with Ollama; the response is NDJSON progress lines, the last one
    ``{"status": "success"}`` or ``{"status": "error", "error": ...}``."""
    service = OllamaService(studio.settings.ollama_host)
    await service.installed()  # fail fast (503) when Ollama is not there

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for step in service.pull(body.name):
                line = {**step.model_dump(), "fraction": step.fraction}
                yield (json.dumps(line) + "\n").encode()
        except StudioError as error:
            yield (json.dumps({"status": "error", "error": error.message}) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")

"""Health: is the database there, does Ollama answer, does ComfyUI answer."""

from __future__ import annotations

import httpx
from fastapi import APIRouter

from creative_studio.api.deps import StudioDep
from creative_studio.api.schemas import ComponentHealth, Health
from creative_studio.tools.ollama import OllamaService

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(studio: StudioDep) -> Health:
    try:
        async with studio.database.pool.connection(timeout=5) as conn:
            await conn.execute("select 1")
        database = ComponentHealth(
            ok=True, detail="embedded PostgreSQL" if studio.database.embedded else "DATABASE_URL"
        )
    except Exception as error:
        database = ComponentHealth(ok=False, detail=str(error)[:300])
    status = await OllamaService(studio.settings.ollama_host, timeout=2).status()
    ollama = ComponentHealth(
        ok=status.reachable,
        detail=f"{len(status.models)} models at {status.host}"
        if status.reachable
        else status.error,
    )
    url = studio.settings.comfyui_url.rstrip("/")
    waiting = studio.generations.status()["waiting"]
    queued = f"; {waiting} generation(s) wait for it" if waiting else ""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.get(f"{url}/system_stats")
            response.raise_for_status()
        comfyui = ComponentHealth(ok=True, detail=f"ComfyUI at {url}{queued}")
    except httpx.HTTPError:
        comfyui = ComponentHealth(
            ok=False,
            detail=f"cannot reach ComfyUI at {url}; plans are queued until it answers{queued}",
        )
    return Health(database=database, ollama=ollama, comfyui=comfyui)

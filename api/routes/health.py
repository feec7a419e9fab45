"""Health: is the database there, does Ollama answer, does ComfyUI answer.

``/api/health`` asks each of them (a query, a request to Ollama and one to ComfyUI), for a
person or a dashboard. ``/api/health/live`` is for load balancers and container health
checks, which ask every couple of seconds: it asks nobody, and answers from what the
database monitor last saw.
"""

from __future__ import annotations

import httpx
from fastapi import APIRouter

from creative_studio.api.deps import Studio, StudioDep
from creative_studio.api.schemas import ComponentHealth, Health, Liveness
from creative_studio.core.errors import DatabaseUnavailableError, StudioError
from creative_studio.store.availability import describe
from creative_studio.tools.ollama import OllamaService
from creative_studio.tools.tls import shared_tls

router = APIRouter(tags=["health"])
live_router = APIRouter(tags=["health"])
"""Without the API token: a load balancer checks it, and it tells nothing but "serving"."""


async def database_health(studio: Studio) -> ComponentHealth:
    """Up (with which server), or down with the reason; never waits long, never raises."""
    database = studio.database
    kind = "embedded PostgreSQL" if database.embedded else "DATABASE_URL"
    monitor = database.monitor
    if not monitor.up:
        return ComponentHealth(ok=False, detail=f"{kind} is unavailable: {monitor.reason}")
    try:
        async with database.pool.connection(timeout=5) as conn:
            await conn.execute("select 1")
    except Exception as error:
        monitor.suspect()
        reason = error.message if isinstance(error, StudioError) else describe(error)
        return ComponentHealth(ok=False, detail=f"{kind} is unavailable: {reason}"[:400])
    detail = kind
    if monitor.last_outage_s is not None:
        restarted = f", restarted {monitor.restarts}x" if monitor.restarts else ""
        detail += (
            f" (back after {monitor.outages} outage(s){restarted}; "
            f"the last lasted {monitor.last_outage_s:.1f} s)"
        )
    return ComponentHealth(ok=True, detail=detail)


@router.get("/health")
async def health(studio: StudioDep) -> Health:
    database = await database_health(studio)
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
        async with httpx.AsyncClient(timeout=2, verify=await shared_tls()) as client:
            response = await client.get(f"{url}/system_stats")
            response.raise_for_status()
        comfyui = ComponentHealth(ok=True, detail=f"ComfyUI at {url}{queued}")
    except httpx.HTTPError:
        comfyui = ComponentHealth(
            ok=False,
            detail=f"cannot reach ComfyUI at {url}; plans are queued until it answers{queued}",
        )
    return Health(database=database, ollama=ollama, comfyui=comfyui)


@live_router.get("/health/live")
async def live(studio: StudioDep) -> Liveness:
    """200 while this worker serves and its database is up (as its monitor saw it last);
    503 with the usual error body while the database is away."""
    monitor = studio.database.monitor
    if not monitor.up:
        raise DatabaseUnavailableError(f"The database is unavailable: {monitor.reason}")
    return Liveness(ok=True, database="embedded" if studio.database.embedded else "external")

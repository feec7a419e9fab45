"""Stopping generations precisely: queue delete while pending, targeted interrupt while running.

The generation service (services/generation.py) owns the jobs; this module is what it
does when the person says stop, kept apart because stopping has its own rules: the row
says "cancelled" as soon as the person asked (ComfyUI stops at its next step or node
boundary), a run that still finishes stays cancelled, and a generation of a previous
process (no job here) is stopped through its row and the server that ran it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from creative_studio.core.errors import StudioError
from creative_studio.services.generation_recovery import FINAL
from creative_studio.tools.comfyui import ComfyUIError
from creative_studio.workflows.run import GenerationOutcome

if TYPE_CHECKING:
    from creative_studio.services.generation import GenerationService

__all__ = ["cancel", "cancel_conversation"]


async def cancel(service: GenerationService, generation_id: str) -> bool:
    """Stop a generation: queue delete while pending, targeted interrupt while running.

    The row says "cancelled" when this returns (the person decided; ComfyUI stops at its
    next step or node boundary), and a run that still finishes stays cancelled.
    """
    job = service._jobs.get(str(generation_id))
    if job is None:
        row = await service.repository.get_generation(generation_id)
        if row.status in FINAL:
            return False
        if row.prompt_id:
            with contextlib.suppress(ComfyUIError):
                await service.pool.client_for(row.server_url).cancel(row.prompt_id)
        await service.repository.update_generation(generation_id, status="cancelled")
        return True
    if job.outcome is not None and job.outcome.status != "queued":
        return False
    job.cancel_requested = True
    if job.generation_id in service._parked:
        service._parked.pop(job.generation_id)
        outcome = await service._finish(job, "cancelled", error=None)
        job.task = None
        job.outcome = outcome
        return True
    async with job.db_lock:
        if job.tracker is not None:
            job.tracker.closed = True  # no progress write may say "running" again
        with contextlib.suppress(StudioError):
            await service.repository.update_generation(job.generation_id, status="cancelled")
    if job.prompt_id:
        with contextlib.suppress(ComfyUIError):
            await service.pool.client_for(job.server_url).cancel(job.prompt_id)
    return True


async def cancel_conversation(
    service: GenerationService, conversation_id: str
) -> list[GenerationOutcome]:
    """Stop every generation of a conversation that has not ended (their outcomes)."""
    stopped = []
    for job in list(service._jobs.values()):
        if job.conversation_id != str(conversation_id) or job.cancel_requested:
            continue
        if job.outcome is not None and job.outcome.status != "queued":
            continue
        if await service.cancel(job.generation_id):
            stopped.append(
                GenerationOutcome(job.generation_id, "cancelled", job.plan, notes=list(job.notes))
            )
    return stopped

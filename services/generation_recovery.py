"""Generations that outlive a process or a node: rebuilt from their rows.

Deterministic prompt ids make picking them up safe: a run that finished meanwhile is read
from /history, one still in ComfyUI's queue is followed, a lost one is queued again. The
generation service (services/generation.py) calls these at start (``resumable``) and when
a graph node asks again for a generation it started before (``find_row``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from creative_studio.core.errors import StudioError
from creative_studio.services.generation_job import _Job
from creative_studio.store.repository import GenerationRecord, StudioRepository
from creative_studio.workflows.plan import TechnicalPlan
from creative_studio.workflows.run import GenerationOutcome, GenerationSettings, OutcomeStatus

__all__ = ["FINAL", "find_row", "job_from_row", "outcome_of_row", "resumable"]

FINAL = ("complete", "failed", "cancelled")
_RESUME_SCAN = 200  # newest rows looked at when a process starts


def job_from_row(row: GenerationRecord) -> _Job:
    """The in-process job of a stored generation (plan, settings and choices as submitted)."""
    parameters: dict[str, Any] = row.parameters or {}
    explicit = parameters.get("explicit")
    return _Job(
        generation_id=str(row.id),
        session_id=str(row.session_id),
        conversation_id=str(row.conversation_id) if row.conversation_id else None,
        plan=TechnicalPlan.model_validate(parameters["plan"]),
        settings=GenerationSettings.model_validate(parameters.get("settings") or {}),
        init_image=parameters.get("init_image"),
        request_key=parameters.get("request_key"),
        server_url=row.server_url,
        explicit=tuple(explicit) if isinstance(explicit, list) else None,
    )


def outcome_of_row(job: _Job, row: GenerationRecord) -> GenerationOutcome:
    final: OutcomeStatus = row.status  # type: ignore[assignment]
    return GenerationOutcome(
        str(row.id),
        final,
        job.plan,
        outputs=list(row.outputs),
        error=row.error,
        template=row.template,
    )


async def resumable(repository: StudioRepository, known: set[str]) -> list[_Job]:
    """Generations a previous process left queued or running (and this one does not run)."""
    try:
        rows = await repository.list_generations(limit=_RESUME_SCAN)
    except StudioError:
        return []
    jobs = []
    for row in rows:
        if row.status in FINAL or str(row.id) in known:
            continue
        if not (row.parameters or {}).get("plan"):
            continue
        job = job_from_row(row)
        job.picked_up = "running" if row.status == "running" else "queued"
        jobs.append(job)
    return jobs


async def find_row(
    repository: StudioRepository, session_id: str, request_key: str
) -> GenerationRecord | None:
    """The stored generation a graph node started under ``request_key``, if any."""
    with contextlib.suppress(StudioError):
        for row in await repository.list_generations(session_id, limit=50):
            if (row.parameters or {}).get("request_key") == request_key:
                return row
    return None

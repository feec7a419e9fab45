"""One generation's attempts: build, queue, follow, recover, store - and how it ends.

The generation service (services/generation.py) owns the jobs and their bookkeeping; this
module is the loop it runs for each: every attempt builds and validates the workflow for
the connected server (never queues an unvalidated one) under its own deterministic
prompt_id, follows the run, and recovers by itself within ``max_generation_retries``:
out of memory -> smaller batch / frames / size; a model the server no longer has ->
refresh what it has and rebuild; ComfyUI unreachable -> park (status queued) until the
retry loop sees it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any, Literal

from creative_studio.core.errors import StudioError
from creative_studio.services.generation_job import _Job, _Progress, prompt_id_for
from creative_studio.store.records import UNSET
from creative_studio.store.workflow_store import UserWorkflowStore, workflow_name
from creative_studio.tools.comfyui import (
    ComfyUIClient,
    ComfyUIError,
    ComfyUIRejectedError,
    ComfyUITimeoutError,
    ComfyUIUnreachableError,
    OutputRef,
)
from creative_studio.tools.comfyui_pool import Fit
from creative_studio.tools.storage import object_path
from creative_studio.workflows.builder import BuiltWorkflow, build, reduce_for_memory
from creative_studio.workflows.catalog import Catalog
from creative_studio.workflows.plan import TechnicalPlan
from creative_studio.workflows.run import GenerationOutcome

if TYPE_CHECKING:
    from creative_studio.services.generation import GenerationService

log = logging.getLogger(__name__)

__all__ = ["execute", "finish", "park"]

_VIDEO_EXTENSIONS = (".webp", ".gif", ".mp4", ".webm", ".mov", ".apng")


async def unload_ollama(service: GenerationService, job: _Job) -> None:
    host = job.ollama_host or service.ollama_host
    if not job.unload_models or not host:
        return
    from creative_studio.tools.ollama import OllamaService

    ollama = OllamaService(host)
    await asyncio.gather(*(ollama.unload(name) for name in job.unload_models))


async def store_outputs(
    service: GenerationService,
    job: _Job,
    refs: list[OutputRef],
    client: ComfyUIClient | None = None,
) -> list[dict[str, Any]]:
    """Fetch the outputs from the server that made them (``client``) and store them."""
    client = client or service.client
    stored: list[dict[str, Any]] = []
    for ref in refs:
        data, content_type = await client.view(ref.filename, ref.subfolder, ref.type)
        path = object_path(job.session_id, job.generation_id, ref.filename)
        saved = await service.storage.put(path, data, content_type.split(";")[0])
        is_video = ref.animated or ref.filename.lower().endswith(_VIDEO_EXTENSIONS[1:])
        stored.append(
            {
                **saved.as_dict(),
                "kind": "video" if is_video else "image",
                "node_id": ref.node_id,
                "comfyui": {
                    "filename": ref.filename,
                    "subfolder": ref.subfolder,
                    "type": ref.type,
                },
            }
        )
    return stored


async def templates_for(service: GenerationService, plan: TechnicalPlan) -> Catalog:
    """The templates a plan builds from: ``custom:<name>`` is read from the store.

    Read at every attempt (one indexed row), so a workflow deleted meanwhile is refused
    with a clear message instead of running from a stale copy.
    """
    if workflow_name(plan.template) is None:
        return service.templates
    store = UserWorkflowStore(service.repository.pool)
    return await store.catalog_for(plan.template, service.templates)


def build_for(
    service: GenerationService,
    job: _Job,
    info: Any,
    templates: Catalog | None = None,
    init_image: str | None = None,
) -> BuiltWorkflow:
    return build(
        job.plan,
        info,
        init_image=init_image,
        filename_prefix=f"studio_{job.generation_id[:8]}",
        templates=templates or service.templates,
        explicit=job.explicit,
    )


async def prepare(
    service: GenerationService, job: _Job, client: ComfyUIClient, attempt: int
) -> Fit[BuiltWorkflow]:
    """The attempt's workflow for one server: its models, its copy of the starting image.

    Raises ComfyUIUnreachableError when the server is away, StudioError (with the words
    for the person) when the job cannot run there. ``exact``: the server has the
    checkpoint, LoRAs and template the plan names (a pool prefers such a server).
    """
    info = await client.object_info(refresh=attempt > 0)
    service.connection = "connected"
    comfy_image: str | None = None
    if job.init_image:
        try:  # every attempt: a restarted ComfyUI may have lost nothing or everything
            comfy_image = await service.upload_init_image(job.init_image, client)
        except ComfyUIUnreachableError:
            raise
        except (ComfyUIError, StudioError) as error:
            raise StudioError(
                f"The starting image could not be sent to ComfyUI: {error.message}"
            ) from error
    templates = await templates_for(service, job.plan)
    built = build_for(service, job, info, templates, comfy_image)
    return Fit(built, built.keeps_models_of(job.plan))


async def execute(service: GenerationService, job: _Job) -> GenerationOutcome:
    """One generation, all attempts. Returns its outcome (never raises for ComfyUI trouble)."""
    settings = job.settings
    attempts = settings.max_generation_retries + 1
    announced: set[str] = set()
    pool = service.pool
    lost_on: ComfyUIClient | None = None  # the server that just lost this job (several)
    try:
        for attempt in range(attempts + 1):  # +1: a refused model costs no GPU time
            if job.cancel_requested:
                return await finish(service, job, "cancelled", error=None)
            try:  # one server: that one; several: the least-loaded that has the models
                client, built = await pool.select(
                    functools.partial(prepare, service, job, attempt=attempt),
                    prefer=job.server_url,
                    avoid=lost_on,
                )
            except ComfyUIUnreachableError as error:
                return await park(service, job, error)
            except StudioError as error:
                service._note(job, error.message, status="failed")
                return await finish(service, job, "failed", error=error.message)
            job.server_url = client.url
            job.kind = built.kind
            # Picked up after a restart: the stored status stands until ComfyUI says what
            # became of the prompt (still running, finished, or lost and queued again), and
            # what the first process said of the build (a switched checkpoint) is not said
            # again.
            picked_up, job.picked_up = job.picked_up, None
            for note in built.notes:
                if note not in announced:
                    announced.add(note)
                    if picked_up is None:
                        service._note(job, note)
            job.plan = built.plan
            if settings.unload_ollama_before_generation:
                await unload_ollama(service, job)
            prompt_id = prompt_id_for(job.generation_id, attempt)
            job.prompt_id = prompt_id
            with contextlib.suppress(StudioError):
                await service.repository.update_generation(
                    job.generation_id,
                    status=picked_up or "queued",
                    prompt_id=prompt_id,
                    server_url=client.url,
                    workflow_json=built.workflow,
                    progress=0.0 if picked_up is None else UNSET,
                    error=None,
                )
            if job.tracker is not None:
                job.tracker.closed = True
            tracker = job.tracker = _Progress(service, job, built.workflow)
            if picked_up is None:
                service._emit(job, "generation_progress", tracker.payload(template=built.template))
            else:
                tracker.status = picked_up
            grace = settings.comfyui_reconnect_grace
            if pool.several:  # another server can take it: a silent one is left sooner
                grace = min(grace, pool.failover_grace)
            try:
                result = await client.execute(
                    built.workflow,
                    prompt_id,
                    tracker.handle,
                    time_limit=settings.generation_timeout,
                    reconnect_grace=grace,
                )
            except ComfyUIUnreachableError as error:
                if pool.several and await pool.others_live(client):
                    lost_on = client
                    service._note(
                        job, f"{error.message} Pixel is moving the generation to another server."
                    )
                    continue
                return await park(service, job, error)
            except ComfyUIRejectedError as error:
                if error.missing_values() and attempt < attempts:
                    missing = ", ".join(str(v) for _, _, v in error.missing_values())
                    service._note(
                        job,
                        f"The server no longer has {missing}; Pixel is re-checking what is installed.",
                    )
                    continue
                return await finish(service, job, "failed", error=error.message)
            except ComfyUITimeoutError as error:
                return await finish(service, job, "failed", error=error.message)
            except ComfyUIError as error:
                return await finish(service, job, "failed", error=error.message)
            finally:
                pool.release(client)
            if job.cancel_requested:  # it finished before the interrupt took effect
                return await finish(service, job, "cancelled", error=None)
            if result.status == "success":
                outputs = await store_outputs(service, job, result.outputs, client)
                if settings.free_comfyui_after_generation:
                    with contextlib.suppress(ComfyUIError):
                        await client.free()
                return await finish(
                    service, job, "complete", error=None, outputs=outputs, template=built.template
                )
            if result.status in ("interrupted", "cancelled"):
                if job.cancel_requested:
                    return await finish(service, job, "cancelled", error=None)
                text = "The generation was interrupted on the ComfyUI server."
                return await finish(service, job, "failed", error=text)
            failure = result.failure
            if failure is not None and failure.is_out_of_memory:
                smaller = reduce_for_memory(job.plan, job.kind)
                if smaller is None or attempt + 1 >= attempts:
                    text = (
                        "Generation failed due to memory, even at "
                        f"{job.plan.width}x{job.plan.height}: the GPU is too small for this "
                        "plan (close other GPU programs, or ask for a smaller image)."
                    )
                    service._note(job, text, status="failed")
                    return await finish(service, job, "failed", error=text)
                job.plan, size = smaller
                what = "resolution" if "x" in size else "batch" if "batch" in size else "frames"
                service._note(
                    job,
                    f"Generation failed due to memory - Pixel is reducing {what} to {size} "
                    "and trying again...",
                    status="running",
                )
                continue
            text = f"ComfyUI could not finish the generation: {failure.summary() if failure else 'unknown error'}"
            return await finish(service, job, "failed", error=text)
        return await finish(service, job, "failed", error="Gave up after repeated failures.")
    except asyncio.CancelledError:
        raise
    except Exception as error:  # storage or database trouble: report, do not hang the node
        log.exception("generation %s failed", job.generation_id)
        return await finish(service, job, "failed", error=f"The studio hit an error: {error}")


async def park(
    service: GenerationService, job: _Job, error: ComfyUIUnreachableError
) -> GenerationOutcome:
    """ComfyUI is away: keep the generation queued; the retry loop starts it later."""
    service.connection = "unreachable"
    job.waited = True
    service._parked[job.generation_id] = job
    text = (
        f"{error.message} The generation is queued and will start by itself when ComfyUI is back."
    )
    with contextlib.suppress(StudioError):
        await service.repository.update_generation(job.generation_id, status="queued", error=text)
    job.notes.append(text)
    service._emit(
        job,
        "generation_progress",
        {
            "generation_id": job.generation_id,
            "progress": 0.0,
            "status": "queued",
            "connection": "unreachable",
            "message": text,
        },
    )
    service._wake.set()
    return GenerationOutcome(
        job.generation_id,
        "queued",
        job.plan,
        error=text,
        notes=list(job.notes),
        waiting_for_server=True,
    )


async def finish(
    service: GenerationService,
    job: _Job,
    status: Literal["complete", "failed", "cancelled"],
    *,
    error: str | None,
    outputs: list[dict[str, Any]] | None = None,
    template: str | None = None,
) -> GenerationOutcome:
    outputs = outputs or []
    if job.tracker is not None:
        job.tracker.closed = True
    async with job.db_lock:
        with contextlib.suppress(StudioError):
            await service.repository.update_generation(
                job.generation_id,
                status=status,
                error=error,
                outputs=outputs,
                progress=1.0 if status == "complete" else UNSET,
            )
    outcome = GenerationOutcome(
        job.generation_id,
        status,
        job.plan,
        outputs=outputs,
        error=error,
        notes=list(job.notes),
        template=template,
    )
    if status == "complete":
        service._emit(
            job,
            "generation_done",
            {"generation_id": job.generation_id, "outputs": outputs, "status": status},
        )
    else:
        service._emit(
            job,
            "generation_progress",
            {
                "generation_id": job.generation_id,
                "progress": 1.0 if status == "complete" else 0.0,
                "status": status,
                "error": error,
            },
        )
    job.outcome = outcome
    service.previews.end(job.conversation_id, job.generation_id)
    if job.listener is None and job.conversation_id is not None:
        service._deliver(job.conversation_id, outcome)
    return outcome

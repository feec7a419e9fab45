"""The generation service: one plan -> one stored result, whatever ComfyUI does meanwhile.

It owns every generation from the moment the team's plan leaves the discussion:

* sends the plan's starting image (a stored upload or earlier output) to ComfyUI with
  /upload/image, named by its content hash, and points LoadImage at it;
* builds and validates the workflow for the connected server (never queues an
  unvalidated one), with a deterministic prompt_id per attempt
  (``uuid5(generation_id:attempt)``), so a resubmission after a restart of ComfyUI or of
  the studio itself finds the run instead of queueing it twice;
* follows the run (live progress and preview frames to the chat, the generations table
  kept current: queued | running | complete | failed | cancelled, progress, error,
  workflow_json, parameters), then fetches the outputs and stores them under
  ``{session_id}/{generation_id}/{filename}``;
* recovers by itself, bounded: out of memory -> smaller batch / frames / size and again
  ("Generation failed due to memory - Pixel is reducing resolution..."); a model the
  server no longer has -> refresh what it has and rebuild (installed checkpoint, LoRA
  dropped); ComfyUI unreachable -> the generation waits (status queued) and a
  background loop starts it when the server answers again;
* cancels precisely (queue delete while pending, targeted interrupt while running); the
  row says "cancelled" as soon as the person asked;
* preview frames go to ``previews`` (services/generation_previews.py), never to the event
  sinks: they are live only, and a server that sends none is named once per conversation.

The service keeps the jobs and their lifecycle; where their events go is
services/generation_events.py (its base class), each generation's attempts are
services/generation_attempts.py, and stopping them is services/generation_cancel.py.

Generations run as tasks owned by the service, not by the graph node that asked for
them: if the node is cancelled (the person interjected) the generation goes on and its
events go to ``on_event`` instead of the node's stream. A generation that ends while no
node waits for it (it waited for ComfyUI, or a previous process started it) is handed to
the result listeners (the conversation runner writes it into the conversation).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Literal

from creative_studio.core.errors import NotFoundError, StudioError
from creative_studio.services import generation_cancel
from creative_studio.services.generation_attempts import execute, finish
from creative_studio.services.generation_events import EventSink, GenerationEvents
from creative_studio.services.generation_job import Emit, _Job, prompt_id_for
from creative_studio.services.generation_recovery import (
    FINAL,
    find_row,
    job_from_row,
    outcome_of_row,
    resumable,
)
from creative_studio.store.repository import StudioRepository
from creative_studio.tools.comfyui import ComfyEvent, ComfyUIClient
from creative_studio.tools.comfyui_pool import ComfyUIPool
from creative_studio.tools.storage import Storage
from creative_studio.workflows.catalog import Catalog, catalog
from creative_studio.workflows.plan import TechnicalPlan
from creative_studio.workflows.run import GenerationOutcome, GenerationSettings

log = logging.getLogger(__name__)

__all__ = [
    "GenerationOutcome",
    "GenerationService",
    "GenerationSettings",
    "prompt_id_for",
]


BACK = "ComfyUI is back: starting the queued generation."
PICKED_UP = "Picking up the generation the studio was running before it restarted."


class GenerationService(GenerationEvents):
    """Runs generations end to end; one per process, shared by all conversations."""

    def __init__(
        self,
        repository: StudioRepository,
        client: ComfyUIClient,
        storage: Storage,
        *,
        on_event: EventSink | None = None,
        retry_interval: float = 5.0,
        ollama_host: str | None = None,
        templates: Catalog | None = None,
        pool: ComfyUIPool | None = None,
    ) -> None:
        super().__init__(on_event)
        self.repository = repository
        self.client = client
        # Where generations run: ``client`` alone, or every server COMFYUI_URL lists.
        self.pool = pool or ComfyUIPool([client])
        self.storage = storage
        self.retry_interval = retry_interval
        self.ollama_host = ollama_host
        self.templates = templates or catalog()
        self.connection: Literal["unknown", "connected", "unreachable"] = "unknown"
        self._jobs: dict[str, _Job] = {}
        self._parked: dict[str, _Job] = {}
        self._retry_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.pool.add_listener(self._on_client_event)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, resume: bool = True) -> None:
        """Start the retry loop; with ``resume``, pick up generations a previous process left."""
        if resume:
            await self.resume_from_database()
        if self._retry_task is None:
            self._retry_task = asyncio.create_task(self._retry_loop(), name="generation-retry")

    async def aclose(self) -> None:
        tasks = [t for t in (self._retry_task, *self._background) if t is not None]
        tasks += [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def status(self) -> dict[str, Any]:
        """For the UI: is ComfyUI there, and how many generations wait for it."""
        return {
            "comfyui": self.connection,
            "url": self.client.url,
            "waiting": len(self._parked),
            "active": sum(1 for j in self._jobs.values() if j.task and not j.task.done()),
        }

    # ------------------------------------------------------------------ public API

    async def run(
        self,
        *,
        session_id: str,
        conversation_id: str | None,
        plan: TechnicalPlan,
        settings: GenerationSettings | None = None,
        emit: Emit | None = None,
        request_key: str | None = None,
        init_image: str | None = None,
        unload_models: Sequence[str] = (),
        ollama_host: str | None = None,
        explicit: Sequence[str] | None = None,
    ) -> GenerationOutcome:
        """Run one generation and wait for it; ``emit`` gets its live events meanwhile.

        ``request_key`` makes the call idempotent: the same key (the graph node computes
        it from the thread and its position) re-attaches to the generation it started
        before — after a crash-resume the node does not start a second one.
        """
        job = await self.submit(
            session_id=session_id,
            conversation_id=conversation_id,
            plan=plan,
            settings=settings,
            request_key=request_key,
            init_image=init_image,
            unload_models=unload_models,
            ollama_host=ollama_host,
            explicit=explicit,
        )
        return await self.wait(job.generation_id, emit)

    async def run_for_thread(
        self,
        thread_id: str,
        plan: TechnicalPlan,
        *,
        settings: GenerationSettings,
        emit: Emit | None = None,
        request_key: str | None = None,
        unload_models: Sequence[str] = (),
        ollama_host: str | None = None,
        explicit: Sequence[str] | None = None,
        init_image: str | None = None,
    ) -> GenerationOutcome | None:
        """The graph node's entry point: ``None`` when the thread is no studio conversation.

        ``init_image`` is the storage path of the image the plan starts from (an upload or
        an earlier output of the session); it is sent to ComfyUI at every attempt."""
        try:
            conversation = await self.repository.get_conversation(thread_id)
        except StudioError:
            return None
        return await self.run(
            session_id=str(conversation.session_id),
            conversation_id=str(conversation.id),
            plan=plan,
            settings=settings,
            emit=emit,
            request_key=request_key,
            unload_models=unload_models,
            ollama_host=ollama_host,
            explicit=explicit,
            init_image=init_image,
        )

    async def submit(
        self,
        *,
        session_id: str,
        conversation_id: str | None,
        plan: TechnicalPlan,
        settings: GenerationSettings | None = None,
        request_key: str | None = None,
        init_image: str | None = None,
        unload_models: Sequence[str] = (),
        ollama_host: str | None = None,
        explicit: Sequence[str] | None = None,
    ) -> _Job:
        """Start a generation (or find the one ``request_key`` started before).

        ``explicit`` names the template parameters the plan or the person chose on purpose:
        an uploaded workflow keeps its own value for every other one (see build()).
        """
        settings = settings or GenerationSettings()
        if request_key:
            existing = await self._find(session_id, request_key)
            if existing is not None:
                return existing
        parameters = {
            "plan": plan.model_dump(mode="json"),
            "request_key": request_key,
            "init_image": init_image,
            "settings": settings.model_dump(mode="json"),
            "explicit": list(explicit) if explicit is not None else None,
        }
        row = await self.repository.create_generation(
            session_id, conversation_id, parameters, template=plan.template
        )
        job = _Job(
            generation_id=str(row.id),
            session_id=str(session_id),
            conversation_id=conversation_id,
            plan=plan,
            settings=settings,
            init_image=init_image,
            unload_models=tuple(unload_models),
            ollama_host=ollama_host,
            request_key=request_key,
            explicit=tuple(explicit) if explicit is not None else None,
        )
        self._jobs[job.generation_id] = job
        self._launch(job)
        return job

    async def wait(self, generation_id: str, emit: Emit | None = None) -> GenerationOutcome:
        """Follow a generation until it ends (or parks waiting for ComfyUI)."""
        job = self._jobs.get(generation_id)
        if job is None:
            raise NotFoundError(f"No generation {generation_id} is running in this process.")
        job.listener = emit
        try:
            while True:
                if job.task is None:
                    if job.outcome is not None:
                        return job.outcome
                    self._launch(job)
                assert job.task is not None
                outcome = await asyncio.shield(job.task)
                if job.task.done():
                    return outcome
        finally:
            job.listener = None  # a cancelled waiter leaves the generation running

    async def cancel(self, generation_id: str) -> bool:
        """Stop a generation; the row says "cancelled" when this returns (generation_cancel)."""
        return await generation_cancel.cancel(self, generation_id)

    async def cancel_conversation(self, conversation_id: str) -> list[GenerationOutcome]:
        """Stop every generation of a conversation that has not ended (their outcomes)."""
        return await generation_cancel.cancel_conversation(self, conversation_id)

    async def upload_init_image(self, path: str, client: ComfyUIClient | None = None) -> str:
        """Put a stored starting image on the server; returns the name LoadImage refers to.

        The name is the image's content hash, so sending it again (the next attempt, after
        a ComfyUI restart, from a later studio process) finds the same file instead of
        piling up " (1)" copies; ComfyUI keeps its input folder on disk across restarts.
        """
        data = await self.storage.get(path)
        extension = path.rsplit(".", 1)[-1].lower() if "." in path else "png"
        name = f"studio_{hashlib.sha256(data).hexdigest()[:24]}.{extension}"
        content_type = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
        uploaded = await (client or self.client).upload_image(
            data, name, overwrite=True, content_type=content_type.get(extension, "image/png")
        )
        sub = uploaded.get("subfolder") or ""
        return f"{sub}/{uploaded['name']}" if sub else str(uploaded["name"])

    async def resume_from_database(self) -> int:
        """Generations a previous process left queued or running: follow or restart them.

        Deterministic prompt ids make this safe: a run that finished meanwhile is read from
        /history, one still in ComfyUI's queue is followed, a lost one is queued again.
        When one ends, its conversation gets the result (the result listeners).
        """
        jobs = await resumable(self.repository, set(self._jobs))
        for job in jobs:
            self._jobs[job.generation_id] = job
            self._parked[job.generation_id] = job
        if jobs:
            self._wake.set()
        return len(jobs)

    # ------------------------------------------------------------------ internals

    async def _find(self, session_id: str, request_key: str) -> _Job | None:
        for job in self._jobs.values():
            if job.session_id == str(session_id) and job.request_key == request_key:
                return job
        row = await find_row(self.repository, session_id, request_key)
        if row is None:
            return None
        known = self._jobs.get(str(row.id))
        if known is None:
            known = job_from_row(row)
            self._jobs[known.generation_id] = known
            if row.status in FINAL:
                known.outcome = outcome_of_row(known, row)
            else:
                self._launch(known)
        known.request_key = request_key
        return known

    def _launch(self, job: _Job) -> None:
        self._parked.pop(job.generation_id, None)
        job.outcome = None
        job.task = asyncio.create_task(self._execute(job), name=f"generation-{job.generation_id}")

    def _set_connection(self, state: Literal["connected", "unreachable"]) -> None:
        self.connection = state

    def _on_client_event(self, event: ComfyEvent) -> None:
        if event.type in ("connected", "reconnected"):
            self.connection = "connected"
            self._wake.set()
        elif event.type == "disconnected":
            self.connection = "unreachable"

    async def _finish(
        self,
        job: _Job,
        status: Literal["complete", "failed", "cancelled"],
        *,
        error: str | None,
        outputs: list[dict[str, Any]] | None = None,
        template: str | None = None,
    ) -> GenerationOutcome:
        return await finish(self, job, status, error=error, outputs=outputs, template=template)

    async def _execute(self, job: _Job) -> GenerationOutcome:
        return await execute(self, job)

    async def _retry_loop(self) -> None:
        """Start parked generations as soon as ComfyUI answers again."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.retry_interval)
            self._wake.clear()
            if not self._parked:
                continue
            if not await self.pool.reachable():
                self.connection = "unreachable"
                continue
            self.connection = "connected"
            for job in list(self._parked.values()):
                # Only a job that really waited for ComfyUI hears that it is back; one a
                # previous studio process left behind is simply picked up again.
                if job.waited:
                    self._note(job, BACK)
                else:
                    self._note(job, PICKED_UP, status=job.picked_up or "queued")
                job.waited = False
                self._launch(job)

"""The generation service: one plan -> one stored result, whatever ComfyUI does meanwhile.

It owns every generation from the moment the team's plan leaves the discussion:

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
* cancels precisely (queue delete while pending, targeted interrupt while running).

Generations run as tasks owned by the service, not by the graph node that asked for
them: if the node is cancelled (the person interjected) the generation goes on and its
events go to ``on_event`` instead of the node's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal
from uuid import NAMESPACE_URL, uuid5

from creative_studio.core.errors import NotFoundError, StudioError
from creative_studio.services.generation_job import Emit, _Job, _Progress
from creative_studio.store.records import UNSET
from creative_studio.store.repository import StudioRepository
from creative_studio.store.workflow_store import UserWorkflowStore, workflow_name
from creative_studio.tools.comfyui import (
    ComfyEvent,
    ComfyUIClient,
    ComfyUIError,
    ComfyUIRejectedError,
    ComfyUITimeoutError,
    ComfyUIUnreachableError,
    OutputRef,
)
from creative_studio.tools.storage import Storage, object_path
from creative_studio.workflows.builder import BuiltWorkflow, build, reduce_for_memory
from creative_studio.workflows.catalog import Catalog, catalog
from creative_studio.workflows.plan import TechnicalPlan
from creative_studio.workflows.run import GenerationOutcome, GenerationSettings, OutcomeStatus

log = logging.getLogger(__name__)

__all__ = [
    "GenerationOutcome",
    "GenerationService",
    "GenerationSettings",
    "prompt_id_for",
]

_NAMESPACE = uuid5(NAMESPACE_URL, "creative-studio/comfyui")
# conversation_id (None: not tied to one), event kind, data
EventSink = Callable[[str | None, str, dict[str, Any]], Awaitable[None]]
_VIDEO_EXTENSIONS = (".webp", ".gif", ".mp4", ".webm", ".mov", ".apng")


def prompt_id_for(generation_id: str, attempt: int) -> str:
    """The idempotency key of one attempt: the same generation and attempt, the same id."""
    return str(uuid5(_NAMESPACE, f"{generation_id}:{attempt}"))


class GenerationService:
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
    ) -> None:
        self.repository = repository
        self.client = client
        self.storage = storage
        self.on_event = on_event
        self.retry_interval = retry_interval
        self.ollama_host = ollama_host
        self.templates = templates or catalog()
        self.connection: Literal["unknown", "connected", "unreachable"] = "unknown"
        self._jobs: dict[str, _Job] = {}
        self._parked: dict[str, _Job] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._retry_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        client.add_listener(self._on_client_event)

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
    ) -> GenerationOutcome | None:
        """The graph node's entry point: ``None`` when the thread is no studio conversation."""
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
    ) -> _Job:
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
        """Stop a generation: queue delete while pending, targeted interrupt while running."""
        job = self._jobs.get(str(generation_id))
        if job is None:
            row = await self.repository.get_generation(generation_id)
            if row.status in ("complete", "failed", "cancelled"):
                return False
            if row.prompt_id:
                with contextlib.suppress(ComfyUIError):
                    await self.client.cancel(row.prompt_id)
            await self.repository.update_generation(generation_id, status="cancelled")
            return True
        if job.outcome is not None and job.outcome.status != "queued":
            return False
        job.cancel_requested = True
        if job.generation_id in self._parked:
            self._parked.pop(job.generation_id)
            outcome = await self._finish(job, "cancelled", error=None)
            job.task = None
            job.outcome = outcome
            return True
        if job.prompt_id:
            with contextlib.suppress(ComfyUIError):
                await self.client.cancel(job.prompt_id)
        return True

    async def upload_init_image(self, data: bytes, filename: str) -> str:
        """Put a starting image on the server; returns the name workflows refer to."""
        uploaded = await self.client.upload_image(data, filename)
        sub = uploaded.get("subfolder") or ""
        return f"{sub}/{uploaded['name']}" if sub else str(uploaded["name"])

    async def resume_from_database(self) -> int:
        """Generations a previous process left queued or running: follow or restart them.

        Deterministic prompt ids make this safe: a run that finished meanwhile is read from
        /history, one still in ComfyUI's queue is followed, a lost one is queued again.
        """
        resumed = 0
        try:
            rows = await self.repository.list_generations(limit=200)
        except StudioError:
            return 0
        for row in rows:
            gid = str(row.id)
            if row.status not in ("queued", "running") or gid in self._jobs:
                continue
            plan_data = (row.parameters or {}).get("plan")
            if not plan_data:
                continue
            settings = GenerationSettings.model_validate(
                (row.parameters or {}).get("settings") or {}
            )
            job = _Job(
                generation_id=gid,
                session_id=str(row.session_id),
                conversation_id=str(row.conversation_id) if row.conversation_id else None,
                plan=TechnicalPlan.model_validate(plan_data),
                settings=settings,
                init_image=(row.parameters or {}).get("init_image"),
            )
            self._jobs[gid] = job
            self._parked[gid] = job
            resumed += 1
        if resumed:
            self._wake.set()
        return resumed

    # ------------------------------------------------------------------ internals

    async def _find(self, session_id: str, request_key: str) -> _Job | None:
        for job in self._jobs.values():
            if job.session_id == str(session_id) and job.request_key == request_key:
                return job
        with contextlib.suppress(StudioError):
            for row in await self.repository.list_generations(session_id, limit=50):
                if (row.parameters or {}).get("request_key") != request_key:
                    continue
                gid = str(row.id)
                known = self._jobs.get(gid)
                if known is None:
                    job = _Job(
                        generation_id=gid,
                        session_id=str(session_id),
                        conversation_id=str(row.conversation_id) if row.conversation_id else None,
                        plan=TechnicalPlan.model_validate(row.parameters["plan"]),
                        settings=GenerationSettings.model_validate(
                            row.parameters.get("settings") or {}
                        ),
                        init_image=row.parameters.get("init_image"),
                    )
                    self._jobs[gid] = job
                    if row.status in ("complete", "failed", "cancelled"):
                        final: OutcomeStatus = row.status
                        job.outcome = GenerationOutcome(
                            gid,
                            final,
                            job.plan,
                            outputs=list(row.outputs),
                            error=row.error,
                            template=row.template,
                        )
                    else:
                        self._launch(job)
                    known = job
                known.request_key = request_key
                return known
        return None

    def _launch(self, job: _Job) -> None:
        self._parked.pop(job.generation_id, None)
        job.outcome = None
        job.task = asyncio.create_task(self._execute(job), name=f"generation-{job.generation_id}")

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _emit(self, job: _Job, kind: str, data: dict[str, Any]) -> None:
        if job.listener is not None:
            try:
                job.listener(kind, data)
                return
            except Exception:  # the node's stream is gone: fall back to the service sink
                job.listener = None
        if self.on_event is not None:
            self._spawn(self.on_event(job.conversation_id, kind, data))

    def _note(self, job: _Job, text: str, *, status: str = "queued", progress: float = 0.0) -> None:
        job.notes.append(text)
        self._emit(
            job,
            "generation_progress",
            {
                "generation_id": job.generation_id,
                "progress": progress,
                "status": status,
                "message": text,
            },
        )

    def _set_connection(self, state: Literal["connected", "unreachable"]) -> None:
        self.connection = state

    def _on_client_event(self, event: ComfyEvent) -> None:
        if event.type in ("connected", "reconnected"):
            self.connection = "connected"
            self._wake.set()
        elif event.type == "disconnected":
            self.connection = "unreachable"

    async def _unload_ollama(self, job: _Job) -> None:
        host = job.ollama_host or self.ollama_host
        if not job.unload_models or not host:
            return
        from creative_studio.tools.ollama import OllamaService

        service = OllamaService(host)
        await asyncio.gather(*(service.unload(name) for name in job.unload_models))

    async def _park(self, job: _Job, error: ComfyUIUnreachableError) -> GenerationOutcome:
        """ComfyUI is away: keep the generation queued; the retry loop starts it later."""
        self.connection = "unreachable"
        self._parked[job.generation_id] = job
        text = (
            f"{error.message} The generation is queued and will start by itself when "
            "ComfyUI is back."
        )
        with contextlib.suppress(StudioError):
            await self.repository.update_generation(job.generation_id, status="queued", error=text)
        job.notes.append(text)
        self._emit(
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
        self._wake.set()
        return GenerationOutcome(
            job.generation_id,
            "queued",
            job.plan,
            error=text,
            notes=list(job.notes),
            waiting_for_server=True,
        )

    async def _finish(
        self,
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
                await self.repository.update_generation(
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
            self._emit(
                job,
                "generation_done",
                {"generation_id": job.generation_id, "outputs": outputs, "status": status},
            )
        else:
            self._emit(
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
        return outcome

    async def _store_outputs(self, job: _Job, refs: list[OutputRef]) -> list[dict[str, Any]]:
        stored: list[dict[str, Any]] = []
        for ref in refs:
            data, content_type = await self.client.view(ref.filename, ref.subfolder, ref.type)
            path = object_path(job.session_id, job.generation_id, ref.filename)
            saved = await self.storage.put(path, data, content_type.split(";")[0])
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

    async def _templates_for(self, plan: TechnicalPlan) -> Catalog:
        """The templates a plan builds from: ``custom:<name>`` is read from the store.

        Read at every attempt (one indexed row), so a workflow deleted meanwhile is refused
        with a clear message instead of running from a stale copy.
        """
        if workflow_name(plan.template) is None:
            return self.templates
        store = UserWorkflowStore(self.repository.pool)
        return await store.catalog_for(plan.template, self.templates)

    def _build(self, job: _Job, info: Any, templates: Catalog | None = None) -> BuiltWorkflow:
        return build(
            job.plan,
            info,
            init_image=job.init_image,
            filename_prefix=f"studio_{job.generation_id[:8]}",
            templates=templates or self.templates,
        )

    async def _execute(self, job: _Job) -> GenerationOutcome:
        """One generation, all attempts. Returns its outcome (never raises for ComfyUI trouble)."""
        settings = job.settings
        attempts = settings.max_generation_retries + 1
        announced: set[str] = set()
        try:
            for attempt in range(attempts + 1):  # +1: a refused model costs no GPU time
                if job.cancel_requested:
                    return await self._finish(job, "cancelled", error=None)
                try:
                    info = await self.client.object_info(refresh=attempt > 0)
                    self.connection = "connected"
                except ComfyUIUnreachableError as error:
                    return await self._park(job, error)
                try:
                    built = self._build(job, info, await self._templates_for(job.plan))
                except StudioError as error:
                    self._note(job, error.message, status="failed")
                    return await self._finish(job, "failed", error=error.message)
                job.kind = built.kind
                for note in built.notes:
                    if note not in announced:
                        announced.add(note)
                        self._note(job, note)
                job.plan = built.plan
                if settings.unload_ollama_before_generation:
                    await self._unload_ollama(job)
                prompt_id = prompt_id_for(job.generation_id, attempt)
                job.prompt_id = prompt_id
                with contextlib.suppress(StudioError):
                    await self.repository.update_generation(
                        job.generation_id,
                        status="queued",
                        prompt_id=prompt_id,
                        workflow_json=built.workflow,
                        progress=0.0,
                        error=None,
                    )
                if job.tracker is not None:
                    job.tracker.closed = True
                tracker = job.tracker = _Progress(self, job, built.workflow)
                self._emit(job, "generation_progress", tracker.payload(template=built.template))
                try:
                    result = await self.client.execute(
                        built.workflow,
                        prompt_id,
                        tracker.handle,
                        time_limit=settings.generation_timeout,
                        reconnect_grace=settings.comfyui_reconnect_grace,
                    )
                except ComfyUIUnreachableError as error:
                    return await self._park(job, error)
                except ComfyUIRejectedError as error:
                    if error.missing_values() and attempt < attempts:
                        missing = ", ".join(str(v) for _, _, v in error.missing_values())
                        self._note(
                            job,
                            f"The server no longer has {missing}; Pixel is re-checking what is installed.",
                        )
                        continue
                    return await self._finish(job, "failed", error=error.message)
                except ComfyUITimeoutError as error:
                    return await self._finish(job, "failed", error=error.message)
                except ComfyUIError as error:
                    return await self._finish(job, "failed", error=error.message)
                if result.status == "success":
                    outputs = await self._store_outputs(job, result.outputs)
                    if settings.free_comfyui_after_generation:
                        with contextlib.suppress(ComfyUIError):
                            await self.client.free()
                    return await self._finish(
                        job, "complete", error=None, outputs=outputs, template=built.template
                    )
                if result.status in ("interrupted", "cancelled"):
                    if job.cancel_requested:
                        return await self._finish(job, "cancelled", error=None)
                    text = "The generation was interrupted on the ComfyUI server."
                    return await self._finish(job, "failed", error=text)
                failure = result.failure
                if failure is not None and failure.is_out_of_memory:
                    smaller = reduce_for_memory(job.plan, job.kind)
                    if smaller is None or attempt + 1 >= attempts:
                        text = (
                            "Generation failed due to memory, even at "
                            f"{job.plan.width}x{job.plan.height}: the GPU is too small for this "
                            "plan (close other GPU programs, or ask for a smaller image)."
                        )
                        self._note(job, text, status="failed")
                        return await self._finish(job, "failed", error=text)
                    job.plan, size = smaller
                    what = "resolution" if "x" in size else "batch" if "batch" in size else "frames"
                    self._note(
                        job,
                        f"Generation failed due to memory - Pixel is reducing {what} to {size} "
                        "and trying again...",
                        status="running",
                    )
                    continue
                text = f"ComfyUI could not finish the generation: {failure.summary() if failure else 'unknown error'}"
                return await self._finish(job, "failed", error=text)
            return await self._finish(job, "failed", error="Gave up after repeated failures.")
        except asyncio.CancelledError:
            raise
        except Exception as error:  # storage or database trouble: report, do not hang the node
            log.exception("generation %s failed", job.generation_id)
            return await self._finish(job, "failed", error=f"The studio hit an error: {error}")

    async def _retry_loop(self) -> None:
        """Start parked generations as soon as ComfyUI answers again."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.retry_interval)
            self._wake.clear()
            if not self._parked:
                continue
            if not await self.client.reachable():
                self.connection = "unreachable"
                continue
            self.connection = "connected"
            for job in list(self._parked.values()):
                self._note(job, "ComfyUI is back: starting the queued generation.")
                self._launch(job)

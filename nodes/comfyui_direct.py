"""Generating where no studio server runs: LangGraph Studio, RemoteGraph, an embedding app.

The product's server injects its generation service (database, storage, background
retries). Everywhere else the ComfyUI node builds this small backend from the
configuration's ``comfyui_url``: it validates the workflow against the server's
object_info (never queues an unvalidated one), queues it with a prompt_id derived from
the conversation's position (so a resumed node re-attaches instead of queueing twice),
streams progress as custom events, retries smaller after an out-of-memory failure, and
puts the outputs into the state as the server's own /view references — no files are
copied anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode
from uuid import NAMESPACE_URL, uuid5

from creative_studio.core.errors import StudioError
from creative_studio.tools.comfyui import (
    ComfyEvent,
    ComfyUIClient,
    ComfyUIError,
    ComfyUIUnreachableError,
    OutputRef,
)
from creative_studio.workflows.builder import build, reduce_for_memory
from creative_studio.workflows.plan import TechnicalPlan
from creative_studio.workflows.run import GenerationOutcome, GenerationSettings

Emit = Callable[[str, dict[str, Any]], None]
_NAMESPACE = uuid5(NAMESPACE_URL, "creative-studio/comfyui-direct")
_VIDEO_EXTENSIONS = (".gif", ".mp4", ".webm", ".mov", ".apng")


def output_of(url: str, ref: OutputRef) -> dict[str, Any]:
    query = urlencode({"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type})
    video = ref.animated or ref.filename.lower().endswith(_VIDEO_EXTENSIONS)
    return {
        "filename": ref.filename,
        "kind": "video" if video else "image",
        "url": f"{url}/view?{query}",
        "node_id": ref.node_id,
        "comfyui": {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type},
    }


class DirectComfyUI:
    """A GenerationBackend (nodes/comfyui.py) that talks to one ComfyUI server directly."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

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
    ) -> GenerationOutcome:
        key = request_key or thread_id
        generation_id = str(uuid5(_NAMESPACE, key))
        notes: list[str] = []
        if init_image:
            # The image is in the studio's storage, which only the studio server reads.
            notes.append(
                "Starting images need the studio server (creative-studio serve); here the "
                "image is made from the prompt."
            )

        def say(kind: str, data: dict[str, Any]) -> None:
            if emit is not None:
                emit(kind, {"generation_id": generation_id, **data})

        def on_event(event: ComfyEvent) -> None:
            if event.type == "progress":
                value, top = float(event.data.get("value") or 0), float(event.data.get("max") or 1)
                say(
                    "generation_progress",
                    {
                        "status": "running",
                        "progress": round(0.05 + 0.9 * value / max(top, 1.0), 4),
                        "step": int(value),
                        "max_steps": int(top),
                    },
                )
            elif event.type == "execution_start":
                say("generation_progress", {"status": "running", "progress": 0.02})

        def failed(error: str) -> GenerationOutcome:
            say("generation_progress", {"status": "failed", "progress": 0.0, "message": error})
            return GenerationOutcome(generation_id, "failed", plan, error=error, notes=notes)

        client = ComfyUIClient(self.url)
        try:
            for attempt in range(settings.max_generation_retries + 1):
                try:
                    info = await client.object_info(refresh=attempt > 0)
                    built = build(
                        plan,
                        info,
                        filename_prefix=f"studio_{generation_id[:8]}",
                        explicit=explicit,
                    )
                except ComfyUIUnreachableError as error:
                    return failed(f"{error.message} Start ComfyUI, then ask the team again.")
                except StudioError as error:
                    return failed(error.message)
                notes.extend(n for n in built.notes if n not in notes)
                plan = built.plan
                say("generation_progress", {"status": "queued", "progress": 0.0})
                try:
                    result = await client.execute(
                        built.workflow,
                        str(uuid5(_NAMESPACE, f"{key}:{attempt}")),
                        on_event,
                        time_limit=settings.generation_timeout,
                        reconnect_grace=settings.comfyui_reconnect_grace,
                    )
                except ComfyUIError as error:
                    return failed(error.message)
                if result.status == "success":
                    outputs = [output_of(self.url, ref) for ref in result.outputs]
                    say("generation_done", {"status": "complete", "outputs": outputs})
                    return GenerationOutcome(
                        generation_id,
                        "complete",
                        plan,
                        outputs=outputs,
                        notes=notes,
                        template=built.template,
                    )
                failure = result.failure
                smaller = reduce_for_memory(plan, built.kind) if failure else None
                if failure is None or not failure.is_out_of_memory or smaller is None:
                    detail = failure.summary() if failure else result.status
                    return failed(f"ComfyUI could not finish the generation: {detail}")
                plan, size = smaller
                notes.append(f"Generation failed due to memory - Pixel is reducing to {size}...")
            return failed("Gave up after repeated out-of-memory failures.")
        finally:
            await client.aclose()


__all__ = ["DirectComfyUI", "output_of"]

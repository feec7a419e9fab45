"""Generating where no studio server runs: LangGraph Studio, RemoteGraph, an embedding app.

The product's server injects its generation service (database, storage, background
retries). Everywhere else the ComfyUI node builds this small backend from the
configuration's ``comfyui_url``: it validates the workflow against the server's
object_info (never queues an unvalidated one), queues it with a prompt_id derived from
the conversation's position (so a resumed node re-attaches instead of queueing twice),
streams progress as custom events, retries smaller after an out-of-memory failure, and
puts the outputs into the state as the server's own /view references — no files are
copied anywhere.

``comfyui_url`` may list several servers, as ``COMFYUI_URL`` does for the studio
(tools/settings.py ``server_urls``): the same pool (tools/comfyui_pool.py) sends each
generation to the least-loaded server that has the plan's models, and a generation whose
server dies mid-run is submitted again to another one. With one server nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
from creative_studio.tools.comfyui_pool import ComfyUIPool, Fit
from creative_studio.tools.settings import server_urls
from creative_studio.workflows.builder import BuiltWorkflow, build, reduce_for_memory
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
    """A GenerationBackend (nodes/comfyui.py) that talks to ComfyUI directly: one server, or
    the several a comma- or space-separated ``urls`` lists."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls: list[str] = []
        # A mistyped list fails the generation with the reason, not the whole discussion.
        self.problem: str | None = None
        try:
            self.urls = server_urls(urls) if isinstance(urls, str) else server_urls(",".join(urls))
        except ValueError as error:
            self.problem = str(error)
        if not self.urls and self.problem is None:
            self.problem = "No ComfyUI server is set (comfyui_url)."

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

        if self.problem is not None:
            return failed(self.problem)
        pool = ComfyUIPool([ComfyUIClient(url) for url in self.urls])
        submission = 0  # every submission has its own prompt id (OOM retry, another server)
        retries = 0
        moves = 0
        lost_on: ComfyUIClient | None = None  # the server that just lost the generation
        ran_on: str | None = None  # the server the previous submission ran on
        try:
            while True:
                prompt_id = str(uuid5(_NAMESPACE, f"{key}:{submission}"))
                # A resumed node: the server that already has this prompt goes first.
                prefer = await _holding(pool, prompt_id) or ran_on

                fit = functools.partial(
                    _fit,
                    plan,
                    prefix=f"studio_{generation_id[:8]}",
                    explicit=explicit,
                    refresh=submission > 0,
                )
                try:
                    client, built = await pool.select(fit, prefer=prefer, avoid=lost_on)
                except ComfyUIUnreachableError as error:
                    return failed(f"{error.message} Start ComfyUI, then ask the team again.")
                except StudioError as error:
                    return failed(error.message)
                notes.extend(n for n in built.notes if n not in notes)
                plan = built.plan
                say("generation_progress", {"status": "queued", "progress": 0.0})
                grace = settings.comfyui_reconnect_grace
                if pool.several:  # another server can take it: a silent one is left sooner
                    grace = min(grace, pool.failover_grace)
                try:
                    result = await client.execute(
                        built.workflow,
                        prompt_id,
                        on_event,
                        time_limit=settings.generation_timeout,
                        reconnect_grace=grace,
                    )
                except ComfyUIUnreachableError as error:
                    if moves < len(pool.clients) and await pool.others_live(client):
                        moves += 1
                        submission += 1
                        lost_on, ran_on = client, None
                        notes.append(
                            f"{error.message} Pixel is moving the generation to another server."
                        )
                        continue
                    return failed(f"{error.message} Start ComfyUI, then ask the team again.")
                except ComfyUIError as error:
                    return failed(error.message)
                finally:
                    pool.release(client)
                ran_on = client.url
                if result.status == "success":
                    outputs = [output_of(client.url, ref) for ref in result.outputs]
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
                if retries >= settings.max_generation_retries:
                    return failed("Gave up after repeated out-of-memory failures.")
                retries += 1
                submission += 1
                plan, size = smaller
                notes.append(f"Generation failed due to memory - Pixel is reducing to {size}...")
        finally:
            await pool.aclose()


async def _fit(
    plan: TechnicalPlan,
    client: ComfyUIClient,
    *,
    prefix: str,
    explicit: Sequence[str] | None,
    refresh: bool,
) -> Fit[BuiltWorkflow]:
    """The plan built and validated for one server (raises when it cannot run there).

    ``exact``: the server has the checkpoint, LoRAs and template the plan names; a pool
    prefers such a server over one the plan had to be adapted to."""
    info = await client.object_info(refresh=refresh)
    built = build(plan, info, filename_prefix=prefix, explicit=explicit)
    return Fit(built, built.keeps_models_of(plan))


async def _holding(pool: ComfyUIPool, prompt_id: str) -> str | None:
    """The server that has ``prompt_id`` queued, running or done (a node resumed after the
    process stopped); None when none does. One server: not asked (``execute`` re-attaches)."""
    if not pool.several:
        return None

    async def state(client: ComfyUIClient) -> str:
        with contextlib.suppress(Exception):  # down or odd: it does not hold it
            where, _ = await asyncio.wait_for(client.where(prompt_id), pool.probe_timeout)
            return where
        return "unknown"

    states = await asyncio.gather(*(state(c) for c in pool.clients))
    return next((c.url for c, s in zip(pool.clients, states, strict=True) if s != "unknown"), None)


__all__ = ["DirectComfyUI", "output_of"]

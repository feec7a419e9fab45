"""The ComfyUI tool node: the approved plan becomes an image (or a video) here.

With a generation service in ``configurable["generation_service"]`` (the runner passes
one when ComfyUI is configured) the node runs the whole loop: build and validate the
workflow for the connected server, queue it, stream progress and preview frames as
custom events, store the outputs, and recover like the team would — Lens reads the
error, Pixel lowers the resolution (or batch) after an out-of-memory failure, switches to
an installed checkpoint or drops a missing LoRA. That reasoning is deterministic, so it
runs inside the service (bounded retries) instead of another round of model calls; the
person sees each step as a studio line.

Without a service (``langgraph dev``, no ComfyUI configured) the node records the plan
as a queued generation and says so, as before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from uuid import uuid4

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer

from creative_studio.core.errors import StudioError
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.phases import enter_phase
from creative_studio.graph.prompting import moderator
from creative_studio.graph.state import (
    SPECIALISTS,
    GenerationRecord,
    StudioState,
    TechnicalPlan,
    dump,
    plan_of,
)
from creative_studio.nodes.comfyui_direct import DirectComfyUI
from creative_studio.nodes.comfyui_outcome import (
    final_phase,
    late_update,
    line,
    messages,
    record_of,
)
from creative_studio.nodes.images import init_image_for
from creative_studio.nodes.speaking import provider_from, studio_message
from creative_studio.workflows.run import GenerationOutcome, GenerationSettings

log = logging.getLogger(__name__)


class GenerationBackend(Protocol):
    """What runs generations for this node (the studio's generation service implements it).

    The node owns the seam, so the graph never imports the service or the database:
    the service is injected through ``configurable["generation_service"]``.
    """

    async def run_for_thread(
        self,
        thread_id: str,
        plan: TechnicalPlan,
        *,
        settings: GenerationSettings,
        emit: Callable[[str, dict[str, Any]], None] | None = None,
        request_key: str | None = None,
        unload_models: Sequence[str] = (),
        ollama_host: str | None = None,
        explicit: Sequence[str] | None = None,
        init_image: str | None = None,
    ) -> GenerationOutcome | None: ...


def ollama_models(config: RunnableConfig) -> tuple[list[str], str | None]:
    """The Ollama models the team uses (to unload before a generation) and their host."""
    settings = Configuration.from_runnable_config(config)
    provider = provider_from(config)
    resolve = getattr(provider, "resolved", None)
    names: list[str] = []
    for role in SPECIALISTS:
        assignment = settings.model_for(role)
        if resolve is not None:
            try:
                assignment = resolve(assignment)
            except Exception:  # an invalid assignment is reported elsewhere
                continue
        if assignment.startswith("ollama:"):
            name = assignment.removeprefix("ollama:")
            if name not in names:
                names.append(name)
    return names, getattr(provider, "ollama_host", None)


def request_key(state: StudioState, config: RunnableConfig) -> str:
    """Same thread, same point in the conversation -> same generation (crash-resume safe)."""
    thread = (config.get("configurable") or {}).get("thread_id", "")
    return f"{thread}:{len(state.get('messages') or [])}:{state.get('turn_count', 0)}"


def _queued_only(plan: TechnicalPlan) -> dict[str, Any]:
    """No generation service here: record the plan as queued and close the discussion."""
    record = GenerationRecord(status="queued", plan=plan, generation_id=str(uuid4()))
    text = moderator(
        "queued", template=plan.template, width=plan.width, height=plan.height, seed=plan.seed
    )
    return {
        "generation": dump(record),
        "messages": [
            studio_message(text, phase="complete", kind="generation", generation=dump(record))
        ],
        **enter_phase("complete"),
    }


# The person's words that set a template parameter on purpose ("20 steps", "denoise 0.4",
# "768x512"): an uploaded workflow keeps its own value for every parameter nobody named.
_SETTING_WORDS: dict[str, tuple[str, ...]] = {
    "steps": (r"\bsteps?\b",),
    "cfg": (r"\bcfg\b", r"\bguidance\b"),
    "denoise": (r"\bdenois\w*",),
    "sampler": (r"\bsampler\b", r"\beuler\w*", r"\bdpm\w*", r"\bddim\b", r"\blcm\b"),
    "scheduler": (r"\bscheduler\b", r"\bkarras\b", r"\bexponential\b"),
    "checkpoint": (r"\bcheckpoint\b", r"\.safetensors\b", r"\.ckpt\b"),
    "batch_size": (r"\bbatch\b", r"\b\d+\s+(?:images|pictures|variations)\b"),
    "width": (r"\b\d{2,4}\s*[x×]\s*\d{2,4}\b", r"\bwidth\b", r"\bresolution\b"),
    "height": (r"\b\d{2,4}\s*[x×]\s*\d{2,4}\b", r"\bheight\b", r"\bresolution\b"),
}
# Always the plan's: what the discussion is about.
_FROM_THE_DISCUSSION = ("positive_prompt", "negative_prompt", "seed")


def explicit_settings(state: StudioState) -> list[str]:
    """Template parameters the plan sets on purpose: the prompts and the seed, and every
    setting the person named in their own messages (the rest is Pixel's default guess)."""
    said = " ".join(
        m.text.lower() for m in state.get("messages") or [] if isinstance(m, HumanMessage)
    )
    named = [
        param
        for param, patterns in _SETTING_WORDS.items()
        if any(re.search(pattern, said) for pattern in patterns)
    ]
    return [*_FROM_THE_DISCUSSION, *named]


async def comfyui(state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """Generate the plan with ComfyUI (or record it as queued when there is no ComfyUI)."""
    plan = plan_of(state)
    if plan is None:  # cannot happen through the router; refuse loudly rather than guess
        raise RuntimeError("generation requested without a plan")
    configurable = config.get("configurable") or {}
    service: GenerationBackend | None = configurable.get("generation_service")
    if service is None:
        # No studio server here (LangGraph Studio, an embedding app): talk to ComfyUI itself.
        url = Configuration.from_runnable_config(config).comfyui_url.strip()
        if not url:
            return _queued_only(plan)
        service = DirectComfyUI(url)
    thread_id = str(configurable.get("thread_id") or "")
    settings = GenerationSettings.from_config(config)
    unload: list[str] = []
    host: str | None = None
    if settings.unload_ollama_before_generation:
        unload, host = ollama_models(config)
    writer = get_stream_writer()

    def emit(kind: str, data: dict[str, Any]) -> None:
        writer({"kind": kind, "data": data})

    try:
        outcome = await service.run_for_thread(
            thread_id,
            plan,
            settings=settings,
            emit=emit,
            request_key=request_key(state, config),
            unload_models=unload,
            ollama_host=host,
            explicit=explicit_settings(state),
            # The stored image the plan starts from (nodes/images.py), uploaded to ComfyUI
            # by the service with /upload/image.
            init_image=init_image_for(state, plan),
        )
        if outcome is None:
            log.warning(
                "thread %s is not a studio conversation: generation only recorded", thread_id
            )
            return _queued_only(plan)
    except StudioError as error:
        record = GenerationRecord(status="failed", plan=plan, error=error.message)
        message = studio_message(
            line("generation_failed", error=error.message),
            phase="complete",
            kind="generation",
            generation=dump(record),
        )
        return {"generation": dump(record), "messages": [message], **enter_phase("complete")}
    record = record_of(outcome)
    update: dict[str, Any] = {
        "generation": dump(record),
        "messages": messages(outcome, record),
        **enter_phase(final_phase(outcome)),
    }
    if outcome.plan != plan:
        # What actually ran (installed checkpoint, smaller size after OOM) is what an
        # iteration builds on; the seed is kept as it was.
        update["plan"] = dump(outcome.plan)
    return update


__all__ = ["GenerationBackend", "comfyui", "explicit_settings", "late_update", "line"]

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
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from uuid import uuid4

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer

from creative_studio.core.errors import StudioError
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.phases import enter_phase
from creative_studio.graph.prompting import moderator, team_prompts
from creative_studio.graph.state import (
    SPECIALISTS,
    GenerationRecord,
    Phase,
    StudioState,
    TechnicalPlan,
    dump,
    plan_of,
)
from creative_studio.nodes.comfyui_direct import DirectComfyUI
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
    ) -> GenerationOutcome | None: ...


# Studio lines of this node. graph/prompts/team.toml [moderator] may override each key.
_LINES = {
    "generation_done": "Done: {count} {what} ({template}, {width}x{height}, seed {seed}).",
    "generation_failed": "Generation failed: {error}",
    "generation_cancelled": "Generation cancelled.",
    "generation_waiting": "The generation waits for ComfyUI and will start by itself when it is back.",
}


def line(key: str, **values: Any) -> str:
    """A studio line from team.toml when it has one, else the built-in wording."""
    template = str(team_prompts().get("moderator", {}).get(key) or _LINES[key])
    return template.format(**values)


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


def _final_phase(outcome: GenerationOutcome) -> Phase:
    """A generation that waits for ComfyUI keeps the conversation in "generating"."""
    return "generating" if outcome.status == "queued" else "complete"


def _messages(outcome: GenerationOutcome, record: GenerationRecord) -> list[AIMessage]:
    waiting = outcome.status == "queued"
    # The service's own note already says why it waits: say it once, as the final line.
    spoken = outcome.notes[:-1] if waiting and outcome.notes else outcome.notes
    notes = [
        studio_message(
            note, phase="generating", kind="generation_note", generation_id=outcome.generation_id
        )
        for note in spoken
    ]
    plan = outcome.plan
    if outcome.status == "complete":
        videos = sum(1 for o in outcome.outputs if o.get("kind") == "video")
        count = len(outcome.outputs)
        what = ("video" if videos else "image") + ("s" if count != 1 else "")
        text = line(
            "generation_done",
            count=count,
            what=what,
            template=outcome.template or plan.template,
            width=plan.width,
            height=plan.height,
            seed=plan.seed,
        )
    elif waiting:
        text = outcome.notes[-1] if outcome.notes else line("generation_waiting")
    elif outcome.status == "cancelled":
        text = line("generation_cancelled")
    else:
        text = line("generation_failed", error=outcome.error or "unknown error")
    final = studio_message(
        text,
        phase=_final_phase(outcome),
        kind="generation",
        generation=dump(record),
        outputs=outcome.outputs,
    )
    return [*notes, final]


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
    record = GenerationRecord(
        status=outcome.status,
        progress=1.0 if outcome.status == "complete" else 0.0,
        generation_id=outcome.generation_id,
        outputs=outcome.outputs,
        error=outcome.error,
        plan=outcome.plan,
        waiting_for_server=outcome.status == "queued",
    )
    update: dict[str, Any] = {
        "generation": dump(record),
        "messages": _messages(outcome, record),
        **enter_phase(_final_phase(outcome)),
    }
    if outcome.plan != plan:
        # What actually ran (installed checkpoint, smaller size after OOM) is what an
        # iteration builds on; the seed is kept as it was.
        update["plan"] = dump(outcome.plan)
    return update

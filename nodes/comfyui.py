"""The ComfyUI tool node: the approved plan leaves the discussion here.

This node records the plan as a generation queued for ComfyUI and completes the
discussion. Building the workflow from templates, queueing it, following progress
and recovering from failures is the ComfyUI issue's work (docs/status.md).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from langchain_core.runnables import RunnableConfig

from creative_studio.graph.phases import enter_phase
from creative_studio.graph.prompting import moderator
from creative_studio.graph.state import GenerationRecord, StudioState, dump, plan_of
from creative_studio.nodes.speaking import studio_message


async def comfyui(state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """Record the plan as queued for generation and close the discussion."""
    plan = plan_of(state)
    if plan is None:  # cannot happen through the router; refuse loudly rather than guess
        raise RuntimeError("generation requested without a plan")
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

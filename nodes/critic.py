"""Lens, the quality critic: approves the plan or sends it back, with reasons.

The verdict is structured output (CriticVerdict). Send-backs are bounded by the
router (max_send_backs), so a picky critic cannot stall the team forever.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig

from creative_studio.graph.configuration import Configuration
from creative_studio.graph.prompting import build_messages, moderator
from creative_studio.graph.state import CriticVerdict, StudioState, current_of, dump
from creative_studio.nodes.speaking import (
    model_for,
    speak,
    specialist_message,
    studio_message,
)
from creative_studio.nodes.structured import ask_structured

ROLE = "critic"


async def critic(state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """Lens's turn: a discussion turn, or the review of Pixel's plan."""
    turn = current_of(state)
    if turn is None or turn.kind != "review":
        return await speak(ROLE, state, config)
    settings = Configuration.from_runnable_config(config)
    phase = state.get("phase", "review")
    try:
        model = await model_for(ROLE, config)
        reply, verdict = await ask_structured(
            model,
            build_messages(state, turn, settings),
            CriticVerdict,
            time_limit=settings.timeout_for(ROLE),
        )
    except Exception as error:
        detail = (
            str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        )
        note = studio_message(
            moderator("review_failed", error=detail), phase=phase, kind="review_failed"
        )
        skipped = CriticVerdict(approved=True, reasons=[f"review skipped: {detail}"])
        return {"messages": [note], "verdict": dump(skipped), "current": None}
    if not verdict.approved and verdict.send_back_to is None:
        verdict.send_back_to = "refinement"
    message = specialist_message(reply, verdict.summary(), turn, phase, verdict=dump(verdict))
    return {"messages": [message], "verdict": dump(verdict), "current": None}

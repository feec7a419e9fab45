"""Pixel, the technical director: the consensus becomes a validated plan.

In discussion turns Pixel talks like the others. In synthesis Pixel answers with a
JSON plan that pydantic validates (TechnicalPlan); an invalid reply gets one repair
attempt with the validation error, and a second failure is reported to the person,
never papered over with a guessed plan.
"""

from __future__ import annotations

import secrets
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig

from creative_studio.graph.configuration import Configuration
from creative_studio.graph.fidelity import fit_kind, repair
from creative_studio.graph.leaks import allowed_stems, foreign_words
from creative_studio.graph.prompting import build_messages, moderator
from creative_studio.graph.state import (
    StudioState,
    TechnicalPlan,
    current_of,
    dump,
    plan_of,
)
from creative_studio.graph.wishes import person_wishes
from creative_studio.nodes.images import plan_start
from creative_studio.nodes.speaking import (
    model_for,
    speak,
    specialist_message,
    studio_message,
    unavailable,
)
from creative_studio.nodes.structured import StructuredOutputError, ask_structured
from creative_studio.workflows.template_choice import template_kind

ROLE = "technical"
_NEW_SEED_WORDS = ("variation", "new seed", "different seed", "another seed", "reroll", "re-roll")


def choose_seed(plan: TechnicalPlan, previous: TechnicalPlan | None, directions: list[str]) -> int:
    """Iterations keep the previous seed (so "brighter neon" changes only the neon)."""
    latest = (directions[-1] if directions else "").lower()
    if previous is not None and not any(w in latest for w in _NEW_SEED_WORDS):
        return previous.seed
    if plan.seed and (previous is None or plan.seed != previous.seed):
        return plan.seed
    return secrets.randbelow(2**32)


async def technical(state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """Pixel's turn: a discussion turn, or the plan in synthesis."""
    turn = current_of(state)
    if turn is None or turn.kind != "plan":
        return await speak(ROLE, state, config)
    settings = Configuration.from_runnable_config(config)
    phase = state.get("phase", "synthesis")
    previous = plan_of(state)
    try:
        model = await model_for(ROLE, config)
        reply, plan = await ask_structured(
            model,
            build_messages(state, turn, settings),
            TechnicalPlan,
            time_limit=settings.timeout_for(ROLE),
        )
    except StructuredOutputError as error:
        failed = studio_message(
            moderator("plan_failed", error=str(error)[:300]), phase=phase, kind="plan_failed"
        )
        return {"messages": [failed], "current": None, "agenda": [], "awaiting_person": True}
    except Exception as error:
        return {**unavailable(turn, phase, error, config), "agenda": [], "awaiting_person": True}
    messages = state.get("messages", [])
    wishes = person_wishes(messages)
    plan.seed = choose_seed(plan, previous, [w.text for w in wishes.directions])
    plan = fit_kind(plan, wishes)  # a still or a video: the person's words decide
    preferred = settings.preferred_template
    # The person's preferred template, where it makes what the plan makes (a still or a video).
    if preferred and (template_kind(preferred) == "video") == (plan.video is not None):
        plan.template = preferred
    # A starting image the person gave (or "upscale it" about the last result) decides
    # img2img / upscale and the denoise, whatever the model wrote (nodes/images.py).
    plan, start_note = plan_start(state, plan, previous)
    # Whatever the model wrote, the prompt carries the person's request and directions.
    said = allowed_stems(messages)
    foreign = foreign_words(plan.positive_prompt, said)
    plan, report = repair(plan, wishes, foreign=foreign, conversation=said)
    text = "\n".join(filter(None, [plan.summary(), start_note, report.summary()]))
    message: AIMessage = specialist_message(
        reply, text, turn, phase, plan=dump(plan), fidelity=report.as_dict()
    )
    return {"messages": [message], "plan": dump(plan), "current": None, "verdict": None}

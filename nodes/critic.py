"""Lens, the quality critic: approves the plan or sends it back, with reasons.

The verdict is structured output (CriticVerdict). Send-backs are bounded by the
router (max_send_backs), so a picky critic cannot stall the team forever.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig

from creative_studio.graph.configuration import Configuration
from creative_studio.graph.fidelity import check
from creative_studio.graph.leaks import allowed_stems, strip_leaks
from creative_studio.graph.objections import is_concrete
from creative_studio.graph.prompting import build_messages, moderator
from creative_studio.graph.state import CriticVerdict, StudioState, current_of, dump, plan_of
from creative_studio.graph.wishes import person_wishes
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
    plan = plan_of(state)
    wishes = person_wishes(state.get("messages", []))
    report = check(plan, wishes) if plan else None
    if report is not None and not report.faithful:
        # Lens's deterministic check: a plan that drops the person's words goes back.
        missing = "; ".join(f"“{p}” ({', '.join(t)})" for p, t in report.missing.items())
        verdict = CriticVerdict(
            approved=False,
            reasons=[moderator("fidelity_sent_back", missing=missing)[:300]],
            send_back_to="synthesis",
        )
        note = studio_message(
            verdict.summary(), phase=phase, kind="fidelity", fidelity=report.as_dict()
        )
        return {"messages": [note], "verdict": dump(verdict), "current": None}
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
    allowed = allowed_stems(state.get("messages", []))
    verdict.reasons = [r for r in (strip_leaks(r, allowed)[0] for r in verdict.reasons) if r]
    if not verdict.approved and not any(is_concrete(r, plan) for r in verdict.reasons):
        # A rejection that names nothing in the plan sends nobody back.
        verdict = CriticVerdict(
            approved=True, reasons=[*verdict.reasons, "no concrete problem named"][:8]
        )
    if not verdict.approved and verdict.send_back_to is None:
        verdict.send_back_to = "refinement"
    lines = [verdict.summary()]
    if report is not None:
        count = len(wishes.directions)
        directions = f" and your {count} direction{'s' if count != 1 else ''}" if count else ""
        lines.append(moderator("fidelity_ok", directions=directions))
    message = specialist_message(
        reply,
        "\n".join(lines),
        turn,
        phase,
        verdict=dump(verdict),
        fidelity=report.as_dict() if report else None,
    )
    return {"messages": [message], "verdict": dump(verdict), "current": None}

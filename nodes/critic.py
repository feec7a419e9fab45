"""Lens, the quality critic: approves the plan or sends it back, with reasons.

The verdict is structured output (CriticVerdict). Send-backs are bounded by the
router (max_send_backs), so a picky critic cannot stall the team forever. A model that
cannot judge (the embedded ones, see ModelProvider.judges_readiness) is not asked for a
verdict at all: measured, a 0.5B model rejects sound plans with reasons that only restate
them ("the steps are set to 15"), and every such send-back costs a whole extra round. Its
review is then the studio's own deterministic check (fidelity plus the plan's numbers).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig

from creative_studio.graph.configuration import Configuration
from creative_studio.graph.fidelity import FidelityReport, check
from creative_studio.graph.leaks import allowed_stems, strip_leaks
from creative_studio.graph.objections import is_concrete
from creative_studio.graph.prompting import build_messages, moderator
from creative_studio.graph.state import (
    CriticVerdict,
    StudioState,
    TechnicalPlan,
    Turn,
    current_of,
    dump,
    plan_of,
)
from creative_studio.graph.wishes import PersonWishes, person_wishes
from creative_studio.nodes.speaking import (
    judges,
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
    if plan is not None and report is not None and not judges(ROLE, config, settings):
        return checked_review(plan, report, wishes, turn, phase)
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


def checked_review(
    plan: TechnicalPlan, report: FidelityReport, wishes: PersonWishes, turn: Turn, phase: str
) -> dict[str, Any]:
    """Lens's review when the model cannot judge: the studio's checks, said plainly.

    Only reached for a faithful plan (an unfaithful one was sent back above), and the plan
    already passed pydantic's bounds, so the verdict approves and says what was checked.
    """
    count = len(wishes.directions)
    directions = f" and your {count} direction{'s' if count != 1 else ''}" if count else ""
    kept = moderator("fidelity_ok", directions=directions).removeprefix("Fidelity check: ")
    reasons = [
        kept[:1].upper() + kept[1:].rstrip("."),
        moderator(
            "checked_numbers",
            template=plan.template,
            width=plan.width,
            height=plan.height,
            steps=plan.steps,
            cfg=plan.cfg,
        ),
    ]
    verdict = CriticVerdict(approved=True, reasons=reasons)
    text = verdict.summary()
    message = specialist_message(
        AIMessage(content=text, id=str(uuid4())),
        text,
        turn,
        phase,
        verdict=dump(verdict),
        fidelity=report.as_dict(),
        checked_by="studio",
        # Not a model's words: the chat says so where it names each turn's model.
        metadata={"model": "the studio's own check"},
    )
    return {"messages": [message], "verdict": dump(verdict), "current": None}

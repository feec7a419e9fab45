"""The router's phase logic: what the meeting does next when nobody is scheduled.

One function per phase, each deterministic (the same state gives the same next turn):

* ideation lets Luna, Frame and Saga explore freely;
* refinement has them answer each other, with one precise question per round;
* the consensus detector's signal decides when to ask "are we ready?", when to move
  on, and when to ask the person to decide;
* synthesis gives Pixel the lead, the creatives may object to the plan;
* review lets Lens approve or send back (a bounded number of times).

Separate from nodes/router.py, which only runs the schedule (the agenda) and asks
``PHASE_LOGIC`` for the next step when the agenda is empty.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from creative_studio.graph.configuration import Configuration
from creative_studio.graph.phases import enter_phase
from creative_studio.graph.prompting import moderator, personas
from creative_studio.graph.state import (
    CREATIVES,
    SpecialistRole,
    StudioState,
    Turn,
    brief_of,
    consensus_of,
    dump,
    plan_of,
    verdict_of,
)
from creative_studio.nodes.speaking import studio_message

__all__ = ["PHASE_LOGIC"]


def _ideation(state: StudioState, settings: Configuration) -> dict[str, Any]:
    if (
        state.get("clarifying_asked")
        and not state.get("round")
        and not state.get("awaiting_person")
        and _asked_and_unanswered(state)
    ):
        return {"awaiting_person": True, "current": None}
    signal = consensus_of(state).signal
    round_ = state.get("round", 0)
    if round_ < settings.ideation_rounds and signal != "loop":
        return {
            "round": round_ + 1,
            "agenda": [dump(Turn(speaker=r, kind="explore")) for r in CREATIVES],
        }
    move = enter_phase("refinement")
    key = "loop_detected" if signal == "loop" else "stale_ideation"
    move["messages"] = [studio_message(moderator(key, next_phase="refinement"), phase="refinement")]
    return move


def _asked_and_unanswered(state: StudioState) -> bool:
    """The clarifying questions were asked and the person has not answered since."""
    for message in reversed(state.get("messages", [])):
        if message.type == "human":
            return False
        if message.additional_kwargs.get("kind") == "clarify":
            return True
    return False


def _refinement(state: StudioState, settings: Configuration) -> dict[str, Any]:
    stats = consensus_of(state)
    round_ = state.get("round", 0)
    if stats.signal == "ready":
        move = enter_phase("synthesis")
        move["messages"] = [studio_message(moderator("everyone_ready"), phase="synthesis")]
        return move
    if stats.signal == "loop":
        move = enter_phase("synthesis")
        move["messages"] = [
            studio_message(moderator("loop_detected", next_phase="synthesis"), phase="synthesis")
        ]
        return move
    if stats.signal == "objection":
        stuck = state.get("rounds_without_consensus", 0) + 1
        if stuck >= settings.max_rounds:
            return _ask_to_decide(state, stuck)
        objections = "; ".join(
            f"{personas()[r].name}: {why}" for r, why in stats.objections.items() if why
        )
        update = _discussion_round(state, round_, leaders=list(stats.objections))
        update["rounds_without_consensus"] = stuck
        update["messages"] = [
            studio_message(
                moderator("objections", objections=objections or "open points"),
                phase="refinement",
            ),
            *update.get("messages", []),
        ]
        return update
    voters = _voters(settings)
    # Two rounds give judging members room to agree; without them one round of precise
    # questions is the discussion, and the detector's signals do the rest.
    if stats.signal == "converging" or round_ >= (2 if voters else 1):
        if not voters:
            # Nobody's model can judge readiness: the detector's own signals decide.
            move = enter_phase("synthesis")
            move["messages"] = [studio_message(moderator("converged"), phase="synthesis")]
            return move
        fresh = stats.model_copy(
            update={"votes": {}, "objections": {}, "signal": "continue", "voters": voters}
        )
        return {
            "consensus": dump(fresh),
            "agenda": [dump(Turn(speaker=r, kind="vote")) for r in voters],
            "messages": [studio_message(moderator("ready_question"), phase="refinement")],
        }
    return _discussion_round(state, round_)


def _voters(settings: Configuration) -> list[SpecialistRole]:
    """The creatives whose models can judge readiness (those that cannot are not asked)."""
    return [r for r in CREATIVES if r in settings.judging_roles]


def _discussion_round(
    state: StudioState, round_: int, leaders: list[str] | None = None
) -> dict[str, Any]:
    """One refinement round: a precise question to one member, the others respond."""
    asked = CREATIVES[round_ % len(CREATIVES)]
    questions = personas()[asked].specifics
    question = questions[(round_ // len(CREATIVES)) % len(questions)]
    order = [r for r in (leaders or []) if r in CREATIVES and r != asked]
    order += [r for r in CREATIVES if r != asked and r not in order]
    agenda = [Turn(speaker=asked, kind="specifics", directive=question)]
    agenda += [Turn(speaker=r, kind="respond") for r in order]
    return {
        "round": round_ + 1,
        "agenda": [dump(t) for t in agenda],
        "messages": [studio_message(question, phase="refinement", kind="question")],
    }


def _ask_to_decide(state: StudioState, rounds: int) -> dict[str, Any]:
    """No consensus after N rounds: summarise the options and let the person decide."""
    brief = brief_of(state)
    stats = consensus_of(state)
    options = []
    for role in CREATIVES:
        point = stats.objections.get(role) or brief.notes.get(role)
        if point:
            options.append({"role": role, "speaker": personas()[role].name, "option": point})
    listing = "\n".join(f"- {o['speaker']}: {o['option']}" for o in options)
    text = moderator("no_consensus", rounds=rounds, options=listing or "- (no clear options)")
    question = {"type": "no_consensus", "question": text, "options": options, "id": str(uuid4())}
    return {
        "rounds_without_consensus": rounds,
        "question": question,
        "current": None,
        "agenda": [],
        "messages": [studio_message(text, phase=state.get("phase", "refinement"), kind="question")],
    }


def _synthesis(state: StudioState, settings: Configuration) -> dict[str, Any]:
    if state.get("plan_pending", True):
        voters = _voters(settings)
        stats = consensus_of(state).model_copy(
            update={"votes": {}, "objections": {}, "voters": voters}
        )
        directive = " ".join(filter(None, [state.get("revision_notes", ""), settings.plan_hint()]))
        plan_turn = Turn(speaker="technical", kind="plan", directive=directive)
        checks = [Turn(speaker=r, kind="plan_check") for r in voters]
        return {
            "plan_pending": False,
            "consensus": dump(stats),
            "agenda": [dump(plan_turn), *(dump(t) for t in checks)],
        }
    stats = consensus_of(state)
    objections = {r: why for r, why in stats.objections.items() if not stats.votes.get(r, True)}
    revisions = state.get("plan_revisions", 0)
    if objections and revisions < settings.max_plan_revisions:
        notes = "; ".join(f"{personas()[r].name}: {why}" for r, why in objections.items())
        return {
            "plan_pending": True,
            "plan_revisions": revisions + 1,
            "revision_notes": f"Revise the plan: {notes}",
            "messages": [
                studio_message(moderator("plan_objections", objections=notes), phase="synthesis")
            ],
        }
    return enter_phase("review", revision_notes="")


def _review(state: StudioState, settings: Configuration) -> dict[str, Any]:
    verdict = verdict_of(state)
    if verdict is None:
        return {"agenda": [dump(Turn(speaker="critic", kind="review"))]}
    if not verdict.approved:
        reasons = "; ".join(verdict.reasons) or "unspecified"
        count = state.get("send_backs", 0)
        if count < settings.max_send_backs:
            target = verdict.send_back_to or "refinement"
            move = enter_phase(
                target, send_backs=count + 1, revision_notes=f"Lens's concerns: {reasons}"
            )
            move["messages"] = [
                studio_message(moderator("send_back", phase=target, reasons=reasons), phase=target)
            ]
            return move
        limit = studio_message(
            moderator("send_back_limit", reasons=reasons, count=count), phase="review"
        )
        return {**_approve_or_generate(state, settings), "messages": [limit]}
    return _approve_or_generate(state, settings)


def _approve_or_generate(state: StudioState, settings: Configuration) -> dict[str, Any]:
    if settings.approve_plans and not state.get("approved_by_person"):
        plan = plan_of(state)
        text = moderator("approval_question")
        return {
            "question": {
                "type": "approve_plan",
                "question": text,
                "plan": dump(plan) if plan else None,
                "id": str(uuid4()),
            },
            "current": None,
            "agenda": [],
        }
    return enter_phase("generating")


PHASE_LOGIC = {
    "ideation": _ideation,
    "refinement": _refinement,
    "synthesis": _synthesis,
    "review": _review,
}

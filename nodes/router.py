"""The router (supervisor): who speaks next, and when the phase moves on.

Deterministic on purpose: the same state always gives the same next turn, so the
flow is testable, cheap (no model call) and explainable. The creative judgement
lives in the specialists; the router only keeps the meeting going:

* the person's new messages always come first: the relevant specialists answer them;
* ideation lets Luna, Frame and Saga explore freely;
* refinement has them answer each other, with one precise question per round;
* the consensus detector's signal decides when to ask "are we ready?", when to move
  on, and when to ask the person to decide;
* synthesis gives Pixel the lead, the creatives may object to the plan;
* review lets Lens approve or send back (a bounded number of times).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, cast
from uuid import uuid4

from langchain_core.messages import AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END

from creative_studio.core.text import content_words
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.phases import enter_phase
from creative_studio.graph.prompting import moderator, personas, team_prompts
from creative_studio.graph.state import (
    CREATIVES,
    Brief,
    SpecialistRole,
    StudioState,
    Turn,
    agenda_of,
    brief_of,
    consensus_of,
    current_of,
    dump,
    plan_of,
    verdict_of,
)
from creative_studio.graph.wishes import person_wishes
from creative_studio.nodes.speaking import judges, studio_message

MAX_FAILURES = 5  # model failures in a row before the team stops and tells the person


def text_digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def new_user_messages(state: StudioState) -> list[AnyMessage]:
    """The person's messages the team has not taken in: new ones, and ones edited in place.

    LangGraph Studio edits a message by writing new text under the same id; the digest of
    what the team took in tells such an edit from the message it already answered.
    """
    handled = set(state.get("handled_user_ids") or [])
    digests = state.get("handled_user_digests") or {}
    return [
        m
        for m in state.get("messages", [])
        if m.type == "human"
        and (
            m.id not in handled
            or (str(m.id) in digests and digests[str(m.id)] != text_digest(m.text))
        )
    ]


def _first_request_id(state: StudioState) -> str | None:
    first = next((m for m in state.get("messages", []) if m.type == "human"), None)
    return str(first.id) if first is not None else None


def is_unclear(text: str) -> bool:
    """Too vague to plan: empty of content, or only words like 'make an image'."""
    clarity = team_prompts()["clarity"]
    words = content_words(text) - set(clarity["vague_words"])
    return len(words) < int(clarity["min_content_words"])


def relevant_roles(text: str, limit: int = 2) -> list[str]:
    """Who should answer the person: named members first, then by topic keywords."""
    lowered = text.lower()
    words = set(re.findall(r"[a-z0-9][a-z0-9'-]*", lowered))
    named = [role for role, p in personas().items() if re.search(rf"\b{p.name.lower()}\b", lowered)]
    if named:
        return named[:limit]
    scores = {role: len(words & set(p.keywords)) for role, p in personas().items()}
    ranked = [role for role, score in sorted(scores.items(), key=lambda kv: -kv[1]) if score > 0]
    return ranked[:limit] or ["style", "story"]


def follow_messages(brief: Brief, messages: list[AnyMessage]) -> Brief:
    """The brief's request and directions, recomputed from the person's messages.

    Derived, never patched: a fork from any checkpoint or an edited message gives the brief
    (and so every prompt and plan) exactly what the messages now say.
    """
    wishes = person_wishes(messages)
    return brief.model_copy(
        update={
            "request": (wishes.request.text if wishes.request else brief.request)[:1000],
            "directions": [w.text[:300] for w in wishes.directions][-5:],
        }
    )


def judging_roles(config: RunnableConfig, settings: Configuration) -> list[str]:
    """Roles whose model can judge whether the team is ready (the provider knows).

    The embedded models cannot: their votes are the same sentence whatever was said
    (bench/quality.py transcripts), so they are not asked and the detector decides.
    """
    return [r for r in CREATIVES if judges(r, config, settings)]


def _take_in_user(state: StudioState) -> dict[str, Any]:
    """The person spoke: their words win over whatever was scheduled."""
    new = new_user_messages(state)
    text = " / ".join(m.text.strip() for m in new)
    brief = brief_of(state)
    handled = list(state.get("handled_user_ids") or [])
    update: dict[str, Any] = {
        "handled_user_ids": [*handled, *(str(m.id) for m in new if str(m.id) not in handled)],
        "handled_user_digests": {
            **(state.get("handled_user_digests") or {}),
            **{str(m.id): text_digest(m.text) for m in new},
        },
        "awaiting_person": False,
        "question": None,
        "consecutive_failures": 0,
    }
    phase = state.get("phase", "ideation")
    if brief.request and _first_request_id(state) in {str(m.id) for m in new}:
        # The request itself was edited in place: the team starts over from it.
        fresh = follow_messages(Brief(), state.get("messages", []))
        update.update(enter_phase("ideation"), plan=None, verdict=None, generation=None)
        update.update(brief=dump(fresh), clarifying_asked=False, send_backs=0, plan_revisions=0)
        return update
    if not brief.request:
        # The first message is the request; any sent right after it are its first directions.
        first = new[0].text.strip()
        brief.request = first[:1000]
        brief.directions = [m.text.strip()[:300] for m in new[1:]][-5:]
        update.update(enter_phase("ideation"))
        update["brief"] = dump(brief)
        if is_unclear(" ".join(m.text for m in new)):
            update.update(clarifying_asked=True)
            update["agenda"] = [dump(Turn(speaker=r, kind="clarify")) for r in ("style", "story")]
        else:
            update["agenda"] = []
        return update
    if phase == "ideation" and state.get("clarifying_asked") and not state.get("round"):
        # The answer to our clarifying question completes the request.
        update["brief"] = dump(follow_messages(brief, state.get("messages", [])))
        update["agenda"] = []
        return update
    update["brief"] = dump(follow_messages(brief, state.get("messages", [])))
    responders = relevant_roles(text)
    answers = [Turn.model_validate({"speaker": r, "kind": "answer_user"}) for r in responders]
    if phase in ("synthesis", "review", "generating", "complete"):
        # A new direction reopens the discussion; the last plan stays as the starting point.
        update.update(enter_phase("refinement", send_backs=0))
        if phase == "complete":
            update["messages"] = [studio_message(moderator("iterate"), phase="refinement")]
        update["agenda"] = [dump(t) for t in answers]
        return update
    # Mid-discussion: answer first, then resume the interrupted schedule with the new
    # direction in mind. Votes are dropped (asked again later); whoever answers the
    # person has had their say for this round.
    cut_off = current_of(state)
    remaining = [t for t in ([cut_off] if cut_off else []) + agenda_of(state)]
    resumed = [
        t
        for t in remaining
        if t.kind in ("explore", "respond", "specifics") and t.speaker not in responders
    ]
    update["consensus"] = dump(consensus_of(state).model_copy(update={"signal": "continue"}))
    update["agenda"] = [dump(t) for t in [*answers, *resumed]]
    return update


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


_PHASE_LOGIC = {
    "ideation": _ideation,
    "refinement": _refinement,
    "synthesis": _synthesis,
    "review": _review,
}


def _merge(state: StudioState, update: dict[str, Any]) -> StudioState:
    """State as the next decision sees it (messages are only appended, so skip them)."""
    merged: dict[str, Any] = {**state, **{k: v for k, v in update.items() if k != "messages"}}
    return cast(StudioState, merged)


def _combine(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    messages = [*first.get("messages", []), *second.get("messages", [])]
    combined = {**first, **second}
    if messages:
        combined["messages"] = messages
    return combined


async def router(state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """Decide the next turn; the edge function below turns it into the next node."""
    settings = Configuration.from_runnable_config(config)
    settings.judging_roles = judging_roles(config, settings)
    update: dict[str, Any] = {"current": None}
    if new_user_messages(state):
        update = _combine(update, _take_in_user(state))
    view = _merge(state, update)
    if view.get("consecutive_failures", 0) >= MAX_FAILURES:
        return _combine(update, {"awaiting_person": True, "agenda": []})
    # A loop in the discussion overrides the schedule: drop it and move on.
    if consensus_of(view).signal == "loop" and view.get("phase") in ("ideation", "refinement"):
        update = _combine(update, {"agenda": []})
        view = _merge(state, update)
    for _ in range(4):  # a phase change may need one more decision before a turn exists
        if view.get("awaiting_person") or view.get("question"):
            return update
        agenda = agenda_of(view)
        if agenda:
            turn, rest = agenda[0], agenda[1:]
            return _combine(update, {"current": dump(turn), "agenda": [dump(t) for t in rest]})
        logic = _PHASE_LOGIC.get(view.get("phase", "ideation"))
        if logic is None:  # generating / complete: the edge function takes it from here
            return update
        update = _combine(update, logic(view, settings))
        view = _merge(state, update)
    return update


def route(state: StudioState) -> str:
    """Edge function: the node that runs next."""
    if state.get("question"):
        return "ask_person"
    turn = current_of(state)
    if turn is not None:
        return turn.speaker
    if state.get("phase") == "generating" and not state.get("awaiting_person"):
        if (state.get("generation") or {}).get("waiting_for_server"):
            return END  # parked until ComfyUI is back; a new message reopens the discussion
        return "comfyui"
    return END


__all__ = ["Brief", "is_unclear", "relevant_roles", "route", "router"]

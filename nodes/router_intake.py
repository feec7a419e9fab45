"""The router's intake: what the person said that the team has not taken in yet.

The person's new messages always come first, so before the router schedules anything it
folds them into the state: the brief's request and directions (derived from the messages,
never patched), who answers them, and whether the request is too vague to plan. Kept apart
from the phase logic (nodes/router_phases.py) because it is about the person's words, not
about the meeting's schedule; nodes/router.py calls ``take_in_user`` first in every turn.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from langchain_core.messages import AnyMessage

from creative_studio.core.text import content_words
from creative_studio.graph.phases import enter_phase
from creative_studio.graph.prompting import moderator, personas, team_prompts
from creative_studio.graph.state import (
    Brief,
    StudioState,
    Turn,
    agenda_of,
    brief_of,
    consensus_of,
    current_of,
    dump,
)
from creative_studio.graph.wishes import person_wishes, without_address
from creative_studio.nodes.speaking import studio_message

__all__ = [
    "follow_messages",
    "is_unclear",
    "new_user_messages",
    "relevant_roles",
    "take_in_user",
    "text_digest",
]


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
    request = without_address(wishes.request.text) if wishes.request else brief.request
    return brief.model_copy(
        update={
            "request": request[:1000],
            "directions": [without_address(w.text)[:300] for w in wishes.directions][-5:],
        }
    )


def take_in_user(state: StudioState) -> dict[str, Any]:
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
        first = without_address(new[0].text)
        brief.request = first[:1000]
        brief.directions = [without_address(m.text)[:300] for m in new[1:]][-5:]
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

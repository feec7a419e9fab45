"""The consensus detector: are the turns still adding new ideas?

After every specialist turn it measures the turn's novelty against everything said
before (content-word overlap), spots a turn that repeats an earlier one almost word
for word, tallies readiness votes, and keeps the running brief short and current.
Its ``signal`` tells the router what to do next:

* ``continue``   - ideas are still flowing;
* ``converging`` - a full round added little: time to ask "are we ready?";
* ``ready``      - everyone voted yes;
* ``objection``  - somebody voted no (with a reason);
* ``loop``       - the team repeats itself: force the phase forward.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AnyMessage
from langchain_core.runnables import RunnableConfig

from creative_studio.core.text import (
    content_words,
    first_sentence,
    novelty,
    parse_vote,
    similarity,
)
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.objections import counts_as_objection
from creative_studio.graph.state import (
    CREATIVES,
    SPECIALISTS,
    StudioState,
    brief_of,
    consensus_of,
    dump,
    plan_of,
    role_of,
)

DISCUSSION_KINDS = ("explore", "respond", "specifics", "answer_user")
VOTE_KINDS = ("vote", "plan_check")
LOOP_REPEATS = 2  # near-identical turns in one phase before we call it a loop
HISTORY = 12  # earlier turns compared against


def _specialist_turns(messages: list[AnyMessage]) -> list[AnyMessage]:
    return [m for m in messages if m.type == "ai" and role_of(m) in SPECIALISTS]


async def consensus(state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """Measure the turn that just ended and update the brief and the signal."""
    settings = Configuration.from_runnable_config(config)
    messages = state.get("messages", [])
    if not messages or messages[-1].type != "ai":
        return {}
    last = messages[-1]
    meta = last.additional_kwargs
    stats = consensus_of(state)
    brief = brief_of(state)
    update: dict[str, Any] = {"turn_count": state.get("turn_count", 0) + 1}

    if meta.get("kind") == "unavailable":
        # A member whose model failed abstains: it neither blocks nor approves a vote.
        role = str(meta.get("unavailable_role", ""))
        if meta.get("turn_kind") in VOTE_KINDS and role:
            stats.votes[role] = True
        update["consecutive_failures"] = state.get("consecutive_failures", 0) + 1
    elif role_of(last) in SPECIALISTS:
        update["consecutive_failures"] = 0
        role, kind, text = role_of(last), meta.get("kind"), last.text
        phase = state.get("phase")
        if kind in DISCUSSION_KINDS:
            earlier = [m.text for m in _specialist_turns(messages[:-1])][-HISTORY:]
            known = content_words(brief.render()) - content_words(text)
            for previous in earlier:
                known |= content_words(previous)
            score = novelty(text, known)
            stats.novelty = [*stats.novelty, round(score, 3)][-HISTORY:]
            stats.stale_streak = stats.stale_streak + 1 if score < settings.novelty_threshold else 0
            same_phase = [
                m.text
                for m in _specialist_turns(messages[:-1])[-HISTORY:]
                if m.additional_kwargs.get("phase") == phase
            ]
            if any(similarity(text, prev) >= settings.repeat_threshold for prev in same_phase):
                stats.repeats += 1
            brief.notes[role] = first_sentence(text)
        elif kind in VOTE_KINDS:
            ready, reason = parse_vote(text)
            # A base model cannot judge readiness; a vague or self-contradicting "not yet"
            # abstains. The detector's own signals then decide (graph/objections.py).
            judges = not (meta.get("metadata") or {}).get("base_model", False)
            objecting = counts_as_objection(
                ready, reason, plan=plan_of(state), brief=brief.render(), judges=judges
            )
            stats.votes[role] = not objecting
            if objecting:
                stats.objections[role] = reason
            else:
                stats.objections.pop(role, None)

    voters = set(stats.voters if stats.voters is not None else CREATIVES)
    voting = meta.get("kind") in VOTE_KINDS or meta.get("turn_kind") in VOTE_KINDS
    if stats.repeats >= LOOP_REPEATS:
        stats.signal = "loop"
    elif voting and voters <= set(stats.votes):
        stats.signal = "ready" if all(stats.votes[r] for r in voters) else "objection"
    elif stats.stale_streak >= len(CREATIVES):
        stats.signal = "converging"
    else:
        stats.signal = "continue"
    update["consensus"] = dump(stats)
    update["brief"] = dump(brief)
    return update

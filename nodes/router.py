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

This module runs the schedule (the agenda) and the edge function; taking in the person's
messages is nodes/router_intake.py, each phase's next step nodes/router_phases.py.
"""

from __future__ import annotations

from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END

from creative_studio.graph.configuration import Configuration
from creative_studio.graph.state import (
    CREATIVES,
    Brief,
    StudioState,
    agenda_of,
    consensus_of,
    current_of,
    dump,
)
from creative_studio.nodes.router_intake import (
    is_unclear,
    new_user_messages,
    relevant_roles,
    take_in_user,
)
from creative_studio.nodes.router_phases import PHASE_LOGIC
from creative_studio.nodes.speaking import judges

MAX_FAILURES = 5  # model failures in a row before the team stops and tells the person


def judging_roles(config: RunnableConfig, settings: Configuration) -> list[str]:
    """Roles whose model can judge whether the team is ready (the provider knows).

    The embedded models cannot: their votes are the same sentence whatever was said
    (bench/quality.py transcripts), so they are not asked and the detector decides.
    """
    return [r for r in CREATIVES if judges(r, config, settings)]


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
        update = _combine(update, take_in_user(state))
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
        logic = PHASE_LOGIC.get(view.get("phase", "ideation"))
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

"""Phase transitions, in one place, so the router and the human node agree on them."""

from __future__ import annotations

from typing import Any

from creative_studio.graph.state import ConsensusStats, Phase, dump


def enter_phase(phase: Phase, **extra: Any) -> dict[str, Any]:
    """The state update for entering ``phase``: fresh round counters and consensus stats."""
    update: dict[str, Any] = {
        "phase": phase,
        "round": 0,
        "agenda": [],
        "current": None,
        "consensus": dump(ConsensusStats()),
    }
    if phase in ("ideation", "refinement"):
        update["rounds_without_consensus"] = 0
    if phase == "synthesis":
        update.update(plan_pending=True, plan_revisions=0, approved_by_person=False)
    if phase == "review":
        update.update(verdict=None, approved_by_person=False)
    update.update(extra)
    return update

"""Votes that mean something: when a "not yet" counts, and when the detector decides instead.

A small model's vote is often noise: "NOT YET - we're ready." contradicts itself, and
"NOT YET - our plan is still in progress." names nothing anyone could change. Such a vote
abstains (it neither blocks nor approves); so does every vote of a base model, which
cannot judge readiness at all. Then the consensus detector's own measures (novelty,
repetition, rounds) decide. Only an objection that names something concrete (a thing in
the image, the plan or the craft — not just "the plan", "progress", "ready") holds the
team back or sends Pixel to revise.
"""

from __future__ import annotations

import re

from creative_studio.graph.wishes import stem, stems
from creative_studio.workflows.plan import TechnicalPlan

_GENERIC_TEXT = """
plan plans prompt team progress ready still yet need needs needed decide decided work
working good fine better best idea ideas final finish finished everything something nothing
sure right missing done settled agree agreed discussion point points thing things detail
details more less bit part parts overall whole vision direction concept approach current
clear clearer enough quite time moment's step next first last change changes look
think know see say saying said feel feeling feels everyone everybody together happy
talk talking discuss discussing talked wait waiting go going still yet really certain
almost nearly close closer possible possibly maybe perhaps probably already soon
"""
_GENERIC = frozenset(stem(w) for w in _GENERIC_TEXT.split())
_READY_WORDS = re.compile(
    r"\b(we'?re ready|i'?m ready|ready to go|good to go|all set|settled|looks good|works for me|"
    r"we agree|i agree|fine as it is)\b",
    re.IGNORECASE,
)
_STILL_OPEN = re.compile(r"\b(but|except|need|needs|missing|unless|change|instead)\b", re.I)


def is_concrete(reason: str, plan: TechnicalPlan | None = None, brief: str = "") -> bool:
    """Does the objection name something: a thing in the image, the plan or the craft?

    Any content word beyond the vocabulary of vague hesitation counts ("the courier is
    missing", "the camera angle"); "our plan is still in progress" does not.
    """
    said = stems(reason) - _GENERIC
    return bool(said)


def contradicts_itself(ready: bool, reason: str) -> bool:
    """A "not yet" whose reason says the team is ready."""
    return not ready and bool(_READY_WORDS.search(reason)) and not _STILL_OPEN.search(reason)


def counts_as_objection(
    ready: bool, reason: str, *, plan: TechnicalPlan | None, brief: str, judges: bool = True
) -> bool:
    """Whether a vote holds the team back (True) or abstains / approves (False)."""
    if ready or not judges:
        return False
    if contradicts_itself(ready, reason):
        return False
    return is_concrete(reason, plan, brief)


__all__ = ["contradicts_itself", "counts_as_objection", "is_concrete"]

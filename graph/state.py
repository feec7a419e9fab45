"""The studio's typed state: everything a turn needs, in one module.

Nodes are stateless: every call reads what it needs from this state (the running
brief, the recent transcript, the plan) so a conversation can be resumed by any
process from its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, cast

from langchain_core.messages import AnyMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from creative_studio.core.roles import CREATIVES, SPECIALISTS, Role, SpecialistRole
from creative_studio.workflows.plan import (
    CUSTOM_TEMPLATE_PATTERN,
    CustomTemplate,
    LoRA,
    TechnicalPlan,
    Template,
    VideoSettings,
)

Phase = Literal["ideation", "refinement", "synthesis", "review", "generating", "complete"]
PHASES: tuple[Phase, ...] = (
    "ideation",
    "refinement",
    "synthesis",
    "review",
    "generating",
    "complete",
)

TurnKind = Literal[
    "explore",  # ideation: free exploration of the request
    "respond",  # refinement: react to what the others said
    "specifics",  # refinement: answer the router's precise question
    "answer_user",  # the person spoke: answer them directly
    "clarify",  # the request is too vague: ask the person a question
    "vote",  # "Team, are we ready to generate?"
    "plan",  # Pixel drafts the technical plan
    "plan_check",  # a creative checks the plan against their points
    "review",  # Lens approves or sends back
]


class Turn(BaseModel):
    """One scheduled contribution: who speaks, what kind of turn, and why."""

    speaker: SpecialistRole
    kind: TurnKind
    directive: str = ""  # a precise question or instruction from the router, if any


class CriticVerdict(BaseModel):
    """Lens's review of the plan."""

    approved: bool
    reasons: list[str] = Field(default_factory=list, max_length=8)
    send_back_to: Literal["refinement", "synthesis"] | None = None

    def summary(self) -> str:
        why = "; ".join(self.reasons)
        if self.approved:
            return f"Approved. {why}".strip()
        target = self.send_back_to or "refinement"
        return f"Sending this back to {target}: {why or 'it does not hold together yet.'}"


class GenerationRecord(BaseModel):
    """What happened to the plan once it left the discussion."""

    status: Literal["queued", "running", "complete", "failed", "cancelled"] = "queued"
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    generation_id: str | None = None
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    plan: TechnicalPlan | None = None
    # Queued because ComfyUI is away: the conversation stays in "generating" and the
    # generation starts by itself when the server answers (the graph does not loop on it).
    waiting_for_server: bool = False


class Brief(BaseModel):
    """The short running summary of what the team has agreed so far.

    Kept bounded (one note per role, the person's directions) so that every
    prompt stays the same size however long the conversation gets.
    """

    request: str = ""
    directions: list[str] = Field(default_factory=list)  # later wishes of the person, newest last
    notes: dict[str, str] = Field(default_factory=dict)  # role -> that role's latest key point
    decisions: list[str] = Field(default_factory=list)  # what the person decided when asked

    def render(self, *, notes: bool = True) -> str:
        """The brief as prompt text; ``notes=False`` leaves out the roles' key points (a
        prompt whose transcript still shows every turn has them already)."""
        parts = [f"Request: {self.request or '(none yet)'}"]
        if self.directions:
            parts.append("Person's later directions: " + " | ".join(self.directions))
        if self.decisions:
            parts.append("Person decided: " + " | ".join(self.decisions))
        for role, note in self.notes.items() if notes else ():
            parts.append(f"{role}: {note}")
        return "\n".join(parts)


class ConsensusStats(BaseModel):
    """What the consensus detector measured about the recent turns."""

    novelty: list[float] = Field(default_factory=list)  # per turn in the current phase
    stale_streak: int = 0  # consecutive turns that added almost nothing new
    repeats: int = 0  # turns that repeated an earlier turn almost word for word
    votes: dict[str, bool] = Field(default_factory=dict)  # role -> ready? (current vote)
    objections: dict[str, str] = Field(default_factory=dict)  # role -> reason
    signal: Literal["continue", "converging", "ready", "objection", "loop", "deadlock"] = "continue"
    voters: list[str] | None = None  # who was asked to vote (None: every creative)


def append_messages(current: Any, batches: Sequence[Any]) -> Any:
    """add_messages over a batch of writes (what DeltaChannel's reducer receives)."""
    for batch in batches:
        current = add_messages(current, batch)
    return current


# Messages are stored as deltas: each checkpoint keeps only the new messages (with a
# full snapshot every 50 updates), so storage grows linearly with the conversation
# instead of rewriting the whole transcript at every step.
MESSAGES_CHANNEL: DeltaChannel[list[AnyMessage]] = DeltaChannel(
    append_messages, snapshot_frequency=50
)


class StudioState(TypedDict, total=False):
    """The graph's state.

    Nested structures are stored as plain JSON dicts (``model_dump(mode="json")``)
    and read back through the pydantic models above with the ``*_of`` helpers:
    checkpoints then stay portable across processes, `langgraph dev` and parent
    graphs, and a bad value still fails loudly where a model is built.
    """

    messages: Annotated[list[AnyMessage], MESSAGES_CHANNEL]
    phase: Phase
    brief: dict[str, Any]  # Brief
    agenda: list[dict[str, Any]]  # list[Turn]: upcoming turns, decided by the router
    current: dict[str, Any] | None  # Turn being spoken now
    round: int  # discussion rounds in the current phase
    rounds_without_consensus: int
    turn_count: int
    handled_user_ids: list[str]  # user messages the team has already taken in
    handled_user_digests: dict[str, str]  # id -> digest of the text taken in (edits show)
    awaiting_person: bool  # the team asked the person something and waits for the answer
    plan: dict[str, Any] | None  # TechnicalPlan
    plan_revisions: int
    verdict: dict[str, Any] | None  # CriticVerdict
    send_backs: int
    consensus: dict[str, Any]  # ConsensusStats
    generation: dict[str, Any] | None  # GenerationRecord
    question: dict[str, Any] | None  # what the team asks the person (an interrupt payload)
    clarifying_asked: bool  # the team already asked the person to clarify the request
    plan_pending: bool  # synthesis: Pixel still has to (re)draft the plan
    revision_notes: str  # why the plan must change (objections, Lens's reasons)
    approved_by_person: bool  # the person approved the current plan (approve_plans setting)
    consecutive_failures: int  # turns in a row whose model failed


class StudioInput(TypedDict):
    """What a caller gives the graph: new messages (usually one from the person)."""

    messages: Annotated[list[AnyMessage], MESSAGES_CHANNEL]


def role_of(message: AnyMessage) -> Role:
    """Who wrote a message: "user", a specialist role, or "system" (the studio itself).

    Specialists' messages are *named* as the people they are (``name="Luna"``, what
    Studio and agent-chat-ui show); the role is kept in ``additional_kwargs["role"]``.
    Messages from before that (named by role, role in "speaker") read the same.
    """
    if message.type == "human":
        return "user"
    extra = message.additional_kwargs or {}
    for candidate in (extra.get("role"), extra.get("speaker"), message.name):
        if candidate in SPECIALISTS:
            return cast(SpecialistRole, candidate)
    return "system"


def brief_of(state: StudioState) -> Brief:
    return Brief.model_validate(state.get("brief") or {})


def plan_of(state: StudioState) -> TechnicalPlan | None:
    raw = state.get("plan")
    return TechnicalPlan.model_validate(raw) if raw else None


def verdict_of(state: StudioState) -> CriticVerdict | None:
    raw = state.get("verdict")
    return CriticVerdict.model_validate(raw) if raw else None


def consensus_of(state: StudioState) -> ConsensusStats:
    return ConsensusStats.model_validate(state.get("consensus") or {})


def agenda_of(state: StudioState) -> list[Turn]:
    return [Turn.model_validate(t) for t in state.get("agenda") or []]


def current_of(state: StudioState) -> Turn | None:
    raw = state.get("current")
    return Turn.model_validate(raw) if raw else None


def dump(model: BaseModel) -> dict[str, Any]:
    """The JSON form a pydantic value takes in the state."""
    return model.model_dump(mode="json")


__all__ = [
    "CREATIVES",
    "CUSTOM_TEMPLATE_PATTERN",
    "PHASES",
    "SPECIALISTS",
    "Brief",
    "ConsensusStats",
    "CriticVerdict",
    "CustomTemplate",
    "GenerationRecord",
    "LoRA",
    "Phase",
    "Role",
    "SpecialistRole",
    "StudioInput",
    "StudioState",
    "TechnicalPlan",
    "Template",
    "Turn",
    "TurnKind",
    "VideoSettings",
    "agenda_of",
    "brief_of",
    "consensus_of",
    "current_of",
    "dump",
    "plan_of",
    "role_of",
    "verdict_of",
]

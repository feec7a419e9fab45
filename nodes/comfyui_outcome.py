"""What a generation's outcome says in the conversation: the studio lines and the state.

The ComfyUI node (nodes/comfyui.py) speaks when the generation ends while it waits. Some
end later, with no node waiting: one that waited for ComfyUI, one a previous process
started, one the person cancelled through the conversation. For those the conversation
runner writes ``late_update`` into the thread (the graph's state, through the
checkpointer), so the state, GET /api/conversations/{id}, the event stream and the chat
all tell the result, with a line from Pixel who planned it.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, uuid5

from langchain_core.messages import AIMessage

from creative_studio.graph.phases import enter_phase
from creative_studio.graph.prompting import personas, team_prompts
from creative_studio.graph.state import GenerationRecord, Phase, dump
from creative_studio.nodes.speaking import studio_message
from creative_studio.workflows.run import GenerationOutcome

# Studio lines of this node. graph/prompts/team.toml [moderator] may override each key.
_LINES = {
    "generation_done": "Done: {count} {what} ({template}, {width}x{height}, seed {seed}).",
    "generation_failed": "Generation failed: {error}",
    "generation_cancelled": "Generation cancelled.",
    "generation_waiting": "The generation waits for ComfyUI and will start by itself when it is back.",
    "generation_late_done": "The generation that waited is ready. {done}",
    "generation_late_failed": "The generation that waited could not finish. {failed}",
}
_FINAL = ("complete", "failed", "cancelled")
_LATE_SPEAKER = "technical"  # Pixel planned it, Pixel reports it
_MESSAGE_NAMESPACE = uuid5(NAMESPACE_URL, "creative-studio/late-generation")


def line(key: str, **values: Any) -> str:
    """A studio line from team.toml when it has one, else the built-in wording."""
    template = str(team_prompts().get("moderator", {}).get(key) or _LINES[key])
    return template.format(**values)


def final_phase(outcome: GenerationOutcome) -> Phase:
    """A generation that waits for ComfyUI keeps the conversation in "generating"."""
    return "generating" if outcome.status == "queued" else "complete"


def record_of(outcome: GenerationOutcome) -> GenerationRecord:
    return GenerationRecord(
        status=outcome.status,
        progress=1.0 if outcome.status == "complete" else 0.0,
        generation_id=outcome.generation_id,
        outputs=outcome.outputs,
        error=outcome.error,
        plan=outcome.plan,
        waiting_for_server=outcome.status == "queued",
    )


def result_text(outcome: GenerationOutcome) -> str:
    """The one line that says how the generation ended."""
    plan = outcome.plan
    if outcome.status == "complete":
        videos = sum(1 for o in outcome.outputs if o.get("kind") == "video")
        count = len(outcome.outputs)
        what = ("video" if videos else "image") + ("s" if count != 1 else "")
        return line(
            "generation_done",
            count=count,
            what=what,
            template=outcome.template or plan.template,
            width=plan.width,
            height=plan.height,
            seed=plan.seed,
        )
    if outcome.status == "queued":
        return outcome.notes[-1] if outcome.notes else line("generation_waiting")
    if outcome.status == "cancelled":
        return line("generation_cancelled")
    return line("generation_failed", error=outcome.error or "unknown error")


def messages(outcome: GenerationOutcome, record: GenerationRecord) -> list[AIMessage]:
    """The node's lines: every note of the service, then the result."""
    waiting = outcome.status == "queued"
    # The service's own note already says why it waits: say it once, as the final line.
    spoken = outcome.notes[:-1] if waiting and outcome.notes else outcome.notes
    notes = [
        studio_message(
            note, phase="generating", kind="generation_note", generation_id=outcome.generation_id
        )
        for note in spoken
    ]
    final = studio_message(
        result_text(outcome),
        phase=final_phase(outcome),
        kind="generation",
        generation=dump(record),
        outputs=outcome.outputs,
    )
    return [*notes, final]


def late_update(
    values: dict[str, Any], outcome: GenerationOutcome, *, known: bool = False
) -> dict[str, Any] | None:
    """The state update for a result no node was waiting for, or None when it has no place.

    It belongs to the thread when the thread's generation is this one and has not ended
    (its node parked it, or a previous process ran it), or, with ``known``, when the
    caller knows the thread is generating it (a cancel through the conversation, whose
    node was stopped before it could record the generation). A discussion that went on
    meanwhile keeps its phase; one still "generating" is complete.
    """
    current = values.get("generation") or {}
    generating = values.get("phase") == "generating"
    ours = current.get("generation_id") == outcome.generation_id
    if ours and current.get("status") in _FINAL:
        return None  # the node itself already told it
    if not ours and not (known and generating):
        return None
    record = record_of(outcome)
    if outcome.status == "complete":
        text = line("generation_late_done", done=result_text(outcome))
    elif outcome.status == "failed":
        text = line("generation_late_failed", failed=result_text(outcome))
    else:
        text = result_text(outcome)
    phase: Phase = "complete" if generating else values.get("phase") or "complete"
    message = AIMessage(
        content=text,
        name=personas()[_LATE_SPEAKER].name,
        id=str(uuid5(_MESSAGE_NAMESPACE, f"{outcome.generation_id}:{outcome.status}")),
        additional_kwargs={
            "role": _LATE_SPEAKER,
            "speaker": _LATE_SPEAKER,
            "phase": phase,
            "kind": "generation",
            "generation": dump(record),
            "outputs": outcome.outputs,
            "late": True,
        },
    )
    update: dict[str, Any] = {"generation": dump(record), "messages": [message]}
    if generating:
        update.update(enter_phase("complete"))
    if outcome.status == "complete" and dump(outcome.plan) != values.get("plan"):
        update["plan"] = dump(outcome.plan)
    return update


__all__ = ["final_phase", "late_update", "line", "messages", "record_of", "result_text"]

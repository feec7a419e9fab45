"""The studio as one node of another application's graph.

``build_graph()`` added to a parent as it is gets three things wrong for an agent app:
it shares the parent's ``messages`` (so the parent's unrelated history becomes the
request and 20-odd transcript messages flood the parent every turn), and without
``checkpointer=True`` it forgets its conversation at every parent turn (the next request
starts over from ideation with a new seed instead of iterating).

``build_team_subgraph()`` is the studio wrapped for that use:

* **its own conversation**: the studio inside is compiled with ``checkpointer=True``, so
  under the parent's checkpointer it keeps one conversation per parent thread; a follow-up
  request is an iteration (the plan is revised, the seed kept);
* **the latest request only**: of the parent's messages it hands the team the newest
  message from the person, nothing of the parent's earlier history;
* **a small output** (``TeamOutput``): one summary message appended to the parent's
  ``messages``, and ``team_plan`` / ``team_images`` for a parent state that has those keys
  (a parent without them just gets the message);
* **interrupts pause the parent**: when the team asks the person (approve_plans, no
  consensus), the parent run stops with the team's question as its interrupt; the parent
  resumes with ``Command(resume=answer)`` and the team goes on from where it asked.

Settings (graph/configuration.py) come from the parent's run: ``context={...}`` or
``configurable`` keys named as the Configuration fields; other keys are ignored.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot
from typing_extensions import TypedDict

from creative_studio.graph.builder import build_graph
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.state import role_of
from creative_studio.tools.models import ModelProvider

TEAM_NAME = "creative_team"
SUMMARY_NAME = "creative_studio"  # a message name every chat API accepts (no spaces)


class TeamInput(TypedDict):
    """What the subgraph reads of the parent: its messages (only the newest request counts)."""

    messages: list[AnyMessage]


class TeamOutput(TypedDict, total=False):
    """What the subgraph gives back to the parent (add these keys to the parent's state
    to receive the plan and the images; ``messages`` gets one summary message)."""

    messages: list[AnyMessage]
    team_plan: dict[str, Any] | None  # TechnicalPlan as JSON
    team_images: list[dict[str, Any]]  # GenerationRecord.outputs: file names, /view urls


class _TeamState(TypedDict, total=False):
    """The wrapper's own state. ``messages`` is a plain value here, not a reducer: the
    parent's list comes in, one summary message goes out (the parent appends it)."""

    messages: list[AnyMessage]
    team_plan: dict[str, Any] | None
    team_images: list[dict[str, Any]]


def latest_request(messages: list[AnyMessage]) -> HumanMessage | None:
    """The newest message from the person, copied under the same id (the team then takes
    each request in once, however often the parent calls it)."""
    for message in reversed(messages or []):
        if message.type == "human":
            return HumanMessage(content=message.content, id=message.id, name="user")
    return None


def summary_text(values: dict[str, Any], since: str | None) -> str:
    """One short message on what the team did with the request."""
    generation = values.get("generation") or {}
    plan = values.get("plan") or generation.get("plan") or {}
    outputs = generation.get("outputs") or []
    if outputs and generation.get("status") == "complete":
        where = ", ".join(str(o.get("url") or o.get("filename")) for o in outputs)
        what = "image" if len(outputs) == 1 else "images"
        return f"The team generated {len(outputs)} {what}: {where}. Prompt: {plan.get('positive_prompt', '')}"
    if plan:
        status = generation.get("status") or "planned"
        detail = f" ({generation['error']})" if generation.get("error") else ""
        return (
            f"The team's plan ({status}{detail}): {plan.get('template')} "
            f"{plan.get('width')}x{plan.get('height')}, seed {plan.get('seed')}. "
            f"Prompt: {plan.get('positive_prompt', '')}"
        )
    messages: list[AnyMessage] = values.get("messages") or []
    ids = [m.id for m in messages]
    start = ids.index(since) + 1 if since in ids else 0
    said = [m for m in messages[start:] if m.type == "ai" and m.text.strip()]
    if not said:
        return "The team has nothing to add yet."
    last = said[-1]
    return f"{last.name}: {last.text}" if role_of(last) != "system" else last.text


def team_output(values: dict[str, Any], since: str | None) -> TeamOutput:
    """The studio's final state of a turn, reduced to what a parent wants to keep."""
    generation = values.get("generation") or {}
    summary = AIMessage(
        content=summary_text(values, since),
        name=SUMMARY_NAME,
        additional_kwargs={
            "role": "team",
            "phase": values.get("phase"),
            "generation_status": generation.get("status"),
        },
    )
    return {
        "messages": [summary],
        "team_plan": values.get("plan") or generation.get("plan"),
        "team_images": list(generation.get("outputs") or []),
    }


async def team_state(
    checkpointer: BaseCheckpointSaver, thread_id: str, *, node: str = TEAM_NAME
) -> StateSnapshot:
    """The embedded team's own conversation in a parent thread (its full studio state).

    It lives in the parent's checkpointer under one namespace, ``<node>|team`` (the
    parent's node name, then this wrapper's node), whatever the number of parent turns.
    """
    studio = build_graph(checkpointer)
    namespace = f"{node}|team"
    return await studio.aget_state(
        {"configurable": {"thread_id": thread_id, "checkpoint_ns": namespace}}
    )


def build_team_subgraph(
    *, provider: ModelProvider | None = None, name: str = TEAM_NAME
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The studio as a parent's node: ``parent.add_node("creative_team", build_team_subgraph())``.

    The parent needs a checkpointer (the team's conversation lives in it) and a
    ``messages`` key; ``provider`` fixes the chat models (tests, apps with their own).
    """
    studio = build_graph(checkpointer=True, provider=provider, name="creative_studio")

    async def team(state: _TeamState, config: RunnableConfig) -> TeamOutput:
        """Hand the team the newest request and sum up what it did with it."""
        request = latest_request(state.get("messages") or [])
        if request is None:
            return {"messages": []}
        values = await studio.ainvoke({"messages": [request]}, config)
        return team_output(dict(values), request.id)

    builder = StateGraph(
        _TeamState,
        context_schema=Configuration,
        input_schema=TeamInput,
        output_schema=TeamOutput,
    )
    builder.add_node("team", team)
    builder.add_edge(START, "team")
    return builder.compile(name=name)


__all__ = [
    "TEAM_NAME",
    "TeamInput",
    "TeamOutput",
    "build_team_subgraph",
    "latest_request",
    "summary_text",
    "team_output",
    "team_state",
]

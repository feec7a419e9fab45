"""build_graph() embeds as a subgraph node in another application's graph."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

from creative_studio.graph.builder import build_graph
from tests.fakes import make_provider


class ParentState(MessagesState):
    handoff_note: str


def brief_the_team(state: ParentState) -> dict[str, Any]:
    return {"handoff_note": "sent to the creative team"}


def report(state: ParentState) -> dict[str, Any]:
    team_said = [m for m in state["messages"] if m.type == "ai" and m.name == "technical"]
    return {"messages": [AIMessage(f"The team planned it: {team_said[-1].text.splitlines()[0]}")]}


async def test_studio_runs_as_a_subgraph_node_with_the_parents_checkpointer():
    provider, _ = make_provider()
    parent = StateGraph(ParentState)
    parent.add_node("brief_the_team", brief_the_team)
    parent.add_node("creative_team", build_graph(provider=provider))
    parent.add_node("report", report)
    parent.add_edge(START, "brief_the_team")
    parent.add_edge("brief_the_team", "creative_team")
    parent.add_edge("creative_team", "report")
    parent.add_edge("report", END)
    saver = InMemorySaver()
    app = parent.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": str(uuid4()), "unrelated_parent_key": 1}}

    token_nodes: set[str] = set()
    request = HumanMessage("a cyberpunk street at night, neon signs", id=str(uuid4()))
    async for namespace, mode, chunk in app.astream(
        {"messages": [request]}, config, stream_mode=["messages", "updates"], subgraphs=True
    ):
        if mode == "messages" and namespace:
            token_nodes.add(chunk[1]["langgraph_node"])

    state = (await app.aget_state(config)).values
    assert state["handoff_note"] == "sent to the creative team"
    assert state["messages"][-1].text.startswith("The team planned it: Template txt2img")
    speakers = {m.name for m in state["messages"] if m.type == "ai"}
    assert {"style", "composition", "story", "technical", "critic"} <= speakers
    # Tokens from inside the subgraph reach the parent's stream.
    assert {"style", "composition", "story"} <= token_nodes
    # The studio's own state is checkpointed under the parent's checkpointer.
    namespaces = {c.config["configurable"]["checkpoint_ns"] async for c in saver.alist(None)}
    assert any(ns.startswith("creative_team:") for ns in namespaces)

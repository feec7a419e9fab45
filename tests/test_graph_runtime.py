"""How the studio graph runs under the ways LangGraph developers run it: astream_events
in process (langchain-core's default recursion limit of 25 is below one turn) and settings
as the runtime context (the graph's context schema) next to ``configurable``."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

from creative_studio.graph.builder import RECURSION_LIMIT, build_graph
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.embed import build_team_subgraph
from tests.fakes import make_provider

REQUEST = "a lighthouse in a storm at dusk"


def _input() -> dict[str, Any]:
    return {"messages": [HumanMessage(REQUEST, id=str(uuid4()))]}


async def test_astream_events_runs_a_whole_turn_past_langchains_default_limit():
    provider, _ = make_provider()
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {"configurable": {"thread_id": str(uuid4()), "comfyui_url": ""}}
    names: set[str] = set()
    async for event in graph.astream_events(_input(), config, version="v2"):
        names.add(event["name"])
    state = await graph.aget_state(config)
    assert state.values["phase"] == "complete"
    assert int(state.metadata["step"]) > 25  # langchain-core's default would have stopped it
    assert {"router", "style", "technical", "critic", "comfyui"} <= names


async def test_a_lower_explicit_limit_is_raised_to_the_graphs_own():
    provider, _ = make_provider()
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {"configurable": {"thread_id": str(uuid4()), "comfyui_url": ""}, "recursion_limit": 30}
    await graph.ainvoke(_input(), config)
    assert (await graph.aget_state(config)).values["phase"] == "complete"
    assert RECURSION_LIMIT > 53 * 10


async def test_a_parent_run_through_astream_events_embeds_the_team():
    provider, _ = make_provider()
    parent = StateGraph(MessagesState)
    parent.add_node("creative_team", build_team_subgraph(provider=provider))
    parent.add_edge(START, "creative_team")
    parent.add_edge("creative_team", END)
    app = parent.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": str(uuid4()), "comfyui_url": ""}}
    async for _ in app.astream_events(_input(), config, version="v2"):
        pass
    summary = (await app.aget_state(config)).values["messages"][-1]
    assert summary.name == "creative_studio" and "lighthouse" in summary.text


async def test_the_runtime_context_wins_over_configurable_and_the_environment(monkeypatch):
    monkeypatch.setenv("CREATIVE_STUDIO_MODEL", "scripted")
    provider, _ = make_provider()
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {"configurable": {"thread_id": str(uuid4()), "approve_plans": False}}
    await graph.ainvoke(_input(), config, context={"approve_plans": True, "comfyui_url": ""})
    paused = await graph.aget_state(config)
    assert [i.value["type"] for i in paused.interrupts] == ["approve_plan"]
    # Outside a run: configurable, then the environment.
    settings = Configuration.from_runnable_config({"configurable": {"story_model": "embedded"}})
    assert settings.model_for("story") == "embedded" and settings.model_for("style") == "scripted"
    assert Configuration.explicit_values({"configurable": {"max_rounds": 2, "other": 1}}) == {
        "max_rounds": 2
    }

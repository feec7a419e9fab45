"""The studio embedded in another application's graph (graph/embed.py), as README shows it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command

from creative_studio.graph.builder import build_graph
from creative_studio.graph.embed import build_team_subgraph, team_state
from creative_studio.graph.state import role_of
from tests.comfyui_double import ComfyUIDouble
from tests.fakes import PLAN_JSON, make_provider

OSLO = "what's the weather in Oslo tomorrow?"
LIGHTHOUSE = "paint me a lighthouse in a storm at dusk"
ITERATION = "make it more melancholic"


class AppState(MessagesState):
    """A parent app's state; team_plan / team_images receive the team's output."""

    team_plan: dict[str, Any] | None
    team_images: list[dict[str, Any]]


def weather(state: AppState) -> dict[str, Any]:
    return {"messages": [AIMessage("Rain, 8 degrees.", name="weather_bot")]}


def parent_app(provider: Any) -> tuple[Any, InMemorySaver]:
    builder = StateGraph(AppState)
    builder.add_node("creative_team", build_team_subgraph(provider=provider))
    builder.add_edge(START, "creative_team")
    builder.add_edge("creative_team", END)
    saver = InMemorySaver()
    return builder.compile(checkpointer=saver), saver


async def team_checkpoint(saver: InMemorySaver, thread: str) -> dict[str, Any]:
    """The embedded team's own newest state: one namespace in the thread, every turn."""
    namespaces = {
        c.config["configurable"]["checkpoint_ns"]
        for c in saver.list({"configurable": {"thread_id": thread}})
    }
    assert {ns for ns in namespaces if ":" not in ns} == {"", "creative_team|team"}
    return dict((await team_state(saver, thread)).values)


@pytest.fixture
def comfy() -> Iterator[ComfyUIDouble]:
    double = ComfyUIDouble()
    double.start()
    yield double
    double.stop()


async def test_two_parent_turns_iterate_on_one_conversation_and_return_a_small_output():
    # Pixel's second draft picks another seed: an iteration must keep the first one.
    second_plan = PLAN_JSON.replace('"seed": 42', '"seed": 7')
    provider, models = make_provider({"technical": {"plan": [PLAN_JSON, second_plan]}})
    app, saver = parent_app(provider)
    thread = str(uuid4())
    config = {"configurable": {"thread_id": thread, "comfyui_url": ""}}
    history = [
        HumanMessage(OSLO, id=str(uuid4())),
        AIMessage("Rain, 8 degrees.", name="weather_bot", id=str(uuid4())),
        HumanMessage(LIGHTHOUSE, id=str(uuid4())),
    ]

    updates: list[dict[str, Any]] = []
    async for update in app.astream({"messages": history}, config, stream_mode="updates"):
        updates.append(update)
    first = (await app.aget_state(config)).values
    # One summary message comes back, not the team's transcript.
    assert [list(u) for u in updates] == [["creative_team"]]
    assert len(updates[0]["creative_team"]["messages"]) == 1
    assert len(first["messages"]) == len(history) + 1
    summary = first["messages"][-1]
    assert summary.name == "creative_studio" and "lighthouse" in summary.text
    assert first["team_plan"]["seed"] == 42 and first["team_images"] == []
    # The team took in the latest request only, not the parent's unrelated history.
    team = await team_checkpoint(saver, thread)
    assert team["brief"]["request"].startswith(LIGHTHOUSE)
    humans = [m.text for m in team["messages"] if m.type == "human"]
    assert humans == [LIGHTHOUSE]
    prompts = [m.text for model in models.values() for p in model.prompts for m in p]
    assert not any("Oslo" in text for text in prompts)
    explored = models["style"].kinds.count("explore")

    await app.ainvoke({"messages": [HumanMessage(ITERATION, id=str(uuid4()))]}, config)
    second = (await app.aget_state(config)).values
    assert len(second["messages"]) == len(history) + 3  # the request and one summary
    # An iteration of the same conversation: no new ideation, the seed kept, the plan revised.
    assert models["style"].kinds.count("explore") == explored
    assert "answer_user" in models["style"].kinds
    assert second["team_plan"]["seed"] == 42
    assert "melancholic" in second["team_plan"]["positive_prompt"]
    team = await team_checkpoint(saver, thread)
    assert [m.text for m in team["messages"] if m.type == "human"] == [LIGHTHOUSE, ITERATION]
    # The team's own messages are named as the people they are, roles in the metadata.
    spoken = {(m.name, role_of(m)) for m in team["messages"] if role_of(m) != "system"}
    assert {("Luna", "style"), ("Pixel", "technical"), ("Lens", "critic")} <= spoken


async def test_the_teams_question_pauses_the_parent_and_the_answer_resumes_it(comfy):
    provider, _ = make_provider()
    app, saver = parent_app(provider)
    thread = str(uuid4())
    config = {"configurable": {"thread_id": thread}}
    context = {"approve_plans": True, "comfyui_url": comfy.url}  # settings as runtime context

    await app.ainvoke(
        {"messages": [HumanMessage(LIGHTHOUSE, id=str(uuid4()))]}, config, context=context
    )
    paused = await app.aget_state(config)
    assert [i.value["type"] for i in paused.interrupts] == ["approve_plan"]
    assert paused.values.get("team_plan") is None and comfy.posted == []
    # The question is in the team's transcript as a message too.
    team = await team_checkpoint(saver, thread)
    questions = [m for m in team["messages"] if m.additional_kwargs.get("kind") == "question"]
    assert questions and questions[-1].text == paused.interrupts[0].value["question"]

    await app.ainvoke(Command(resume={"approved": True}), config, context=context)
    done = (await app.aget_state(config)).values
    assert not (await app.aget_state(config)).interrupts
    assert len(comfy.posted) == 1
    (image,) = done["team_images"]
    assert image["url"].startswith(f"{comfy.url}/view?")
    assert done["messages"][-1].text.startswith("The team generated 1 image:")


async def test_build_graph_as_a_plain_subgraph_node_still_works():
    """The whole studio graph as a node (sharing ``messages``) is still valid LangGraph."""
    provider, _ = make_provider()
    parent = StateGraph(MessagesState)
    parent.add_node("creative_team", build_graph(provider=provider))
    parent.add_edge(START, "creative_team")
    parent.add_edge("creative_team", END)
    app = parent.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": str(uuid4()), "unrelated_parent_key": 1}}
    token_nodes: set[str] = set()
    request = HumanMessage("a cyberpunk street at night, neon signs", id=str(uuid4()))
    async for namespace, mode, chunk in app.astream(
        {"messages": [request]}, config, stream_mode=["messages", "updates"], subgraphs=True
    ):
        if mode == "messages" and namespace:
            token_nodes.add(chunk[1]["langgraph_node"])
    state = (await app.aget_state(config)).values
    assert {"style", "composition", "story", "technical", "critic"} <= {
        role_of(m) for m in state["messages"]
    }
    assert {"style", "composition", "story"} <= token_nodes  # tokens reach the parent

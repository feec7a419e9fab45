"""build_graph(): the studio's StateGraph, compiled, and the module-level ``graph``.

The same compiled graph serves three uses:
* standalone, with the studio's Postgres checkpointer (the CLI and the API);
* under ``langgraph dev`` / LangGraph Studio, which brings its own persistence;
* as a subgraph node inside another application's graph (it inherits the parent's
  checkpointer when given none, and reads only its own keys from ``configurable``).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer

from creative_studio.graph.state import StudioInput, StudioState
from creative_studio.nodes.comfyui import comfyui
from creative_studio.nodes.composition import composition
from creative_studio.nodes.consensus import consensus
from creative_studio.nodes.critic import critic
from creative_studio.nodes.human import ask_person
from creative_studio.nodes.router import route
from creative_studio.nodes.router import router as router_node
from creative_studio.nodes.story import story
from creative_studio.nodes.style import style
from creative_studio.nodes.technical import technical
from creative_studio.tools.models import ModelProvider

GRAPH_NAME = "creative_studio"
NEXT_NODES = ["style", "composition", "story", "technical", "critic", "ask_person", "comfyui"]


def build_graph(
    checkpointer: Checkpointer = None,
    *,
    provider: ModelProvider | None = None,
    name: str = GRAPH_NAME,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the studio graph.

    ``provider`` fixes which chat model each role uses (tests, embedding apps); without
    it, models come from the assignments in ``configurable`` and the environment.
    Runs should use ``durability="sync"`` (the runner does): with "exit", a kill -9
    loses the turns of the run in progress.
    """
    builder = StateGraph(StudioState, input_schema=StudioInput)
    builder.add_node("router", router_node)
    for node in (style, composition, story, technical, critic):
        builder.add_node(node.__name__, node)
        builder.add_edge(node.__name__, "consensus")
    builder.add_node("consensus", consensus)
    builder.add_node("ask_person", ask_person)
    builder.add_node("comfyui", comfyui)
    builder.add_edge(START, "router")
    builder.add_conditional_edges("router", route, [*NEXT_NODES, "__end__"])
    builder.add_edge("consensus", "router")
    builder.add_edge("ask_person", "router")
    builder.add_edge("comfyui", "router")
    compiled = builder.compile(checkpointer=checkpointer, name=name)
    if provider is not None:
        compiled = compiled.with_config(configurable={"model_provider": provider})
    return compiled


graph = build_graph()

"""build_graph(): the studio's StateGraph, compiled, and the module-level ``graph``.

The same compiled graph serves three uses:
* standalone, with the studio's Postgres checkpointer (the CLI and the API);
* under ``langgraph dev`` / LangGraph Studio, which brings its own persistence;
* as a subgraph node inside another application's graph (it inherits the parent's
  checkpointer when given none, and reads only its own keys from ``configurable``);
  graph/embed.py wraps it for that use (its own conversation, a small output).

Its settings are the graph's context schema (graph/configuration.py): Studio shows and
edits them, ``graph.astream(..., context={...})`` passes them, ``configurable`` still works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer

from creative_studio.graph.configuration import Configuration
from creative_studio.graph.stable_ids import with_stable_ids
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

RECURSION_LIMIT = 2500
"""Super-steps one run may take: a run is one turn of the team, up to the next question
or the end. At the default settings a turn takes about 53 steps (router, speaker and
consensus for every contribution, plus plan, review and generation); the largest settings
Configuration accepts (5 ideation rounds, 10 rounds, 5 send-backs, 5 plan revisions)
stay below this, while a router that never settles still stops."""


def _effective_limit(*configs: RunnableConfig | None) -> int:
    """The recursion limit a run would get (the caller's, else an enclosing run's)."""
    limit: int | None = None
    for config in configs:
        if config and config.get("recursion_limit") is not None:
            limit = int(config["recursion_limit"])
    if limit is None:
        try:  # called inside another run without a config: LangGraph inherits that run's
            limit = int(get_config().get("recursion_limit") or RECURSION_LIMIT)
        except RuntimeError:
            limit = RECURSION_LIMIT
    return limit


class StudioGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """The compiled studio graph, which brings its own recursion limit to every run.

    ``with_config(recursion_limit=...)`` is not enough: langchain-core fills in its default
    of 25 before LangGraph sees the config (``astream_events``, ``batch``, a parent graph
    run through ``astream_events`` handing its config to this subgraph), and an explicit
    limit wins over the graph's own. A limit below RECURSION_LIMIT can only cut a turn
    short (the team's own loops are bounded by its settings), so it is raised to it here,
    where every way of running the graph passes (invoke and ainvoke go through these).
    """

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        return super().stream(input, self._budgeted(config), **kwargs)

    def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        return super().astream(input, self._budgeted(config), **kwargs)

    def _budgeted(self, config: RunnableConfig | None) -> RunnableConfig | None:
        if _effective_limit(self.config, config) >= RECURSION_LIMIT:
            return config
        return {**(config or {}), "recursion_limit": RECURSION_LIMIT}


def build_graph(
    checkpointer: Checkpointer = None,
    *,
    provider: ModelProvider | None = None,
    name: str = GRAPH_NAME,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the studio graph.

    ``provider`` fixes which chat model each role uses (tests, embedding apps); without
    it, models come from the run's context / ``configurable`` (Configuration) and the
    environment. ``checkpointer=True`` is for a subgraph that keeps its own conversation
    across the parent's turns (graph/embed.py).
    Runs should use ``durability="sync"`` (the runner does): with "exit", a kill -9
    loses the turns of the run in progress.
    """
    builder = StateGraph(StudioState, context_schema=Configuration, input_schema=StudioInput)
    builder.add_node("router", with_stable_ids("router", router_node))
    for node in (style, composition, story, technical, critic):
        builder.add_node(node.__name__, with_stable_ids(node.__name__, node))
        builder.add_edge(node.__name__, "consensus")
    builder.add_node("consensus", with_stable_ids("consensus", consensus))
    builder.add_node("ask_person", with_stable_ids("ask_person", ask_person))
    builder.add_node("comfyui", with_stable_ids("comfyui", comfyui))
    builder.add_edge(START, "router")
    builder.add_conditional_edges("router", route, [*NEXT_NODES, "__end__"])
    builder.add_edge("consensus", "router")
    builder.add_edge("ask_person", "router")
    builder.add_edge("comfyui", "router")
    plain = builder.compile(checkpointer=checkpointer, name=name)
    compiled = StudioGraph(**{k: v for k, v in plain.__dict__.items() if k != "__orig_class__"})
    if provider is not None:
        compiled = compiled.with_config(configurable={"model_provider": provider})
    return compiled


graph = build_graph()

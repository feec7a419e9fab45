"""The embedded model for real: Gemma 3 270M through llama.cpp, offline, on this CPU."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from creative_studio.core.text import content_words
from creative_studio.graph.builder import build_graph
from creative_studio.tools.embedded import embedded_available
from creative_studio.tools.models import AssignmentProvider
from creative_studio.workflows.plan import TechnicalPlan
from tests.fakes import run_turns

pytestmark = pytest.mark.skipif(
    not embedded_available(), reason="make setup installs llama-cpp-python and the model"
)
REQUEST = "a lighthouse in a storm at dusk"


@pytest.fixture(scope="session")
def models_dir(pytestconfig: pytest.Config) -> Path:
    """The assembled GGUF is kept in pytest's cache dir, so it is joined once per checkout."""
    return Path(pytestconfig.cache.mkdir("creative-studio-models"))


async def test_a_short_conversation_with_the_embedded_model(models_dir: Path):
    provider = AssignmentProvider(data_dir=models_dir, auto="embedded")
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {
        "configurable": {
            "thread_id": str(uuid4()),
            "default_model": "auto",
            "model_seed": 7,
            "max_rounds": 1,
        }
    }
    request = {"messages": [HumanMessage(REQUEST, name="user", id=str(uuid4()))]}
    trace = await run_turns(graph, request, config)
    if trace.interrupts:  # the tiny model often cannot agree: the person decides
        assert trace.interrupts[0]["type"] == "no_consensus"
        await run_turns(graph, Command(resume={"text": "Go with Luna's idea."}), config)
    state = (await graph.aget_state(config)).values

    assert not [m for m in state["messages"] if m.additional_kwargs.get("kind") == "unavailable"]
    spoken = [m for m in state["messages"] if m.type == "ai" and m.name not in (None, "system")]
    assert {m.name for m in spoken} == {"style", "composition", "story", "technical", "critic"}
    assert all(m.text.strip() and m.text != "…" for m in spoken)
    # On topic: the creatives pick up the request's words.
    topic = content_words(REQUEST)
    on_topic = {m.name for m in spoken if content_words(m.text) & topic}
    assert len(on_topic & {"style", "composition", "story"}) >= 2, [m.text for m in spoken]
    # Pixel's plan came out of the JSON grammar, parses and validates, and is about the request.
    plan = TechnicalPlan.model_validate(state["plan"])
    assert "lighthouse" in plan.positive_prompt.lower()
    assert state["phase"] == "complete" and state["verdict"] is not None
    # Streaming and the prefix cache: consecutive turns reuse most of the prompt.
    assert len([t for node, t in trace.tokens if node == "style"]) > 3
    cached = [
        m.additional_kwargs["metadata"].get("prompt_cached_tokens", 0)
        / m.additional_kwargs["metadata"]["usage"]["input_tokens"]
        for m in spoken[1:6]
    ]
    assert max(cached) > 0.8

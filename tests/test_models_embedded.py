"""The embedded models for real, through llama.cpp, offline, on this CPU.

Few and short on purpose (CI has 2 cores): one conversation on the default model, one short
prefill call per model, one structured plan from the chat model, and the chat template check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from creative_studio.core.text import content_words
from creative_studio.graph.builder import build_graph
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.prompting import build_messages
from creative_studio.graph.state import Turn
from creative_studio.nodes.structured import ask_structured
from creative_studio.tools.embedded import ChatEmbedded, EmbeddedEngine, embedded_available
from creative_studio.tools.embedded_files import DEFAULT_EMBEDDED, EMBEDDED_MODELS, QWEN
from creative_studio.tools.embedded_prompts import chatml_prompt
from creative_studio.tools.models import AssignmentProvider
from creative_studio.workflows.plan import TechnicalPlan
from tests.fakes import run_turns

pytestmark = pytest.mark.skipif(
    not all(embedded_available(name) for name in EMBEDDED_MODELS),
    reason="make setup installs llama-cpp-python and the models' packages",
)
REQUEST = "a lighthouse in a storm at dusk"


@pytest.fixture(scope="session")
def models_dir(pytestconfig: pytest.Config) -> Path:
    """The assembled GGUFs are kept in pytest's cache dir, so each is joined once per checkout."""
    return Path(pytestconfig.cache.mkdir("creative-studio-models"))


def turn_messages(speaker: str, kind: str, prefill: str | None = None) -> list[BaseMessage]:
    """The studio's real prompt for a turn at the start of a conversation."""
    state: dict[str, Any] = {
        "messages": [HumanMessage(REQUEST, name="user", id=str(uuid4()))],
        "brief": {"request": REQUEST},
        "phase": "synthesis" if kind == "plan" else "ideation",
    }
    messages = build_messages(state, Turn(speaker=speaker, kind=kind), Configuration())  # type: ignore[arg-type]
    if prefill is not None:
        messages[-1].additional_kwargs["studio_turn"]["prefill"] = prefill
    return messages


@pytest.mark.timeout(900)  # a whole conversation; slower when other jobs share the 2 cores
async def test_a_short_conversation_with_the_default_embedded_model(models_dir: Path):
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
    if trace.interrupts:  # a tiny model often cannot agree: the person decides
        assert trace.interrupts[0]["type"] == "no_consensus"
        await run_turns(graph, Command(resume={"text": "Go with Luna's idea."}), config)
    state = (await graph.aget_state(config)).values

    assert not [m for m in state["messages"] if m.additional_kwargs.get("kind") == "unavailable"]
    spoken = [m for m in state["messages"] if m.type == "ai" and m.name not in (None, "system")]
    assert {m.additional_kwargs["role"] for m in spoken} == {
        "style",
        "composition",
        "story",
        "technical",
        "critic",
    }
    assert all(m.text.strip() and m.text != "…" for m in spoken)
    model = EMBEDDED_MODELS[DEFAULT_EMBEDDED]
    # Lens's review is the studio's own check on a model that cannot judge (nodes/critic.py).
    assert {
        m.additional_kwargs["metadata"]["model"]
        for m in spoken
        if m.additional_kwargs.get("checked_by") != "studio"
    } == {f"{model.name} (embedded)"}
    # On topic: the creatives pick up the request's words.
    topic = content_words(REQUEST)
    on_topic = {m.additional_kwargs["role"] for m in spoken if content_words(m.text) & topic}
    assert len(on_topic & {"style", "composition", "story"}) >= 2, [m.text for m in spoken]
    # Pixel's plan came out of the JSON grammar, parses and validates, and is about the request.
    plan = TechnicalPlan.model_validate(state["plan"])
    assert "lighthouse" in plan.positive_prompt.lower()
    assert state["phase"] == "complete" and state["verdict"] is not None
    # Streaming and the prefix cache: consecutive turns reuse much of the prompt. The base
    # model's few-shot header is long (>80% cached); the chat model's prompt is the studio's
    # short chat prompt, where the brief and the closing (~250 tokens) change every turn.
    assert len([t for node, t in trace.tokens if node == "style"]) > 3
    cached = [
        m.additional_kwargs["metadata"].get("prompt_cached_tokens", 0)
        / m.additional_kwargs["metadata"]["usage"]["input_tokens"]
        for m in spoken[1:6]
    ]
    assert max(cached) > (0.8 if model.prompting == "completion" else 0.5), cached


@pytest.mark.parametrize("name", list(EMBEDDED_MODELS))
async def test_the_reply_starts_with_the_prefill(models_dir: Path, name: str):
    """One short streamed call per model: the first chunk is the prefill, the model goes on."""
    model = ChatEmbedded(data_dir=models_dir, model=name, max_tokens=12, seed=3)
    prefill = "For the light, "
    chunks = [chunk async for chunk in model.astream(turn_messages("style", "explore", prefill))]
    texts = [str(chunk.content) for chunk in chunks if chunk.content]
    assert texts[0] == prefill
    reply = "".join(texts)
    assert reply.startswith(prefill) and len(reply) > len(prefill) + 2, reply
    assert not reply.startswith(prefill + " ")  # the healed space is not doubled
    assert any(chunk.response_metadata.get("eval_count", 0) > 0 for chunk in chunks)


async def test_a_qwen_plan_parses_into_a_technical_plan(models_dir: Path):
    model = ChatEmbedded(data_dir=models_dir, model=QWEN.name, seed=5)
    reply, plan = await ask_structured(model, turn_messages("technical", "plan"), TechnicalPlan)
    assert isinstance(plan, TechnicalPlan) and plan.positive_prompt.strip()
    assert reply.response_metadata["structured"] is True
    assert plan.template in ("txt2img", "video_animatediff", "video_native")
    assert not plan.loras and plan.seed == 0  # left to the studio


async def test_qwen_prompt_is_what_its_own_chat_template_renders(models_dir: Path):
    """Our ChatML rendering is checked against the Jinja template inside the GGUF."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    engine = EmbeddedEngine.for_model(models_dir, QWEN.name)
    template = engine.llama.metadata["tokenizer.chat_template"]
    messages = turn_messages("story", "explore", prefill="")
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    rendered = Jinja2ChatFormatter(template=template, eos_token="", bos_token="")(
        messages=[{"role": roles[m.type], "content": m.text} for m in messages]
    ).prompt
    assert chatml_prompt(messages) == rendered
    # Markup is tokenized as special tokens, message text never: typed markers stay text.
    im_start = engine.tokenize([("<|im_start|>", True)])
    assert len(im_start) == 1
    assert im_start[0] not in engine.tokenize([("say <|im_start|>system", False)])

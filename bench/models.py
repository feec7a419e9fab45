"""Model figures: the embedded model's speed, prompt size against conversation length, and
the share of prompt tokens served from the prefix cache on consecutive turns.

    python -m bench.models          # prints tables, updates docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any
from uuid import uuid4

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from bench.report import update_section
from creative_studio.graph.builder import build_graph
from creative_studio.graph.configuration import Configuration
from creative_studio.tools.embedded import EmbeddedEngine, completion_prompt
from creative_studio.tools.models import AssignmentProvider, StaticProvider
from tests.fakes import make_models, run_turns

REQUEST = "a lighthouse in a storm at dusk"
ITERATIONS = [
    "make the waves bigger",
    "add a small boat",
    "warmer light in the lighthouse window",
    "more dramatic clouds",
    "a lone seagull",
    "less rain",
    "show the keeper in the window",
]


class Recording(StaticProvider):
    """Records every prompt the team sends (to measure prompt sizes without a real model)."""

    def __init__(self, models: dict[str, BaseChatModel]) -> None:
        super().__init__(models)
        self.prompts: list[list[BaseMessage]] = []
        self._wrapped: set[int] = set()

    def chat_model(self, role: str, config: Configuration) -> BaseChatModel:
        model = super().chat_model(role, config)
        if id(model) not in self._wrapped:
            self._wrapped.add(id(model))
            prompts = self.prompts
            original = model._pick  # type: ignore[attr-defined]

            def pick(messages: list[BaseMessage]) -> str:
                prompts.append(list(messages))
                return original(messages)  # type: ignore[no-any-return]

            object.__setattr__(model, "_pick", pick)
        return model


async def prompt_growth(engine: EmbeddedEngine) -> list[tuple[int, int, int]]:
    """(turn number, embedded prompt tokens, chat prompt characters) over a long conversation."""
    provider = Recording(make_models())  # type: ignore[arg-type]
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {"configurable": {"thread_id": str(uuid4())}}
    for text in [REQUEST, *ITERATIONS]:
        message = HumanMessage(text, name="user", id=str(uuid4()))
        await run_turns(graph, {"messages": [message]}, config)
    rows = []
    for turn, messages in enumerate(provider.prompts, start=1):
        if "studio_turn" not in messages[-1].additional_kwargs:
            continue  # a repair prompt
        prompt = completion_prompt(messages)
        tokens = len(engine.llama.tokenize(prompt.encode(), add_bos=True))
        rows.append((turn, tokens, sum(len(m.text) for m in messages)))
    return rows


async def embedded_conversation(data_dir: Path) -> list[dict[str, Any]]:
    """A real conversation on the embedded model; the metadata of every specialist turn."""
    provider = AssignmentProvider(data_dir=data_dir, auto="embedded")
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {"configurable": {"thread_id": str(uuid4()), "model_seed": 7, "max_rounds": 1}}
    trace = await run_turns(
        graph, {"messages": [HumanMessage(REQUEST, name="user", id=str(uuid4()))]}, config
    )
    if trace.interrupts:
        await run_turns(graph, Command(resume={"text": "Go with Luna's idea."}), config)
    state = (await graph.aget_state(config)).values
    return [
        {"role": m.name, "kind": m.additional_kwargs.get("kind"), **m.additional_kwargs["metadata"]}
        for m in state["messages"]
        if m.type == "ai" and m.name not in (None, "system")
    ]


def render(turns: list[dict[str, Any]], growth: list[tuple[int, int, int]]) -> str:
    discussion = ("explore", "respond", "specifics", "answer_user", "clarify")
    talk = [t for t in turns if t["kind"] in discussion and t["eval_count"] >= 5]
    votes = [t for t in turns if t["kind"] in ("vote", "plan_check") and t["eval_duration"]]
    speeds = [t["eval_count"] / (t["eval_duration"] / 1e9) for t in talk if t["eval_duration"]]
    first_tokens = [t["prompt_eval_duration"] / 1e6 for t in talk]
    cold = first_tokens[0]
    warm = first_tokens[1:]
    consecutive = turns[1:]
    cached = sum(t.get("prompt_cached_tokens", 0) for t in consecutive)
    total = sum(t["usage"]["input_tokens"] for t in consecutive)
    structured = [t for t in turns if t["kind"] in ("plan", "review")]
    lines = [
        f"Gemma 3 270M Q4_K_M through llama-cpp-python (n_batch 512, {len(turns)} specialist turns "
        "of one conversation, seed 7).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| generation speed, discussion turns (median) | {statistics.median(speeds):.0f} tokens/s |",
        "| generation speed, votes under the READY/NOT YET grammar (median) | "
        f"{statistics.median(t['eval_count'] / (t['eval_duration'] / 1e9) for t in votes):.0f} tokens/s |",
        f"| time to first token, first turn (cold cache) | {cold:.0f} ms |",
        f"| time to first token, later turns (median) | {statistics.median(warm):.0f} ms |",
        f"| prompt tokens served from the prefix cache, turns 2+ | {cached / total:.0%} ({cached:,} of {total:,}) |",
        f"| structured turns (plan, review), median duration | "
        f"{statistics.median(t['total_duration'] / 1e9 for t in structured):.1f} s |",
        "",
        "Prompt size per call as one conversation grows (a request and seven iterations, fake "
        "models; the embedded prompt is tokenized with the real tokenizer):",
        "",
        "| turn | embedded prompt tokens | chat prompt characters |",
        "|---|---|---|",
    ]
    step = max(1, len(growth) // 12)
    for turn, tokens, chars in growth[::step]:
        lines.append(f"| {turn} | {tokens:,} | {chars:,} |")
    late = [tokens for _, tokens, _ in growth[len(growth) // 3 :]]
    lines += [
        "",
        f"After the window fills, embedded prompts stay between {min(late):,} and {max(late):,} "
        "tokens: the cost of a turn does not grow with the conversation.",
    ]
    return "\n".join(lines)


async def measure(data_dir: Path) -> str:
    engine = await asyncio.to_thread(EmbeddedEngine.for_data_dir, data_dir)
    growth = await prompt_growth(engine)
    turns = await embedded_conversation(data_dir)
    return render(turns, growth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="where the GGUF is assembled (default: temp)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.data_dir:
        text = asyncio.run(measure(args.data_dir))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            text = asyncio.run(measure(Path(tmp)))
    print(text)
    if not args.no_write:
        update_section("Models: embedded speed, prompt size, prefix cache", text)


if __name__ == "__main__":
    main()

"""Model figures: the offline model candidates side by side, measured on one real conversation.

Each candidate runs in its own process (clean RSS, a cold llama.cpp context), on the same
conversation (seed 7, one round), and then writes one structured plan from a fresh synthesis
prompt. The figures decide which model plain ``embedded`` means (DEFAULT_EMBEDDED in
tools/embedded_files.py): speed (tokens/s, time to first token, prefix cache, plan time),
memory, and what the person gets (turns on topic, repeated turns, example content copied into
the plan, which DESIGN section 10 forbids).

    python -m bench.models          # prints the tables, updates docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import psutil
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from bench.report import update_section
from creative_studio.core.text import content_words
from creative_studio.graph.builder import build_graph
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.prompting import build_messages
from creative_studio.graph.state import Turn
from creative_studio.nodes.structured import StructuredOutputError, ask_structured
from creative_studio.tools.embedded import ChatEmbedded, EmbeddedEngine, plan_request
from creative_studio.tools.embedded_files import DEFAULT_EMBEDDED, EMBEDDED_MODELS
from creative_studio.tools.models import AssignmentProvider, StaticProvider
from creative_studio.workflows.plan import TechnicalPlan
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
DISCUSSION = ("explore", "respond", "specifics", "answer_user", "clarify")
# The example plan both prompt files show (graph/prompts/team.toml, embedded.toml): a plan with
# exactly these settings, or these words, was copied from the example, not decided.
EXAMPLE_SETTINGS = (1216, 832, 30, "dpmpp_2m", "karras", 6.5)
EXAMPLE_WORDS = {"fox", "dawn", "woodblock", "birch", "wisp", "cyberpunk", "neon"}


class Recording(StaticProvider):
    """Records every prompt the team sends (to measure prompt sizes without a real model)."""

    def __init__(self, models: dict[str, BaseChatModel]) -> None:
        super().__init__(models)
        self.prompts: list[list[BaseMessage]] = []
        self._wrapped: set[int] = set()

    def chat_model(self, role: str, config: Configuration) -> BaseChatModel:  # type: ignore[override]
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


async def prompt_growth(engines: list[EmbeddedEngine]) -> list[tuple[int, list[int], int]]:
    """(turn, prompt tokens per engine, chat prompt characters) over a long conversation."""
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
        counts = []
        for engine in engines:
            request = plan_request(
                engine.spec, messages, structured=None, max_tokens=1, temperature=0, seed=None
            )
            counts.append(len(engine.tokenize(request.segments)))
        rows.append((turn, counts, sum(len(m.text) for m in messages)))
    return rows


async def embedded_conversation(data_dir: Path, assignment: str) -> list[dict[str, Any]]:
    """A real conversation on one embedded model; metadata and text of every specialist turn."""
    provider = AssignmentProvider(data_dir=data_dir, auto=assignment)
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {"configurable": {"thread_id": str(uuid4()), "model_seed": 7, "max_rounds": 1}}
    trace = await run_turns(
        graph, {"messages": [HumanMessage(REQUEST, name="user", id=str(uuid4()))]}, config
    )
    if trace.interrupts:
        await run_turns(graph, Command(resume={"text": "Go with Luna's idea."}), config)
    state = (await graph.aget_state(config)).values
    return [
        {
            "role": m.name,
            "kind": m.additional_kwargs.get("kind"),
            "text": m.text,
            "plan": m.additional_kwargs.get("plan"),
            **m.additional_kwargs["metadata"],
        }
        for m in state["messages"]
        if m.type == "ai" and m.name not in (None, "system")
    ]


async def one_plan(data_dir: Path, name: str) -> dict[str, Any]:
    """One structured plan from a fresh synthesis prompt, through the studio's repair loop."""
    state: dict[str, Any] = {
        "messages": [HumanMessage(REQUEST, name="user", id=str(uuid4()))],
        "brief": {"request": REQUEST},
        "phase": "synthesis",
    }
    messages = build_messages(state, Turn(speaker="technical", kind="plan"), Configuration())  # type: ignore[arg-type]
    model = ChatEmbedded(data_dir=data_dir, model=name, seed=7)
    started = time.perf_counter()
    try:
        reply, plan = await ask_structured(model, messages, TechnicalPlan)
    except StructuredOutputError as error:
        return {"seconds": time.perf_counter() - started, "error": str(error)[:200]}
    return {
        "seconds": time.perf_counter() - started,
        "tokens": reply.response_metadata.get("eval_count"),
        "plan": plan.model_dump(mode="json"),
    }


def _copied(plan: dict[str, Any] | None) -> bool:
    if not plan:
        return False
    settings = tuple(
        plan.get(k) for k in ("width", "height", "steps", "sampler", "scheduler", "cfg")
    )
    words = content_words(f"{plan.get('positive_prompt', '')} {plan.get('rationale', '')}")
    return settings == EXAMPLE_SETTINGS or bool(words & EXAMPLE_WORDS - content_words(REQUEST))


def _repeats(texts: list[str]) -> int:
    """Turns whose content words nearly repeat an earlier turn's (Jaccard >= 0.7)."""
    seen: list[set[str]] = []
    count = 0
    for text in texts:
        words = content_words(text)
        if any(len(words & old) / max(1, len(words | old)) >= 0.7 for old in seen):
            count += 1
        seen.append(words)
    return count


def candidate(name: str, data_dir: Path) -> dict[str, Any]:
    """Every figure of one model, measured in this (fresh) process."""
    process = psutil.Process()
    cpu_before, own_before, wall = psutil.cpu_times(), process.cpu_times(), time.perf_counter()
    started = time.perf_counter()
    engine = EmbeddedEngine.for_model(data_dir, name)
    load = time.perf_counter() - started
    rss_load = process.memory_info().rss
    started = time.perf_counter()
    turns = asyncio.run(embedded_conversation(data_dir, f"embedded:{name}"))
    conversation = time.perf_counter() - started
    plan = asyncio.run(one_plan(data_dir, name))
    rss_end = process.memory_info().rss
    cpu_after, own_after, wall = psutil.cpu_times(), process.cpu_times(), time.perf_counter() - wall

    def busy(times: Any) -> float:
        return float(times.user + times.system + getattr(times, "nice", 0.0))

    others = (busy(cpu_after) - busy(cpu_before)) - (busy(own_after) - busy(own_before))
    return {
        "name": name,
        "gguf_bytes": engine.path.stat().st_size,
        "load_seconds": load,
        "rss_load": rss_load,
        "rss_end": rss_end,
        "conversation_seconds": conversation,
        "turns": turns,
        "plan": plan,
        "others_cpu_share": max(0.0, others) / ((psutil.cpu_count() or 1) * wall),
    }


def summarise(figures: dict[str, Any]) -> dict[str, Any]:
    turns = figures["turns"]
    talk = [t for t in turns if t["kind"] in DISCUSSION and t["eval_count"] >= 5]
    speeds = [t["eval_count"] / (t["eval_duration"] / 1e9) for t in talk if t["eval_duration"]]
    first = [t["prompt_eval_duration"] / 1e6 for t in talk]
    consecutive = turns[1:]
    cached = sum(t.get("prompt_cached_tokens", 0) for t in consecutive)
    total = sum(t["usage"]["input_tokens"] for t in consecutive)
    creative = [t for t in talk if t["role"] in ("style", "composition", "story")]
    topic = content_words(REQUEST)
    plans = [t["plan"] for t in turns if t.get("plan")]
    plan = figures["plan"]
    return {
        "speed": statistics.median(speeds) if speeds else 0.0,
        "ttft_cold": first[0] if first else 0.0,
        "ttft_cold_tokens": talk[0]["usage"]["input_tokens"] if talk else 0,
        "ttft_warm": statistics.median(first[1:]) if len(first) > 1 else 0.0,
        "cached": cached,
        "prompt_total": total,
        "plan_seconds": plan["seconds"],
        "plan_ok": "plan" in plan,
        "plan_tokens": plan.get("tokens"),
        "turns": len(turns),
        "on_topic": sum(bool(content_words(t["text"]) & topic) for t in creative),
        "creative": len(creative),
        "repeats": _repeats([t["text"] for t in talk]),
        "talk": len(talk),
        "copied": sum(_copied(p) for p in [*plans, plan.get("plan")] if p),
        "plans": len(plans) + ("plan" in plan),
        "sample": creative[0]["text"] if creative else "",
    }


def render_candidates(results: list[dict[str, Any]]) -> str:
    names = [EMBEDDED_MODELS[r["name"]].title for r in results]
    rows = [summarise(r) for r in results]

    def row(label: str, values: list[str]) -> str:
        return f"| {label} | " + " | ".join(values) + " |"

    mib = 2**20
    lines = [
        "Each model in its own process: load, one conversation "
        f"({REQUEST!r}, seed 7, one round), then one structured plan from a fresh synthesis "
        "prompt. llama-cpp-python, n_batch 512, 2 threads.",
        "",
        "| measure | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        row("GGUF size", [f"{r['gguf_bytes'] / 1e6:.0f} MB" for r in results]),
        row("load time", [f"{r['load_seconds']:.1f} s" for r in results]),
        row("RSS after load", [f"{r['rss_load'] / mib:.0f} MiB" for r in results]),
        row("RSS after the conversation", [f"{r['rss_end'] / mib:.0f} MiB" for r in results]),
        row("generated tokens/s, discussion turns (median)", [f"{s['speed']:.0f}" for s in rows]),
        row(
            "time to first token, first turn (cold cache)",
            [f"{s['ttft_cold']:.0f} ms ({s['ttft_cold_tokens']} prompt tokens)" for s in rows],
        ),
        row(
            "time to first token, later turns (median)", [f"{s['ttft_warm']:.0f} ms" for s in rows]
        ),
        row(
            "prompt tokens served from the prefix cache, turns 2+",
            [
                f"{s['cached'] / max(1, s['prompt_total']):.0%} ({s['cached']:,} of {s['prompt_total']:,})"
                for s in rows
            ],
        ),
        row(
            "one structured plan (fresh synthesis prompt)",
            [
                f"{s['plan_seconds']:.1f} s, {s['plan_tokens']} tokens"
                if s["plan_ok"]
                else f"{s['plan_seconds']:.1f} s, failed"
                for s in rows
            ],
        ),
        row(
            "conversation: specialist turns, wall time",
            [
                f"{s['turns']}, {r['conversation_seconds']:.0f} s"
                for s, r in zip(rows, results, strict=True)
            ],
        ),
        row(
            "creative turns on topic (share request words)",
            [f"{s['on_topic']} of {s['creative']}" for s in rows],
        ),
        row(
            "discussion turns repeating an earlier turn",
            [f"{s['repeats']} of {s['talk']}" for s in rows],
        ),
        row(
            "plans copying the prompt's example plan",
            [f"{s['copied']} of {s['plans']}" for s in rows],
        ),
        row(
            "CPU used by other processes meanwhile",
            [f"{r['others_cpu_share']:.0%}" for r in results],
        ),
        "",
        "First creative turn of each conversation:",
        "",
        *[f"* {name}: {s['sample']!r}" for name, s in zip(names, rows, strict=True)],
        "",
        f"`embedded` means `{DEFAULT_EMBEDDED}` "
        f"({EMBEDDED_MODELS[DEFAULT_EMBEDDED].title}; tools/embedded_files.py DEFAULT_EMBEDDED). "
        "The rule for that choice: the default is a candidate whose turns stay on the request "
        "and whose plans are decided, not copied from the prompt's example (DESIGN section 10); "
        "between candidates that both pass, speed decides. Timings are wall clock on a shared "
        "machine: the last row says how much of the CPU other jobs took during each run.",
    ]
    return "\n".join(lines)


def render_growth(engines: list[EmbeddedEngine], growth: list[tuple[int, list[int], int]]) -> str:
    titles = [engine.spec.title for engine in engines]
    lines = [
        "Prompt size per call as one conversation grows (a request and seven iterations, fake "
        "models; each model's prompt tokenized with its own tokenizer):",
        "",
        "| turn | "
        + " | ".join(f"{t} prompt tokens" for t in titles)
        + " | chat prompt characters |",
        "|---|" + "---|" * (len(titles) + 1),
    ]
    step = max(1, len(growth) // 12)
    for turn, counts, chars in growth[::step]:
        lines.append(f"| {turn} | " + " | ".join(f"{c:,}" for c in counts) + f" | {chars:,} |")
    late = growth[len(growth) // 3 :]
    spans = [
        f"{title} {min(r[1][i] for r in late):,}-{max(r[1][i] for r in late):,}"
        for i, title in enumerate(titles)
    ]
    lines += [
        "",
        f"After the window fills, prompts stay within {', '.join(spans)} tokens: the cost of a "
        "turn does not grow with the conversation.",
    ]
    return "\n".join(lines)


def run_candidate(name: str, data_dir: Path) -> dict[str, Any]:
    """One candidate in a child process: its RSS and cold start are its own."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.models", "--candidate", name, "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(data_dir: Path) -> str:
    results = []
    for name in EMBEDDED_MODELS:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        results.append(run_candidate(name, data_dir))
    engines = [EmbeddedEngine.for_model(data_dir, name) for name in EMBEDDED_MODELS]
    growth = asyncio.run(prompt_growth(engines))
    return render_candidates(results) + "\n\n" + render_growth(engines, growth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, help="where the GGUFs are assembled (default: temp)"
    )
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--candidate", help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args()
    if args.candidate:
        print(json.dumps(candidate(args.candidate, args.data_dir)))
        return
    if args.data_dir:
        text = measure(args.data_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            text = measure(Path(tmp))
    print(text)
    if not args.no_write:
        update_section("Offline model candidates", text)


if __name__ == "__main__":
    main()

"""Plan quality on real models: is the team's plan the person's idea?

Runs whole conversations through the real graph (real models, in-memory checkpoints) for
a set of varied requests of our own, each with one interjection sent right after the
first specialist turn, as a person would cut in. Per model it reports:

* plans reached without asking the person to decide (target >= 90 %);
* subject coverage: share of the request's content words in the plan's prompt (100 %);
* directions kept: share of interjections whose every key word reaches the prompt (100 %);
* leaks: words of the prompt examples the studio used to ship (a fox meeting, a cyberpunk
  JSON example) in any turn or plan although the person never said them (0);
* distinct voices: share of Luna's, Frame's and Saga's turns that speak to their own craft
  (colour and light / camera and framing / moment and feeling), and to the others' crafts;
* repeats: share of discussion turns that repeat five words in a row of an earlier team
  turn (not counting the person's own words, which answers quote on purpose);
* seconds from the request to the first plan (median <= 60 s on 2 cores).

    python -m bench.quality                       # every candidate, every request
    python -m bench.quality --models embedded:qwen2.5-0.5b --limit 5
    python -m bench.quality --show 2              # print two whole conversations too

The measures are deliberately plain word checks, independent of the studio's own
fidelity code, so they can disagree with it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from bench.report import update_section
from creative_studio.core.text import content_words
from creative_studio.graph.builder import build_graph
from creative_studio.graph.prompting import DISCUSSION_KINDS, personas
from creative_studio.tools.models import AssignmentProvider

VERBOSE = False
# "A/B" is a mix by role: the creatives on A, Pixel and Lens on B.
CANDIDATES = [
    "embedded:qwen2.5-0.5b",
    "embedded:gemma3-270m",
    "embedded:gemma3-270m/embedded:qwen2.5-0.5b",
]

_DATA = tomllib.loads((Path(__file__).parent / "quality_data.toml").read_text("utf-8"))
# (request, interjection): ordinary things people ask for, none of the README's examples.
REQUESTS: list[tuple[str, str]] = [(r, i) for r, i in _DATA["requests"]]
OLD_EXAMPLE_WORDS = frozenset(_DATA["old_example_words"])
CRAFT: dict[str, set[str]] = {role: set(ws) for role, ws in _DATA["craft"].items()}
# A turn repeats another when they share this many words in a row (not all the person's).
REPEAT_RUN = 5


def words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'-]*", text)}


def key_words(text: str) -> set[str]:
    vague = {"make", "add", "give", "put", "show", "include", "should", "visible", "clearly"}
    vague |= {"him", "her", "his", "its", "she", "them"}  # "give him a red hat": the hat counts
    vague |= {"luna", "frame", "saga", "pixel", "lens", "hey", "try"}  # "Frame, try ...": whom
    return {w for w in content_words(text) if w not in vague}


def without_opener(text: str, role: str) -> str:
    persona = personas()[role]
    for opener in sorted(persona.openers, key=len, reverse=True):
        if text.startswith(opener.strip()):
            return text[len(opener.strip()) :]
    if persona.answer_opener:
        head = persona.answer_opener.split("{phrase}")[-1].strip(" .")
        if head and head in text[:400]:
            return text[text.index(head) + len(head) :]
    return text


def role_of(message: AnyMessage) -> str | None:
    """The specialist role of a message (its name is the person's name, Luna, ...)."""
    role = message.additional_kwargs.get("speaker") or message.name
    return role if role in personas() else None


def runs(text: str, size: int = REPEAT_RUN) -> set[tuple[str, ...]]:
    tokens = re.findall(r"[a-z']+", text.lower())
    return {tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def repeated_turns(messages: list[AnyMessage], person: set[str]) -> tuple[int, int]:
    """Discussion turns that repeat a run of REPEAT_RUN words of an earlier team turn.

    Runs made only of the person's words do not count: answers quote them on purpose.
    """
    earlier: set[tuple[str, ...]] = set()
    repeats = turns = 0
    for message in messages:
        if message.type != "ai" or role_of(message) is None:
            continue
        mine = {r for r in runs(message.text) if not set(r) <= person}
        if message.additional_kwargs.get("kind") in DISCUSSION_KINDS:
            turns += 1
            repeats += bool(mine & earlier)
        earlier |= mine
    return repeats, turns


def covered(terms: set[str], prompt: str) -> set[str]:
    """Terms present in the prompt, allowing a plural or a trailing 's'."""
    present = words(prompt)
    return {t for t in terms if t in present or t + "s" in present or t.rstrip("s") in present}


@dataclass
class Result:
    model: str
    request: str
    interjection: str
    plan_prompt: str = ""
    asked_person: bool = False
    reached_plan: bool = False
    subject_share: float = 0.0
    direction_kept: bool = False
    leaks: list[str] = field(default_factory=list)
    craft: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # own, other, turns
    repeats: int = 0  # discussion turns repeating a run of words of an earlier team turn
    discussion_turns: int = 0
    seconds_to_plan: float | None = None
    transcript: list[str] = field(default_factory=list)
    error: str | None = None


async def converse(model: str, request: str, interjection: str, data_dir: Path) -> Result:
    """One conversation: the request, the interjection after the first specialist turn."""
    result = Result(model, request, interjection)
    creatives, _, leads = model.partition("/")  # "A/B": Luna, Frame, Saga on A; Pixel, Lens on B
    provider = AssignmentProvider(data_dir=data_dir, auto=creatives)
    graph = build_graph(InMemorySaver(), provider=provider)
    assignments = {"technical": leads, "critic": leads} if leads else {}
    config: dict[str, Any] = {
        "configurable": {
            "thread_id": str(uuid4()),
            "default_model": creatives,
            "model_assignments": assignments,
            "model_seed": 7,
            "comfyui_url": "",  # plans only: never the person's own ComfyUI
        },
        "recursion_limit": 400,
    }
    started = time.perf_counter()
    payload: Any = {"messages": [HumanMessage(request, id=str(uuid4()))]}
    interjected = False
    while payload is not None:
        next_payload = None
        async for update in graph.astream(
            payload, config, stream_mode="updates", durability="sync"
        ):
            for node, values in update.items():
                if node == "__interrupt__":
                    result.asked_person = True
                    continue
                for message in (values or {}).get("messages") or []:
                    if message.additional_kwargs.get("plan") and result.seconds_to_plan is None:
                        result.seconds_to_plan = time.perf_counter() - started
                    if VERBOSE:
                        elapsed = time.perf_counter() - started
                        print(
                            f"  [{elapsed:5.0f}s] {message.name}: {message.text[:150]}", flush=True
                        )
                if not interjected and node in ("style", "composition", "story"):
                    interjected = True
                    next_payload = {"messages": [HumanMessage(interjection, id=str(uuid4()))]}
            if next_payload is not None:
                break  # the person cuts in: the run stops here, the thread goes on
        payload = next_payload
    state = (await graph.aget_state(config)).values
    measure(result, state.get("messages", []), state.get("plan"))
    return result


def measure(result: Result, messages: list[AnyMessage], plan: dict[str, Any] | None) -> None:
    prompt = (plan or {}).get("positive_prompt", "")
    result.plan_prompt = prompt
    result.reached_plan = bool(prompt) and not result.asked_person
    subject = key_words(result.request)
    result.subject_share = len(covered(subject, prompt)) / max(1, len(subject))
    result.direction_kept = covered(key_words(result.interjection), prompt) == key_words(
        result.interjection
    )
    person = words(result.request) | words(result.interjection)
    said = " ".join(m.text for m in messages if m.type == "ai") + " " + prompt
    result.leaks = sorted((words(said) & OLD_EXAMPLE_WORDS) - person)
    for role in CRAFT:
        turns = [
            m
            for m in messages
            if m.type == "ai"
            and role_of(m) == role
            and m.additional_kwargs.get("kind") in ("explore", "respond", "specifics")
        ]
        # The studio's openers ("For the light, ") prefill the embedded models' turns: only
        # what the model wrote after them counts.
        said = [without_opener(m.text, role) for m in turns]
        own = sum(1 for text in said if words(text) & CRAFT[role])
        other = sum(
            1 for text in said for r in CRAFT if r != role and words(text) & CRAFT[r]
        ) / max(1, len(CRAFT) - 1)
        result.craft[role] = (own, round(other), len(turns))
    result.repeats, result.discussion_turns = repeated_turns(messages, person)
    for message in messages:
        speaker = "Person" if message.type == "human" else (message.name or "?")
        result.transcript.append(f"{speaker}: {message.text}")


def summarise(results: list[Result]) -> list[str]:
    rows = [
        "| model | conversations | plan without asking | subject coverage | directions kept | "
        "leaked example words | own craft (Luna/Frame/Saga) | others' craft | "
        "turns repeating an earlier one | median s to plan | p90 s to plan |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r.model for r in results):
        mine = [r for r in results if r.model == model and r.error is None]
        if not mine:
            rows.append(f"| {model} | 0 (failed: {results[0].error}) |" + " |" * 9)
            continue
        times = sorted(r.seconds_to_plan for r in mine if r.seconds_to_plan is not None)
        own = [
            sum(r.craft[role][0] for r in mine) / max(1, sum(r.craft[role][2] for r in mine))
            for role in CRAFT
        ]
        other = sum(sum(r.craft[role][1] for role in CRAFT) for r in mine) / max(
            1, sum(sum(r.craft[role][2] for role in CRAFT) for r in mine)
        )
        p90 = times[min(len(times) - 1, int(len(times) * 0.9))] if times else None
        repeats = sum(r.repeats for r in mine) / max(1, sum(r.discussion_turns for r in mine))
        rows.append(
            f"| {model} | {len(mine)} | {sum(r.reached_plan for r in mine) / len(mine):.0%} | "
            f"{statistics.mean(r.subject_share for r in mine):.0%} | "
            f"{sum(r.direction_kept for r in mine) / len(mine):.0%} | "
            f"{sum(len(r.leaks) for r in mine)} | "
            + "/".join(f"{x:.0%}" for x in own)
            + f" | {other:.0%} | {repeats:.0%} | "
            + (f"{statistics.median(times):.0f} | {p90:.0f} |" if times else "- | - |")
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=CANDIDATES)
    parser.add_argument("--limit", type=int, default=len(REQUESTS))
    parser.add_argument("--show", type=int, default=0, help="print N whole conversations")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--verbose", action="store_true", help="print every message as it comes")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    data_dir = Path(tempfile.gettempdir()) / "creative-studio-bench"
    results: list[Result] = []
    for model in args.models:
        for request, interjection in REQUESTS[: args.limit]:
            try:
                result = await converse(model, request, interjection, data_dir)
            except Exception as error:  # a model that cannot run is a row, not a crash
                result = Result(
                    model, request, interjection, error=f"{type(error).__name__}: {error}"
                )
            results.append(result)
            print(
                f"{model} | {request[:40]!r}: plan={result.reached_plan} "
                f"subject={result.subject_share:.0%} direction={result.direction_kept} "
                f"leaks={result.leaks} repeats={result.repeats}/{result.discussion_turns} "
                f"t={result.seconds_to_plan or 0:.0f}s "
                f"{result.error or ''}\n    -> {result.plan_prompt[:160]}",
                flush=True,
            )
    shown = 0
    for result in results:
        if shown < args.show and result.error is None:
            shown += 1
            print(f"\n=== {result.model}: {result.request}")
            print("\n".join(result.transcript))
    rows = summarise(results)
    print("\n".join(rows))
    if not args.no_write:
        body = (
            f"{args.limit} requests of our own (bench/quality.py), each with one interjection "
            "right after the first specialist turn; real models, sampling seed 7.\n\n"
            + "\n".join(rows)
        )
        update_section("Plan quality (bench/quality.py)", body)


if __name__ == "__main__":
    asyncio.run(main())

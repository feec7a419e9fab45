"""Orchestration overhead per specialist turn, and checkpoint storage growth per turn.

Runs whole conversations with instant fake models on a real embedded Postgres with the
studio's checkpointer (durability "sync", as the runner uses), so what is measured is
the graph itself: routing, consensus, state handling and the checkpoint writes.

    python -m bench.orchestration            # prints a table, updates docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from bench.report import update_section
from creative_studio.graph.builder import build_graph
from creative_studio.store.database import Database
from creative_studio.store.embedded_postgres import stop_embedded_postgres
from tests.fakes import make_provider

REQUEST = "a cyberpunk street at night, neon signs"
ITERATIONS = [
    "make the neon brighter",
    "add rain",
    "wider shot",
    "warmer skin tones",
    "a red umbrella",
]


async def _run(graph: Any, thread: str, text: str) -> tuple[int, float]:
    """One run; returns (specialist turns, seconds)."""
    turns = 0
    config = {"configurable": {"thread_id": thread}}
    started = time.perf_counter()
    message = HumanMessage(text, name="user", id=str(uuid4()))
    async for chunk in graph.astream(
        {"messages": [message]}, config, stream_mode="updates", durability="sync"
    ):
        node = next(iter(chunk))
        if node in ("style", "composition", "story", "technical", "critic"):
            turns += 1
    return turns, time.perf_counter() - started


async def _storage(database: Database, thread: str) -> int:
    async with database.pool.connection() as conn:
        cur = await conn.execute(
            """
            select
              coalesce((select sum(pg_column_size(c.*)) from checkpoints c where thread_id = %(t)s), 0)
            + coalesce((select sum(pg_column_size(b.*)) from checkpoint_blobs b where thread_id = %(t)s), 0)
            + coalesce((select sum(pg_column_size(w.*)) from checkpoint_writes w where thread_id = %(t)s), 0)
              as bytes
            """,
            {"t": thread},
        )
        row = await cur.fetchone()
        return int(row["bytes"]) if row else 0


async def measure(conversations: int) -> dict[str, Any]:
    provider, _ = make_provider()
    results: dict[str, Any] = {}
    memory_graph = build_graph(InMemorySaver(), provider=provider)
    per_turn_memory = []
    for _ in range(conversations):
        turns, seconds = await _run(memory_graph, str(uuid4()), REQUEST)
        per_turn_memory.append(seconds / turns * 1000)
    results["memory_ms"] = statistics.median(per_turn_memory)

    with tempfile.TemporaryDirectory() as data_dir:
        database = await Database.open(None, Path(data_dir))
        try:
            graph = build_graph(database.checkpointer, provider=provider)
            per_turn_pg = []
            for _ in range(conversations):
                turns, seconds = await _run(graph, str(uuid4()), REQUEST)
                per_turn_pg.append(seconds / turns * 1000)
            results["postgres_ms"] = statistics.median(per_turn_pg)
            results["postgres_p90_ms"] = sorted(per_turn_pg)[int(len(per_turn_pg) * 0.9) - 1]
            results["turns_per_conversation"] = turns

            # Storage growth over a long conversation: a request plus iterations.
            thread = str(uuid4())
            growth = []
            total_turns = 0
            for text in [REQUEST, *ITERATIONS * 3]:
                before = await _storage(database, thread)
                turns, seconds = await _run(graph, thread, text)
                total_turns += turns
                after = await _storage(database, thread)
                growth.append((total_turns, (after - before) / turns, seconds / turns * 1000))
            results["growth"] = growth
            results["total_bytes"] = await _storage(database, thread)
            results["total_turns"] = total_turns
        finally:
            await database.close()
            await stop_embedded_postgres(Path(data_dir))
    return results


def render(results: dict[str, Any], conversations: int) -> str:
    lines = [
        f"Whole conversations ({results['turns_per_conversation']} specialist turns each, "
        f"median of {conversations}) with instant fake models; per specialist turn, including "
        "the router and consensus steps around it.",
        "",
        "| checkpointer | ms per specialist turn (median) | p90 |",
        "|---|---|---|",
        f"| InMemorySaver | {results['memory_ms']:.2f} | |",
        f"| Postgres (embedded, durability sync) | {results['postgres_ms']:.2f} | "
        f"{results['postgres_p90_ms']:.2f} |",
        "",
        "Checkpoint storage added, and time taken, per specialist turn as one conversation "
        "grows (request, then fifteen iterations): a turn reads the whole conversation's "
        "words (faithfulness, leak and echo guards), so its cost must not grow with it.",
        "",
        "| turns so far | bytes added per turn | ms per turn |",
        "|---|---|---|",
        *(f"| {turns} | {per_turn:,.0f} | {ms:.2f} |" for turns, per_turn, ms in results["growth"]),
        "",
        f"Total after {results['total_turns']} turns: {results['total_bytes'] / 1024:,.0f} KiB.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    results = asyncio.run(measure(args.conversations))
    text = render(results, args.conversations)
    print(text)
    if not args.no_write:
        update_section("Orchestration overhead and checkpoint growth", text)


if __name__ == "__main__":
    main()

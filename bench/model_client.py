"""Model client figures: CPU per streamed token on the studio's side of an Ollama stream.

The model is bench/ollama_clock.py in its own process (Ollama's wire format, so its CPU is
not counted): STREAMS turns at once, each TOKENS_PER_TURN NDJSON lines at
TOKENS_PER_SECOND, as Ollama paces them - one line per socket read, which is what a
client's per-read cost is paid on. The same turns are read through ``ChatOllama.astream``
(LangGraph Studio's path: httpx, then a ChatResponse, an AIMessageChunk and a
ChatGenerationChunk per token) and through ``StreamingChatOllama.astream_text``
(tools/ollama_stream.py, the studio's token-sink path: aiohttp, one ``json.loads`` per
line); the figure is the reading thread's CPU time per token.

    python -m bench.model_client      # prints the table, updates docs/benchmarks.md
"""

from __future__ import annotations

import asyncio
import statistics
import time

from langchain_core.messages import HumanMessage

from bench.api import CLOCK_MODEL, TOKENS_PER_SECOND, TOKENS_PER_TURN, start_model_server
from bench.report import update_section
from creative_studio.tools.ollama_stream import StreamingChatOllama

STREAMS = 50
ROUNDS = 3


async def _per_token(model: StreamingChatOllama, lean: bool) -> float:
    messages = [HumanMessage("Describe a lighthouse in a storm.")]

    async def turn() -> int:
        if lean:
            return sum([1 async for p in model.astream_text(messages) if isinstance(p, str)])
        return sum([1 async for c in model.astream(messages) if c.text])

    started = time.thread_time()
    tokens = sum(await asyncio.gather(*(turn() for _ in range(STREAMS))))
    return (time.thread_time() - started) / tokens * 1e6


async def measure(url: str) -> dict[str, float]:
    model = StreamingChatOllama(model=CLOCK_MODEL, base_url=url)
    await _per_token(model, True)  # warm both paths (connections, imports)
    await _per_token(model, False)
    return {
        "ChatOllama.astream": statistics.median(
            [await _per_token(model, False) for _ in range(ROUNDS)]
        ),
        "StreamingChatOllama.astream_text": statistics.median(
            [await _per_token(model, True) for _ in range(ROUNDS)]
        ),
    }


def main() -> None:
    server, url = start_model_server()
    try:
        figures = asyncio.run(measure(url))
    finally:
        server.kill()
        server.wait()
    rows = "\n".join(f"| `{path}` | {us:.0f} µs |" for path, us in figures.items())
    body = (
        f"{STREAMS} Ollama streams at once, each {TOKENS_PER_TURN} tokens at "
        f"{TOKENS_PER_SECOND} tokens/s (bench/ollama_clock.py in its own process: one line "
        f"per read, as Ollama paces them), median of {ROUNDS}; the reading thread's CPU time "
        "per token.\n\n| Path | CPU per token |\n|---|---|\n" + rows
    )
    print(body)
    update_section("Model client: CPU per streamed token", body)


if __name__ == "__main__":
    main()

"""Model client figures: CPU per streamed token on the studio's side of an Ollama stream.

The Ollama wire-format double (tests/ollama_double.py) serves a long reply as NDJSON, one
line per word, from a separate process so its own CPU is not counted. The same turn is read
through ``ChatOllama.astream`` (LangGraph Studio's path: a ChatResponse, an AIMessageChunk
and a ChatGenerationChunk per token) and through ``StreamingChatOllama.astream_text``
(tools/ollama_stream.py, the studio's token-sink path); the figure is the reading thread's
CPU time per token.

    python -m bench.model_client      # prints the table, updates docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from langchain_core.messages import HumanMessage

from bench.report import update_section
from creative_studio.tools.ollama_stream import StreamingChatOllama

WORDS = 500
TURNS = 12
MODEL = "llama3.2:3b"


def _double() -> None:
    """The double's process: prints its URL, then serves until killed."""
    from tests.ollama_double import OllamaDouble

    double = OllamaDouble(
        models=[MODEL], reply=lambda _: " ".join(f"w{i}" for i in range(WORDS))
    ).start()
    print(double.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        double.stop()


async def _per_token(model: StreamingChatOllama, lean: bool) -> float:
    messages = [HumanMessage("Describe a lighthouse in a storm.")]
    tokens = 0
    started = time.thread_time()
    for _ in range(TURNS):
        if lean:
            tokens += sum([1 async for p in model.astream_text(messages) if isinstance(p, str)])
        else:
            tokens += sum([1 async for c in model.astream(messages) if c.text])
    return (time.thread_time() - started) / tokens * 1e6


async def measure(url: str) -> dict[str, float]:
    model = StreamingChatOllama(model=MODEL, base_url=url)
    await _per_token(model, True)  # warm both paths (connections, imports)
    await _per_token(model, False)
    return {
        "ChatOllama.astream": statistics.median([await _per_token(model, False) for _ in range(3)]),
        "StreamingChatOllama.astream_text": statistics.median(
            [await _per_token(model, True) for _ in range(3)]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--double", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.double:
        _double()
        return
    double = subprocess.Popen(
        [sys.executable, "-m", "bench.model_client", "--double"],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert double.stdout is not None
        url = double.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError("the Ollama double did not start")
        figures = asyncio.run(measure(url))
    finally:
        double.kill()
        double.wait()
    rows = "\n".join(f"| `{path}` | {us:.0f} µs |" for path, us in figures.items())
    body = (
        f"One Ollama stream of {WORDS} tokens, read {TURNS} times per figure (median of 3), "
        "the double in its own process; the reading thread's CPU time per token.\n\n"
        "| Path | CPU per token |\n|---|---|\n" + rows
    )
    print(body)
    update_section("Model client: CPU per streamed token", body)


if __name__ == "__main__":
    main()

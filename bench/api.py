"""API figures: token latency model → SSE client, memory per idle stream, history requests/s.

The server runs in its own process (embedded Postgres, a fake model that streams 50
tokens/s and writes the wall-clock time of each token into the token itself); the
clients run here and compute each token's delivery latency on arrival.

    python -m bench.api            # prints tables, updates docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from bench.report import update_section

TOKENS_PER_SECOND = 50
TOKENS_PER_TURN = 40


class ClockModel(BaseChatModel):
    """Streams tokens at a fixed rate; each token carries the time it was produced."""

    @property
    def _llm_type(self) -> str:
        return "bench-clock"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "READY - fine." if "Turn: vote" in messages[-1].text else "word " * 5
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        raise NotImplementedError

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        last = messages[-1].text
        if (
            "Turn: plan" in last
            or "Turn: review" in last
            or "Turn: vote" in last
            or "Turn: plan_check" in last
        ):
            result = self._generate(messages)
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=result.generations[0].message.text)
            )
            return
        for _ in range(TOKENS_PER_TURN):
            await asyncio.sleep(1 / TOKENS_PER_SECOND)
            token = f"⏱{time.time_ns()} "
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
            if run_manager:
                await run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk


def serve(port: int, data_dir: Path) -> None:
    """The server process: the studio with the clock model for every role."""
    import uvicorn

    from creative_studio.api.app import create_app
    from creative_studio.tools.models import StaticProvider
    from creative_studio.tools.settings import StudioSettings

    settings = StudioSettings(
        data_dir=data_dir, ollama_host="http://127.0.0.1:9", comfyui_url="http://127.0.0.1:9"
    )
    app = create_app(settings, provider=StaticProvider({}, default=ClockModel()), web_dir=None)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


async def _latencies(client: httpx.AsyncClient, cid: str, until: float, out: list[float]) -> None:
    async with client.stream("GET", f"/api/conversations/{cid}/events", timeout=None) as response:
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "token":
                text = json.loads(line[5:])["text"]
                if text.startswith("⏱"):
                    out.append((time.time_ns() - int(text[1:].strip())) / 1e6)
            if time.monotonic() > until:
                return


async def token_latency(base: str, conversations: int, seconds: float) -> dict[str, float]:
    limits = httpx.Limits(max_connections=conversations * 2 + 10)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        session = (
            await client.post("/api/sessions", json={"name": f"bench {conversations}"})
        ).json()
        ids = []
        for i in range(conversations):
            response = await client.post(
                f"/api/sessions/{session['id']}/conversations", json={"title": f"c{i}"}
            )
            ids.append(response.json()["id"])
        latencies: list[float] = []
        until = time.monotonic() + seconds
        followers = [asyncio.create_task(_latencies(client, cid, until, latencies)) for cid in ids]
        await asyncio.sleep(0.5)
        await asyncio.gather(
            *(
                client.post(
                    f"/api/conversations/{cid}/messages",
                    json={"content": "a lighthouse in a storm"},
                )
                for cid in ids
            )
        )
        await asyncio.wait(followers, timeout=seconds + 30)
        for task in followers:
            task.cancel()
        for cid in ids:
            await client.post(f"/api/conversations/{cid}/cancel")
    latencies.sort()
    return {
        "tokens": len(latencies),
        "median": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
    }


async def idle_stream_memory(base: str, pid: int, streams: int) -> float:
    async with httpx.AsyncClient(
        base_url=base, timeout=30, limits=httpx.Limits(max_connections=streams + 10)
    ) as client:
        session = (await client.post("/api/sessions", json={"name": "idle"})).json()
        cid = (await client.post(f"/api/sessions/{session['id']}/conversations", json={})).json()[
            "id"
        ]
        process = psutil.Process(pid)

        async def rss() -> float:
            samples = []
            for _ in range(5):
                await asyncio.sleep(0.4)
                samples.append(process.memory_info().rss)
            return statistics.median(samples)

        before = await rss()
        opened: list[Any] = []
        for _ in range(streams):
            context = client.stream("GET", f"/api/conversations/{cid}/events", timeout=None)
            await context.__aenter__()
            opened.append(context)
        await asyncio.sleep(2)
        after = await rss()
        for context in opened:
            await context.__aexit__(None, None, None)
    return (after - before) / streams


async def history_rps(base: str, seconds: float, concurrency: int) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        session = (await client.post("/api/sessions", json={"name": "history"})).json()
        cid = (await client.post(f"/api/sessions/{session['id']}/conversations", json={})).json()[
            "id"
        ]
        for i in range(30):
            await client.post(
                f"/api/conversations/{cid}/messages", json={"content": f"message {i}"}
            )
        await asyncio.sleep(2)
        await client.post(f"/api/conversations/{cid}/cancel")
        count = 0
        until = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal count
            while time.monotonic() < until:
                response = await client.get(
                    f"/api/conversations/{cid}/messages", params={"limit": 50}
                )
                response.raise_for_status()
                count += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / seconds


async def measure(base: str, pid: int, seconds: float) -> str:
    rows = []
    for conversations in (1, 10, 100):
        result = await token_latency(base, conversations, seconds)
        rows.append((conversations, result))
    memory = await idle_stream_memory(base, pid, 1000)
    rps = await history_rps(base, 5, 10)
    lines = [
        f"Server in its own process (uvicorn, embedded PostgreSQL); a fake model streams "
        f"{TOKENS_PER_SECOND} tokens/s per conversation; latency = token produced in the node → "
        "token parsed by an httpx SSE client in another process (every event is stored before "
        f"it is sent). {seconds:.0f} s per row.",
        "",
        "| concurrent conversations | tokens measured | median latency | p99 latency |",
        "|---|---|---|---|",
        *(f"| {n} | {r['tokens']:,} | {r['median']:.1f} ms | {r['p99']:.1f} ms |" for n, r in rows),
        "",
        f"Memory per idle open SSE stream (1,000 streams on one conversation, server RSS "
        f"before and after, medians of 5 samples): {memory / 1024:.1f} KiB.",
        "",
        f"Message history (GET /messages, 50 messages a page, 10 concurrent httpx clients in one "
        f"process): {rps:.0f} requests/s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.data_dir)
        return
    from tests.api_server import free_port

    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.api", "--serve", str(port), "--data-dir", data_dir],
            cwd=Path(__file__).resolve().parent.parent,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/api/health", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the bench server did not start")
                time.sleep(0.2)
            text = asyncio.run(measure(base, server.pid, args.seconds))
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    print(text)
    if not args.no_write:
        update_section("API: SSE token latency, idle streams, history requests", text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

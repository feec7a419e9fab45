"""API figures: token delivery model → SSE client, cross-worker delivery, takeover after
kill -9, memory per idle stream, history requests/s.

The server runs in its own process (embedded Postgres), its model server in another:
bench/ollama_clock.py speaks Ollama's /api/chat, streams 50 tokens/s per turn on a fixed
clock and writes the wall-clock time each token was due into the token itself; the studio
reads it with its own Ollama client, as it reads a real Ollama. The load clients are not the
limit: several client processes, each reading its share of the streams with asyncio
protocols that only look for the clock marks (a frame that carries several coalesced tokens
carries several marks; each token counts). The server's CPU time (the API process, and its
PostgreSQL separately) is read before and after each row.

    python -m bench.api            # prints tables, updates docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.report import update_section
from creative_studio.services.takeover import SWEEP_S
from creative_studio.store.leases import configured_ttl

TOKENS_PER_SECOND = 50
TOKENS_PER_TURN = 96  # the embedded model's turn budget; a 2-3 sentence turn
STAGGER_S = 2.0
CLIENT_PROCESSES = 4
MARK_TEXT = re.compile(r"\u23f1(\d+)")  # the same mark in decoded text
CLOCK_MODEL = "bench-clock"


def serve(port: int, data_dir: Path, ollama: str) -> None:
    """The server process: the studio with the clock model server as Ollama for every role."""
    from creative_studio.api.app import create_app
    from creative_studio.api.gc_tuning import tune_for_serving
    from creative_studio.api.server import run_server
    from creative_studio.tools.settings import StudioSettings

    settings = StudioSettings(
        data_dir=data_dir,
        ollama_host=ollama,
        comfyui_url="http://127.0.0.1:9",
        model=f"ollama:{CLOCK_MODEL}",
    )
    app = create_app(settings, web_dir=None)
    tune_for_serving()  # as `creative-studio serve` does
    run_server(app, host="127.0.0.1", port=port, log_level="warning")


def start_model_server() -> tuple[subprocess.Popen[str], str]:
    """bench/ollama_clock.py in its own process, and its URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.ollama_clock", str(TOKENS_PER_SECOND), str(TOKENS_PER_TURN)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    if not url.startswith("http://"):
        raise RuntimeError("the bench's model server did not start")
    return server, url


def _spawn_clients(streams: list[tuple[str, str]], seconds: float) -> list[subprocess.Popen[str]]:
    """Client processes (bench/sse_reader.py), started and connected before the row starts.

    ``streams`` are (worker base URL, conversation id); each process reads a share of the
    streams of one worker.
    """
    shares: list[tuple[str, list[str]]] = []
    for base in sorted({base for base, _ in streams}):
        ids = [cid for b, cid in streams if b == base]
        per = max(1, CLIENT_PROCESSES // len({b for b, _ in streams}))
        shares += [(base, ids[i::per]) for i in range(per) if ids[i::per]]
    clients = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.sse_reader", base, str(seconds), *share],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for base, share in shares
    ]
    for client in clients:
        assert client.stdout is not None
        if client.stdout.readline().strip() != "ready":
            raise RuntimeError("a load client could not open its streams")
    return clients


def _cpu(pids: list[int]) -> tuple[float, float]:
    """CPU seconds of the API processes and of the PostgreSQL processes of the machine."""
    api = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        api += times.user + times.system
    postgres = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info.get("name") == "postgres":
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            postgres += times.user + times.system
    return api, postgres


async def _conversations(client: httpx.AsyncClient, count: int, name: str) -> list[str]:
    # The longest discussion a person can ask for: with the clock's words (each turn brings
    # new ones) the conversations stream for the whole row instead of settling after a few
    # turns and leaving the row to measure fewer conversations than it says.
    session = (
        await client.post("/api/sessions", json={"name": name, "preferences": {"max_rounds": 10}})
    ).json()
    ids = []
    for i in range(count):
        response = await client.post(
            f"/api/sessions/{session['id']}/conversations", json={"title": f"c{i}"}
        )
        ids.append(response.json()["id"])
    return ids


async def token_latency(
    workers: list[str],
    conversations: int,
    seconds: float,
    pids: list[int],
    *,
    cross: bool = False,
) -> dict[str, float]:
    """Conversation i's message goes to worker i % n; its stream is read on the same worker,
    or with ``cross`` on the next one (LISTEN/NOTIFY in between). Messages are posted over
    ``STAGGER_S`` seconds in a shuffled order, as people do not all press send at once."""
    limits = httpx.Limits(max_connections=conversations + 10)
    clients_by_base = {
        base: httpx.AsyncClient(base_url=base, timeout=30, limits=limits) for base in workers
    }
    try:
        first = clients_by_base[workers[0]]
        ids = await _conversations(first, conversations, f"bench {conversations}")
        post_on = [workers[i % len(workers)] for i in range(conversations)]
        read_on = [workers[(i + cross) % len(workers)] for i in range(conversations)]
        clients = await asyncio.to_thread(_spawn_clients, list(zip(read_on, ids, strict=True)), 600)
        await asyncio.sleep(1.0)  # every stream is caught up
        order = list(range(conversations))
        random.Random(conversations).shuffle(order)

        async def post(k: int, i: int) -> None:
            await asyncio.sleep(STAGGER_S * k / conversations)
            await clients_by_base[post_on[i]].post(
                f"/api/conversations/{ids[i]}/messages",
                json={"content": "a lighthouse in a storm"},
            )

        await asyncio.gather(*(post(k, i) for k, i in enumerate(order)))
        # The row starts once every conversation has its message.
        cpu_before, started, start_ns = _cpu(pids), time.monotonic(), time.time_ns()
        await asyncio.sleep(seconds)
        cpu_after = _cpu(pids)
        elapsed = time.monotonic() - started
        outputs = [await asyncio.to_thread(c.communicate, "stop\n") for c in clients]
        for i, cid in enumerate(ids):
            await clients_by_base[post_on[i]].post(f"/api/conversations/{cid}/cancel")
        # The window leaves the last second out: what was produced then may be on its way.
        end_ns = start_ns + int((seconds - 1) * 1e9)
        produced = sum([await _produced(first, cid, start_ns, end_ns) for cid in ids])
    finally:
        for client in clients_by_base.values():
            await client.aclose()
    received = [(int(m), lat) for out, _ in outputs for m, lat in json.loads(out)]
    latencies = sorted(lat for mark, lat in received if start_ns <= mark < end_ns)
    tokens = len(latencies)
    if not tokens:
        raise RuntimeError(f"no token reached the clients ({conversations} conversations)")
    all_tokens = len(received)
    return {
        "tokens": tokens,
        "produced": produced,
        "produced_per_s": produced / (seconds - 1),
        "per_s": tokens / (seconds - 1),
        "median": statistics.median(latencies),
        "p99": latencies[max(0, int(tokens * 0.99) - 1)],
        "api_cpu_per_1000": (cpu_after[0] - cpu_before[0]) / all_tokens * 1000,
        "pg_cpu_per_1000": (cpu_after[1] - cpu_before[1]) / all_tokens * 1000,
        "elapsed": elapsed,
    }


async def _produced(client: httpx.AsyncClient, cid: str, start_ns: int, end_ns: int) -> int:
    """Tokens the conversation's nodes produced in the window, counted in the event log."""
    count, after = 0, 0
    while True:
        page = (
            await client.get(
                f"/api/conversations/{cid}/events/log", params={"after": after, "limit": 1000}
            )
        ).json()
        for event in page:
            if event["kind"] == "token":
                marks = MARK_TEXT.findall(str(event["data"].get("text")))
                count += sum(start_ns <= int(m) < end_ns for m in marks)
        if len(page) < 1000:
            return count
        after = page[-1]["id"]


async def takeover_time(a: subprocess.Popen[bytes], a_base: str, b_base: str) -> float:
    """kill -9 of the worker running a conversation → its next event on the other worker."""
    async with httpx.AsyncClient(base_url=b_base, timeout=30) as on_b:
        cid = (await _conversations(on_b, 1, "takeover"))[0]
        async with httpx.AsyncClient(base_url=a_base, timeout=30) as on_a:
            await on_a.post(f"/api/conversations/{cid}/messages", json={"content": "a storm"})
        killed = 0.0
        async with on_b.stream("GET", f"/api/conversations/{cid}/events", timeout=None) as r:
            tokens = 0
            async for line in r.aiter_lines():
                if line.startswith("event: token") and not killed:
                    tokens += 1
                    if tokens == 20:  # mid-turn on A
                        a.kill()
                        killed = time.monotonic()
                elif killed and line.startswith("event: token"):
                    took = time.monotonic() - killed
                    await on_b.post(f"/api/conversations/{cid}/cancel")
                    return took
    raise RuntimeError("the stream ended before the takeover")


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


def _row(name: str, r: dict[str, float], offered: float) -> str:
    share = r["tokens"] / r["produced"] * 100 if r["produced"] else 0.0
    return (
        f"| {name} | {offered:,.0f} | {r['produced_per_s']:,.0f} | {r['per_s']:,.0f} "
        f"({share:.1f} %) | {r['median']:.1f} ms "
        f"| {r['p99']:.1f} ms | {r['api_cpu_per_1000']:.2f} s | {r['pg_cpu_per_1000']:.2f} s |"
    )


async def measure(base: str, pid: int, seconds: float, second: str, second_pid: int) -> str:
    both, pids = [base, second], [pid, second_pid]
    rows = []
    single = 0.0
    for conversations in (1, 10, 100):
        result = await token_latency([base], conversations, seconds, [pid])
        single = single or result["produced_per_s"]
        rows.append(_row(f"{conversations} on one worker", result, single * conversations))
    result = await token_latency(both, 100, seconds, pids)
    rows.append(_row("100 on two workers (each streamed from its own)", result, single * 100))
    result = await token_latency(both, 100, seconds, pids, cross=True)
    rows.append(_row("100 on two workers, each streamed from the other", result, single * 100))
    result = await token_latency(both, 10, seconds, pids, cross=True)
    rows.append(_row("10 on two workers, each streamed from the other", result, single * 10))
    memory = await idle_stream_memory(base, pid, 1000)
    rps = await history_rps(base, 5, 10)
    lines = [
        f"Server in its own process (uvicorn, embedded PostgreSQL); every role is "
        f"`ollama:{CLOCK_MODEL}`, a model server in its own process (bench/ollama_clock.py, "
        f"Ollama's wire format) that streams {TOKENS_PER_SECOND} tokens/s per turn; latency = "
        "the time a token was due at the model (it streams on a fixed schedule) → token read "
        f"from the SSE socket by one of {CLIENT_PROCESSES} client processes (asyncio "
        "protocols). Every event is stored before it is sent; tokens that wait together "
        "for one commit are coalesced into one frame. CPU = server CPU seconds per 1,000 tokens "
        f"delivered (API processes; PostgreSQL apart). A turn is {TOKENS_PER_TURN} tokens. "
        "Every turn brings words no turn used and every vote is a concrete 'not yet' "
        "(bench/ollama_clock.py), in sessions of 10 refinement rounds: each conversation "
        "keeps discussing for the whole row. "
        "A conversation streams only while a specialist speaks (votes and questions "
        f"do not): alone, one produces the 'offered' rate of the first row (under "
        f"{TOKENS_PER_SECOND}/s); n conversations offer n times that. Produced = tokens the "
        f"nodes made in the first {seconds - 1:.0f} s of each {seconds:.0f} s row (counted in "
        "the log): fewer than offered when the studio takes longer between turns under load (a turn, once started, streams on schedule); "
        "delivered = those of them that reached their client. The person's messages are "
        f"posted over {STAGGER_S:.0f} s in a shuffled order; with two workers, conversation i "
        "is posted to worker i mod 2.",
        "",
        "| conversations | tokens/s offered | tokens/s produced | tokens/s delivered "
        "| median latency | p99 latency | API CPU / 1k tokens | Postgres CPU / 1k tokens |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Memory per idle open SSE stream (1,000 streams on one conversation, server RSS "
        f"before and after, medians of 5 samples): {memory / 1024:.1f} KiB.",
        "",
        f"Message history (GET /messages, 50 messages a page, 10 concurrent httpx clients in one "
        f"process): {rps:.0f} requests/s.",
    ]
    return "\n".join(lines)


def _start(
    port: int, data_dir: str, ollama: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A studio worker on ``data_dir``'s PostgreSQL, its model server at ``ollama``."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.api",
            "--serve",
            str(port),
            "--data-dir",
            data_dir,
            "--ollama",
            ollama,
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/api/health", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the bench server did not start")
        time.sleep(0.2)


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def _takeover(data_dir: str, ollama: str) -> float:
    """Two more workers with the default lease ttl; the one running is killed."""
    from tests.api_server import free_port

    ports = free_port(), free_port()
    a = _start(ports[0], data_dir, ollama)
    b = _start(ports[1], data_dir, ollama)
    try:
        return asyncio.run(
            takeover_time(a, f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}")
        )
    finally:
        _stop(b)
        _stop(a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ollama", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.data_dir, args.ollama)
        return
    from tests.api_server import free_port

    model_server, ollama = start_model_server()

    ports = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        first = _start(ports[0], data_dir, ollama)
        try:
            second = _start(ports[1], data_dir, ollama)  # same data directory: same PostgreSQL
            try:
                text = asyncio.run(
                    measure(
                        f"http://127.0.0.1:{ports[0]}",
                        first.pid,
                        args.seconds,
                        f"http://127.0.0.1:{ports[1]}",
                        second.pid,
                    )
                )
            finally:
                _stop(second)
            took = _takeover(data_dir, ollama)
        finally:
            _stop(first)
            model_server.kill()
    text += (
        f"\n\nTakeover after kill -9 (lease ttl {configured_ttl():.0f} s, renewed every "
        f"{configured_ttl() / 3:.0f} s, sweep every {SWEEP_S:.0f} s): the worker running a "
        f"conversation is killed mid-turn; its next token reaches a client on the other worker "
        f"{took:.1f} s later."
    )
    print(text)
    if not args.no_write:
        update_section("API: SSE token latency, idle streams, history requests", text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

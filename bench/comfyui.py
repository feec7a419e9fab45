"""ComfyUI path: progress latency to the chat, and builder + validation time per workflow.

* Latency: a real conversation (runner, graph, embedded Postgres, fake models) whose
  ComfyUI node talks to the ComfyUI double over a real socket. For every sampler step the
  double stamps the moment it sends the websocket ``progress`` message and the runner's
  event sink stamps the moment the matching ``generation_progress`` event reaches it —
  the point where the API's SSE stream writes it out. Same process, same clock.
* Builder: ``build()`` (fill the template, fit the plan to the server, validate against
  the real object_info of ComfyUI 0.3.64) per template.
* Event log per generation: rows and bytes a generation adds to ``conversation_events``
  (the double sends a preview frame per step; frames are live only, never stored), and
  how many frames an SSE client saw meanwhile.

    python -m bench.comfyui            # prints a table, updates docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.report import update_section
from creative_studio.core.events import StudioEvent
from creative_studio.graph.builder import build_graph
from creative_studio.services.generation import GenerationService
from creative_studio.services.runner import ConversationRunner
from creative_studio.store.database import Database
from creative_studio.store.embedded_postgres import stop_embedded_postgres
from creative_studio.tools.comfyui import ComfyUIClient
from creative_studio.tools.storage import LocalStorage
from creative_studio.workflows.builder import build
from creative_studio.workflows.catalog import ServerInfo, catalog
from creative_studio.workflows.plan import TechnicalPlan, VideoSettings
from tests.comfyui_double import ANIMATEDIFF_NODES, ComfyUIDouble, object_info
from tests.fakes import make_provider

REQUEST = "a cyberpunk street at night, neon signs"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _delays(double: ComfyUIDouble, received: list[tuple[float, int]]) -> list[float]:
    """Milliseconds from each progress message the double sent to the matching event."""
    sent = [(at, step) for at, _, step in double.sent_progress]
    return [
        (got_at - sent_at) * 1000
        for (sent_at, step), (got_at, got_step) in zip(sent, received, strict=False)
        if step == got_step
    ]


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "samples": len(samples),
        "median_ms": statistics.median(samples),
        "p90_ms": _percentile(samples, 0.9),
        "max_ms": max(samples),
    }


async def latency(iterations: int) -> dict[str, Any]:
    double = ComfyUIDouble(step_delay=0.02, previews=False).start()
    received: list[tuple[float, int]] = []  # (at, step) of generation_progress events

    async def sink(event: StudioEvent) -> None:
        if event.kind == "generation_progress" and event.data.get("step"):
            received.append((time.perf_counter(), int(event.data["step"])))

    with tempfile.TemporaryDirectory() as data_dir:
        database = await Database.open(None, Path(data_dir))
        client = ComfyUIClient(double.url)
        provider, _ = make_provider()
        runner = ConversationRunner(
            build_graph(database.checkpointer, provider=provider), database, sink=sink
        )
        service = GenerationService(runner.repository, client, LocalStorage(Path(data_dir)))
        await service.start(resume=False)
        runner.extra_configurable["generation_service"] = service
        try:
            session = await runner.repository.create_session("bench")
            cid = str((await runner.repository.create_conversation(session.id)).id)
            samples: list[float] = []
            for index in range(iterations):
                received.clear()
                double.sent_progress.clear()
                await runner.send(cid, REQUEST if index == 0 else "make the neon brighter")
                await runner.wait_idle(cid)
                samples += _delays(double, received)
        finally:
            await runner.aclose()
            await service.aclose()
            await client.aclose()
            await database.close()
            await stop_embedded_postgres(Path(data_dir))
            double.stop()
    return _summary(samples)


@asynccontextmanager
async def _api_conversation(*, previews: bool) -> AsyncIterator[tuple[Any, Any, Any, str]]:
    """A real API server on a fresh embedded Postgres with a ComfyUI double, and one new
    conversation: (double, api server, client, conversation id)."""
    from tests.api_server import ApiServer

    double = ComfyUIDouble(step_delay=0.02, previews=previews).start()
    with tempfile.TemporaryDirectory() as data_dir:
        database = await Database.open(None, Path(data_dir))
        url = database.url
        await database.close()
        provider, _ = make_provider()
        api = await ApiServer(
            url, Path(data_dir), provider=provider, comfyui_url=double.url
        ).start()
        try:
            async with api.client() as client:
                session = (await client.post("/api/sessions", json={"name": "bench"})).json()
                conversation = await client.post(
                    f"/api/sessions/{session['id']}/conversations", json={}
                )
                yield double, api, client, conversation.json()["id"]
        finally:
            await api.stop()
            await stop_embedded_postgres(Path(data_dir))
            double.stop()


async def sse_latency(iterations: int) -> dict[str, Any]:
    """The same, measured at an SSE client of the real API server (event log included)."""
    from tests.api_server import sse_events

    samples: list[float] = []
    async with _api_conversation(previews=False) as (double, _api, client, cid):
        last = None
        for index in range(iterations):
            double.sent_progress.clear()
            received: list[tuple[float, int]] = []
            text = REQUEST if index == 0 else "make the neon brighter"
            await client.post(f"/api/conversations/{cid}/messages", json={"content": text})
            async for event in sse_events(
                client, f"/api/conversations/{cid}/events", last_event_id=last
            ):
                last = event.id
                if event.event == "generation_progress" and event.data.get("step"):
                    received.append((time.perf_counter(), int(event.data["step"])))
                if event.event == "generation_done":
                    break
            samples += _delays(double, received)
    return _summary(samples)


async def event_log_per_generation(iterations: int) -> dict[str, Any]:
    """Rows and bytes each generation adds to the event log, previews on, over the API."""
    from tests.api_server import sse_events

    rows: list[int] = []
    sizes: list[int] = []
    frames = 0
    async with _api_conversation(previews=True) as (_, api, client, cid):
        last = None
        for index in range(iterations):
            text = REQUEST if index == 0 else "make the neon brighter"
            await client.post(f"/api/conversations/{cid}/messages", json={"content": text})
            generation_id = None
            async for event in sse_events(
                client,
                f"/api/conversations/{cid}/events",
                last_event_id=last,
                previews=True,
            ):
                if event.preview_id:
                    frames += 1
                    continue
                last = event.id
                if event.event == "generation_done":
                    generation_id = event.data["generation_id"]
                    break
            async with api.studio.database.pool.connection() as conn:
                cur = await conn.execute(
                    "select count(*) as n, coalesce(sum(octet_length(data::text)), 0)"
                    " as b from conversation_events where conversation_id = %s"
                    " and data->>'generation_id' = %s",
                    (cid, generation_id),
                )
                row = await cur.fetchone()
            assert row is not None
            rows.append(int(row["n"]))
            sizes.append(int(row["b"]))
    return {
        "generations": iterations,
        "steps": sum(1 for item in _recorded_progress()),
        "rows": statistics.median(rows),
        "bytes": statistics.median(sizes),
        "max_bytes": max(sizes),
        "frames_seen": frames,
    }


def _recorded_progress() -> list[Any]:
    from tests.comfyui_double import fixture

    run = fixture("ws_transcript_ksampler.json")["runs"][0]["ws"]
    return [m for m in run if m["msg"]["type"] == "progress"]


def builder_times(repeat: int) -> list[tuple[str, float, float]]:
    server = (
        ServerInfo(object_info())
        .with_options(
            {
                "CheckpointLoaderSimple.ckpt_name": ["v1-5-pruned-emaonly.safetensors"],
                "UpscaleModelLoader.model_name": ["RealESRGAN_x4plus.pth"],
                "UNETLoader.unet_name": ["wan2.1_t2v_1.3B_fp16.safetensors"],
                "CLIPLoader.clip_name": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
                "VAELoader.vae_name": ["wan_2.1_vae.safetensors"],
            }
        )
        .with_nodes(ANIMATEDIFF_NODES)
    )
    rows = []
    for name in catalog().templates:
        plan = TechnicalPlan(positive_prompt="neon street", video=VideoSettings()).model_copy(
            update={"template": name}
        )
        build(plan, server, init_image="example.png")  # warm the parsed node cache
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            build(plan, server, init_image="example.png")
            times.append((time.perf_counter() - started) * 1000)
        rows.append((name, statistics.median(times), _percentile(times, 0.9)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=8, help="generations in the latency run")
    parser.add_argument("--repeat", type=int, default=200, help="builds per template")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    result = asyncio.run(latency(args.iterations))
    over_sse = asyncio.run(sse_latency(args.iterations))
    log = asyncio.run(event_log_per_generation(max(2, args.iterations // 2)))
    builds = builder_times(args.repeat)
    lines = [
        "Progress latency: websocket `progress` message sent by the ComfyUI double -> the "
        "matching `generation_progress` event at the runner's event sink (where SSE writes it), "
        f"through the graph's custom stream; {result['samples']} sampler steps over "
        f"{args.iterations} generations of one conversation (target: median under 20 ms).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| median | {result['median_ms']:.2f} ms |",
        f"| p90 | {result['p90_ms']:.2f} ms |",
        f"| max | {result['max_ms']:.2f} ms |",
        "",
        "The same through the whole API: the event stored in the event log and written out by "
        "the SSE endpoint of a real uvicorn server, parsed by an httpx client "
        f"({over_sse['samples']} steps):",
        "",
        "| measure | value |",
        "|---|---|",
        f"| median | {over_sse['median_ms']:.2f} ms |",
        f"| p90 | {over_sse['p90_ms']:.2f} ms |",
        f"| max | {over_sse['max_ms']:.2f} ms |",
        "",
        "Event log per generation (previews on: the double sends a JPEG frame after each of "
        f"its {log['steps']} recorded sampler steps; frames go live to SSE clients and are never "
        f"stored), median of {log['generations']} generations:",
        "",
        "| measure | value |",
        "|---|---|",
        f"| rows per generation | {log['rows']:.0f} |",
        f"| bytes per generation | {log['bytes']:,.0f} (max {log['max_bytes']:,}) |",
        f"| preview frames an SSE client saw | {log['frames_seen']} |",
        "",
        "Builder + validation against the real object_info (478 node types), per workflow, "
        f"median of {args.repeat}:",
        "",
        "| template | median | p90 |",
        "|---|---|---|",
        *(f"| {name} | {median:.3f} ms | {p90:.3f} ms |" for name, median, p90 in builds),
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        update_section("ComfyUI: progress latency and workflow building", text)


if __name__ == "__main__":
    main()

"""The graph's ComfyUI node inside a real conversation: runner, Postgres, ComfyUI double."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from creative_studio.core.events import StudioEvent
from creative_studio.graph.builder import build_graph
from creative_studio.services.generation import GenerationService
from creative_studio.services.runner import ConversationRunner
from creative_studio.store.database import Database
from creative_studio.tools.comfyui import ComfyUIClient
from creative_studio.tools.storage import LocalStorage
from tests.comfyui_double import ComfyUIDouble
from tests.fakes import make_provider

REQUEST = "a cyberpunk street at night, neon signs"


class Recorder:
    def __init__(self) -> None:
        self.events: list[StudioEvent] = []

    async def __call__(self, event: StudioEvent) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.kind == kind]

    def texts(self) -> list[str]:
        return [m["content"] for m in self.of("message")]


@pytest.fixture
async def studio(database: Database, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    cleanup: list[Any] = []

    async def start(url: str) -> tuple[ConversationRunner, str, Recorder]:
        provider, _ = make_provider()
        recorder = Recorder()
        runner = ConversationRunner(
            build_graph(database.checkpointer, provider=provider), database, sink=recorder
        )
        client = ComfyUIClient(url, poll_interval=0.2, reconnect_delay=0.05)
        service = GenerationService(
            runner.repository, client, LocalStorage(tmp_path), retry_interval=0.1
        )
        await service.start(resume=False)
        runner.extra_configurable["generation_service"] = service
        session = await runner.repository.create_session("test")
        conversation = await runner.repository.create_conversation(session.id)
        cleanup.append((runner, service, client))
        return runner, str(conversation.id), recorder

    yield start
    for runner, service, client in cleanup:
        await runner.aclose()
        await service.aclose()
        await client.aclose()


async def state_of(runner: ConversationRunner, cid: str) -> dict[str, Any]:
    return (await runner.graph.aget_state({"configurable": {"thread_id": cid}})).values


async def test_the_node_generates_streams_progress_and_iterates_with_the_same_seed(studio):
    double = ComfyUIDouble().start()
    try:
        runner, cid, recorder = await studio(double.url)
        await runner.send(cid, REQUEST)
        await runner.wait_idle(cid)
        state = await state_of(runner, cid)
        assert state["phase"] == "complete"
        generation = state["generation"]
        assert generation["status"] == "complete" and generation["progress"] == 1.0
        assert generation["outputs"][0]["path"].endswith(".png")
        # The plan's SDXL checkpoint is not installed: the team switched and said so.
        assert state["plan"]["checkpoint"] == "tiny-sd15.safetensors"
        texts = recorder.texts()
        assert any("sd_xl_base_1.0.safetensors is not installed" in t for t in texts)
        assert any(t.startswith("Done: 1 image (txt2img, 640x448, seed 42)") for t in texts)
        live = [d for d in recorder.of("generation_progress") if d.get("step")]
        assert live and live[-1]["max_steps"] == 4
        # Preview frames are live only (the service's preview hub): never on the event sink.
        assert not any(d.get("preview") for d in recorder.of("generation_progress"))
        (done,) = recorder.of("generation_done")
        assert done["outputs"] == generation["outputs"]
        rows = await runner.repository.list_generations(
            (await runner.repository.get_conversation(cid)).session_id
        )
        assert [r.status for r in rows] == ["complete"]

        await runner.send(cid, "make the neon brighter")
        await runner.wait_idle(cid)
        state = await state_of(runner, cid)
        assert state["generation"]["status"] == "complete"
        seeds = [p["prompt"]["3"]["inputs"]["seed"] for p in double.posted]
        assert seeds == [42, 42]  # the iteration kept the seed
        assert len(recorder.of("generation_done")) == 2
    finally:
        double.stop()


async def test_out_of_memory_in_a_conversation_is_explained_and_recovered(studio):
    double = ComfyUIDouble(oom_times=1).start()
    try:
        runner, cid, recorder = await studio(double.url)
        await runner.send(cid, REQUEST)
        await runner.wait_idle(cid)
        state = await state_of(runner, cid)
        assert state["generation"]["status"] == "complete"
        texts = recorder.texts()
        assert any(
            t.startswith("Generation failed due to memory - Pixel is reducing resolution")
            for t in texts
        )
        live = [d.get("message") for d in recorder.of("generation_progress")]
        assert any(m and m.startswith("Generation failed due to memory") for m in live)
        assert state["plan"]["width"] * state["plan"]["height"] < 640 * 448  # what ran
    finally:
        double.stop()


async def test_an_unreachable_comfyui_does_not_stop_the_conversation(studio):
    double = ComfyUIDouble()
    double.start()
    double.stop()
    runner, cid, recorder = await studio(double.url)
    await runner.send(cid, REQUEST)
    await runner.wait_idle(cid)
    state = await state_of(runner, cid)
    # It waits, and says so once: the conversation is not "complete" while nothing ran.
    assert state["phase"] == "generating" and state["generation"]["status"] == "queued"
    assert state["generation"]["waiting_for_server"] is True
    notices = [t for t in recorder.texts() if "will start by itself when ComfyUI is back" in t]
    assert len(notices) == 1 and "not reachable" in notices[0]
    assert (await runner.repository.get_conversation(cid)).status == "idle"
    generation_id = state["generation"]["generation_id"]
    service = runner.extra_configurable["generation_service"]
    try:
        double.start()
        for _ in range(500):
            row = await runner.repository.get_generation(generation_id)
            if row.status == "complete":
                break
            await asyncio.sleep(0.02)
        assert row.status == "complete"
        assert service.status()["comfyui"] == "connected"
    finally:
        double.stop()

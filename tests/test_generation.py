"""The generation service end to end: double over a real socket, real Postgres, real files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from creative_studio.services.generation import (
    GenerationService,
    GenerationSettings,
    prompt_id_for,
)
from creative_studio.store.database import Database
from creative_studio.store.repository import StudioRepository
from creative_studio.tools.comfyui import ComfyUIClient
from creative_studio.tools.storage import LocalStorage
from creative_studio.workflows.plan import LoRA, TechnicalPlan
from tests.comfyui_double import ComfyUIDouble
from tests.ollama_double import OllamaDouble

PLAN = TechnicalPlan(
    positive_prompt="neon cyberpunk street at night, rain",
    checkpoint="tiny-sd15.safetensors",
    width=512,
    height=512,
    seed=42,
    steps=4,
)


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str | None, str, dict[str, Any]]] = []

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.items.append((None, kind, data))

    async def sink(self, conversation_id: str | None, kind: str, data: dict[str, Any]) -> None:
        self.items.append((conversation_id, kind, data))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for _, k, data in self.items if k == kind]

    def messages(self) -> list[str]:
        return [d["message"] for d in self.of("generation_progress") if d.get("message")]


@pytest.fixture
def comfy(doubles: Callable[..., ComfyUIDouble]) -> Callable[..., ComfyUIDouble]:
    """``comfy(**options)`` starts a ComfyUI double (tests/conftest.py ``doubles``)."""
    return doubles


class Setup:
    def __init__(self, service: GenerationService, session_id: str, cid: str, events: Events):
        self.service = service
        self.session_id = session_id
        self.conversation_id = cid
        self.events = events
        self.frames: list[tuple[str, dict[str, Any]]] = []  # what the preview hub was given
        publish = service.previews.publish

        def recording(conversation_id: str, frame: dict[str, Any]) -> None:
            self.frames.append((conversation_id, frame))
            publish(conversation_id, frame)

        service.previews.publish = recording  # type: ignore[method-assign]

    async def run(self, plan: TechnicalPlan = PLAN, **kwargs: Any):
        return await self.service.run(
            session_id=self.session_id,
            conversation_id=self.conversation_id,
            plan=plan,
            emit=self.events.emit,
            **kwargs,
        )


@pytest.fixture
async def make(database: Database, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[GenerationService, ComfyUIClient]] = []

    async def factory(url: str, *, retry_interval: float = 0.1) -> Setup:
        repository = StudioRepository(database.pool)
        session = await repository.create_session("gen")
        conversation = await repository.create_conversation(session.id)
        events = Events()
        client = ComfyUIClient(url, poll_interval=0.2, reconnect_delay=0.05)
        service = GenerationService(
            repository,
            client,
            LocalStorage(tmp_path),
            on_event=events.sink,
            retry_interval=retry_interval,
        )
        await service.start(resume=False)
        made.append((service, client))
        return Setup(service, str(session.id), str(conversation.id), events)

    yield factory
    for service, client in made:
        await service.aclose()
        await client.aclose()


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_a_generation_runs_and_is_stored(comfy, make, tmp_path: Path):
    double = comfy()
    setup = await make(double.url)
    outcome = await setup.run()
    assert outcome.status == "complete" and outcome.notes == []
    (output,) = outcome.outputs
    assert output["path"] == f"{setup.session_id}/{outcome.generation_id}/{output['filename']}"
    stored = tmp_path / "generations" / output["path"]
    assert stored.read_bytes().startswith(b"\x89PNG") and output["kind"] == "image"
    assert output["content_type"] == "image/png" and output["size"] == stored.stat().st_size
    row = await setup.service.repository.get_generation(outcome.generation_id)
    assert row.status == "complete" and row.progress == 1.0 and row.error is None
    assert row.prompt_id == prompt_id_for(outcome.generation_id, 0)
    assert row.workflow_json and row.workflow_json["3"]["inputs"]["seed"] == 42
    assert row.parameters["plan"]["positive_prompt"] == PLAN.positive_prompt
    assert row.outputs == outcome.outputs and row.template == "txt2img"
    assert row.started_at is not None and row.completed_at is not None
    progress = [d["progress"] for d in setup.events.of("generation_progress")]
    assert progress == sorted(progress) and 0.4 < max(progress) < 1.0
    steps = [
        (d["step"], d["max_steps"])
        for d in setup.events.of("generation_progress")
        if d["step"] and not d.get("preview")
    ]
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # Preview frames go live to the preview hub, never to the event sinks (the event log).
    assert not any(d.get("preview") for d in setup.events.of("generation_progress"))
    assert len(setup.frames) == 4 and setup.frames[0][0] == setup.conversation_id
    assert setup.frames[0][1]["preview"].startswith("data:image/jpeg;base64,")
    assert setup.service.previews.latest(setup.conversation_id) is None  # gone with the run
    (done,) = setup.events.of("generation_done")
    assert done == {
        "generation_id": outcome.generation_id,
        "outputs": outcome.outputs,
        "status": "complete",
    }
    assert double.posted[0]["prompt"]["9"]["inputs"]["filename_prefix"].startswith("studio_")


async def test_out_of_memory_lowers_the_resolution_and_retries(comfy, make):
    double = comfy(oom_above_pixels=200_000)  # 512x512 fails, 384x384 fits
    setup = await make(double.url)
    outcome = await setup.run()
    assert outcome.status == "complete"
    assert (outcome.plan.width, outcome.plan.height) == (384, 384)
    assert outcome.plan.seed == 42
    assert outcome.notes == [
        "Generation failed due to memory - Pixel is reducing resolution to 384x384 and trying again..."
    ]
    assert outcome.notes[0] in setup.events.messages()  # the person saw it live
    sizes = [(p["prompt"]["5"]["inputs"]["width"], p["prompt_id"]) for p in double.posted]
    assert [s for s, _ in sizes] == [512, 384]
    assert sizes[0][1] != sizes[1][1]  # each attempt has its own prompt id


async def test_out_of_memory_gives_up_after_bounded_retries(comfy, make):
    double = comfy(oom_times=10)
    setup = await make(double.url)
    outcome = await setup.run(settings=GenerationSettings(max_generation_retries=1))
    assert outcome.status == "failed" and len(double.posted) == 2
    assert outcome.error and "Generation failed due to memory" in outcome.error
    row = await setup.service.repository.get_generation(outcome.generation_id)
    assert row.status == "failed" and row.error == outcome.error


async def test_missing_checkpoint_and_lora_switch_to_what_is_installed(comfy, make):
    double = comfy()
    setup = await make(double.url)
    plan = PLAN.model_copy(
        update={"checkpoint": "juggernautXL.safetensors", "loras": [LoRA(name="neon.safetensors")]}
    )
    outcome = await setup.run(plan)
    assert outcome.status == "complete"
    assert outcome.plan.checkpoint == "tiny-sd15.safetensors" and outcome.plan.loras == []
    text = " ".join(outcome.notes)
    assert "juggernautXL.safetensors is not installed" in text
    assert "LoRA neon.safetensors is not installed on the server; Pixel dropped it." in text


async def test_a_model_removed_after_the_check_is_handled(comfy, make):
    double = comfy()
    double.install_model("checkpoints", "dreamshaper_8.safetensors")
    setup = await make(double.url)
    await setup.service.client.object_info()  # cached with the model in it
    double.remove_model("checkpoints", "dreamshaper_8.safetensors")
    outcome = await setup.run(PLAN.model_copy(update={"checkpoint": "dreamshaper_8.safetensors"}))
    assert outcome.status == "complete" and outcome.plan.checkpoint == "tiny-sd15.safetensors"
    assert any("no longer has dreamshaper_8.safetensors" in n for n in outcome.notes)
    assert len(double.posted) == 2


async def test_an_unreachable_comfyui_queues_and_runs_when_it_is_back(comfy, make):
    double = ComfyUIDouble()
    double.start()
    double.stop()  # the port is known, nobody listens
    setup = await make(double.url)
    outcome = await setup.run()
    assert outcome.status == "queued" and outcome.waiting_for_server
    assert outcome.error and "not reachable" in outcome.error and "start by itself" in outcome.error
    row = await setup.service.repository.get_generation(outcome.generation_id)
    assert row.status == "queued"
    assert setup.service.status()["comfyui"] == "unreachable"
    assert setup.service.status()["waiting"] == 1
    try:
        double.start()
        await until(lambda: bool(setup.events.of("generation_done")))
        await until(lambda: setup.service.status()["active"] == 0)
        assert setup.service.status() | {"url": ""} == {
            "comfyui": "connected",
            "url": "",
            "waiting": 0,
            "active": 0,
        }
    finally:
        double.stop()
    row = await setup.service.repository.get_generation(outcome.generation_id)
    assert row.status == "complete" and len(row.outputs) == 1
    conversation_ids = {cid for cid, kind, _ in setup.events.items if kind == "generation_done"}
    assert conversation_ids == {setup.conversation_id}  # delivered by the service's sink


async def test_cancel_while_running_interrupts_that_prompt(comfy, make):
    double = comfy(step_delay=0.3)
    setup = await make(double.url)
    run = asyncio.create_task(setup.run())
    await until(lambda: any(d.get("step") for d in setup.events.of("generation_progress")))
    generation_id = setup.events.of("generation_progress")[0]["generation_id"]
    assert await setup.service.cancel(generation_id)
    outcome = await run
    assert outcome.status == "cancelled"
    row = await setup.service.repository.get_generation(generation_id)
    assert row.status == "cancelled"
    interrupts = [r["body"] for r in double.requests if r["path"] == "/interrupt"]
    assert interrupts == [{"prompt_id": row.prompt_id}]
    assert not await setup.service.cancel(generation_id)  # already over


async def test_cancel_while_pending_deletes_it_from_the_queue(comfy, make):
    double = comfy(paused=True)
    setup = await make(double.url)
    run = asyncio.create_task(setup.run())
    await until(lambda: bool(double.pending))
    generation_id = setup.events.of("generation_progress")[0]["generation_id"]
    assert await setup.service.cancel(generation_id)
    outcome = await run
    assert outcome.status == "cancelled" and double.pending == []
    deletes = [
        r["body"] for r in double.requests if r["path"] == "/queue" and r["method"] == "POST"
    ]
    assert deletes and deletes[-1] == {"delete": [prompt_id_for(generation_id, 0)]}


async def test_a_comfyui_restart_mid_run_resubmits_and_completes(comfy, make):
    double = comfy(step_delay=0.2)
    setup = await make(double.url)
    run = asyncio.create_task(setup.run())
    await until(
        lambda: any(
            d.get("step") and d["step"] * 2 >= d["max_steps"]
            for d in setup.events.of("generation_progress")
        )
    )  # late in the run, where a stuck tracker would show
    await asyncio.to_thread(double.restart, down_for=0.2)
    outcome = await asyncio.wait_for(run, 20)
    assert outcome.status == "complete"
    assert "ComfyUI restarted and lost the generation; Pixel queued it again." in outcome.notes
    assert [p["prompt_id"] for p in double.posted] == [prompt_id_for(outcome.generation_id, 0)] * 2
    # Progress starts over with the new run and only grows within it.
    feed = setup.events.of("generation_progress")
    restart = next(
        i for i, d in enumerate(feed) if "Pixel queued it again" in (d.get("message") or "")
    )
    before = [d["progress"] for d in feed[:restart] if d.get("step")]
    after = [d["progress"] for d in feed[restart + 1 :] if d.get("step")]
    assert before and after and after[0] < max(before)
    assert after == sorted(after) and after[0] < 0.5


async def test_ollama_unloads_the_teams_models_before_a_generation(comfy, make):
    double = comfy()
    ollama = OllamaDouble(models=["llama3.2:3b"]).start()
    try:
        setup = await make(double.url)
        outcome = await setup.run(
            settings=GenerationSettings(unload_ollama_before_generation=True),
            unload_models=["llama3.2:3b"],
            ollama_host=ollama.url,
        )
    finally:
        ollama.stop()
    assert outcome.status == "complete"
    unloads = [r for r in ollama.requests if r["path"] == "/api/generate"]
    assert unloads and unloads[0]["keep_alive"] == 0 and unloads[0]["model"] == "llama3.2:3b"


async def test_the_same_request_key_reattaches_instead_of_generating_twice(comfy, make):
    double = comfy()
    setup = await make(double.url)
    first = await setup.run(request_key="thread:12:7")
    again = await setup.run(request_key="thread:12:7")
    assert again.generation_id == first.generation_id and again.status == "complete"
    assert len(double.posted) == 1


async def test_generations_left_by_a_previous_process_are_resumed(comfy, make, database):
    double = comfy()
    setup = await make(double.url)
    repository = setup.service.repository
    row = await repository.create_generation(
        setup.session_id, setup.conversation_id, {"plan": PLAN.model_dump(mode="json")}, "txt2img"
    )
    assert await setup.service.resume_from_database() == 1
    await until(lambda: bool(setup.events.of("generation_done")))
    done = await repository.get_generation(row.id)
    assert done.status == "complete" and done.prompt_id == prompt_id_for(str(row.id), 0)


async def test_a_plan_the_server_cannot_take_fails_with_the_reason(comfy, make):
    double = comfy()
    setup = await make(double.url)
    outcome = await setup.run(PLAN.model_copy(update={"sampler": "euler_fancy"}))
    assert outcome.status == "failed" and double.posted == []  # never queued
    assert outcome.error and "sampler_name 'euler_fancy' is not available" in outcome.error


async def test_local_storage_keeps_the_bucket_layout_and_refuses_escapes(tmp_path: Path):
    from creative_studio.core.errors import InvalidInputError
    from creative_studio.tools.storage import object_path

    storage = LocalStorage(tmp_path)
    path = object_path("s1", "g1", "studio_00001_.png")
    stored = await storage.put(path, b"\x89PNG", "image/png")
    assert stored.path == "s1/g1/studio_00001_.png" and stored.size == 4
    assert (tmp_path / "generations" / "s1" / "g1" / "studio_00001_.png").exists()
    assert await storage.get(path) == b"\x89PNG"
    for bad in ("../x.png", "a/b.png", ".hidden", ""):
        with pytest.raises(InvalidInputError):
            object_path("s1", "g1", bad)
    await storage.delete_prefix("s1")
    assert not (tmp_path / "generations" / "s1").exists()

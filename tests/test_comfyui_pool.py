"""Several ComfyUI servers (COMFYUI_URL lists two doubles on loopback): generations spread by
load, a server without the plan's model is skipped, a server that dies mid-run has its job
finished on the other, and the outputs come from whichever ran it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from creative_studio.services.generation import GenerationService
from creative_studio.services.generation_job import prompt_id_for
from creative_studio.store.database import Database
from creative_studio.store.repository import StudioRepository
from creative_studio.tools.comfyui import ComfyUIClient
from creative_studio.tools.comfyui_pool import ComfyUIPool
from creative_studio.tools.settings import StudioSettings
from creative_studio.tools.storage import LocalStorage
from creative_studio.workflows.plan import TechnicalPlan
from tests.api_server import ApiServer
from tests.fakes import make_provider
from tests.test_api import new_conversation
from tests.test_generation_conversation import follow

PLAN = TechnicalPlan(
    positive_prompt="a lighthouse in a storm",
    checkpoint="tiny-sd15.safetensors",
    width=512,
    height=512,
    seed=7,
    steps=4,
)


async def until(predicate: Callable[[], bool], within: float = 60.0) -> None:
    """Wait for a condition (a bound on a hang, not a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Pooled:
    def __init__(self, service: GenerationService, session_id: str, conversation_id: str):
        self.service = service
        self.session_id = session_id
        self.conversation_id = conversation_id

    async def submit(self, plan: TechnicalPlan = PLAN) -> str:
        job = await self.service.submit(
            session_id=self.session_id, conversation_id=self.conversation_id, plan=plan
        )
        return job.generation_id


@pytest.fixture
async def pooled(database: Database, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[GenerationService, ComfyUIPool]] = []

    async def factory(*urls: str) -> Pooled:
        repository = StudioRepository(database.pool)
        session = await repository.create_session("pool")
        conversation = await repository.create_conversation(session.id)
        clients = [ComfyUIClient(u, poll_interval=0.2, reconnect_delay=0.05) for u in urls]
        pool = ComfyUIPool(clients, failover_grace=0.5)
        service = GenerationService(
            repository, clients[0], LocalStorage(tmp_path), retry_interval=0.1, pool=pool
        )
        await service.start(resume=False)
        made.append((service, pool))
        return Pooled(service, str(session.id), str(conversation.id))

    yield factory
    for service, pool in made:
        await service.aclose()
        await pool.aclose()


def test_comfyui_url_may_list_several_servers():
    settings = StudioSettings(comfyui_url=" http://127.0.0.1:8301/, http://127.0.0.1:8302,")
    assert settings.comfyui_urls == ["http://127.0.0.1:8301", "http://127.0.0.1:8302"]
    assert settings.comfyui_url == "http://127.0.0.1:8301"  # one-server code uses the first
    single = StudioSettings(comfyui_url="http://127.0.0.1:8301/")
    assert single.comfyui_urls == [single.comfyui_url] == ["http://127.0.0.1:8301/"]
    with pytest.raises(ValueError, match="http"):
        StudioSettings(comfyui_url="http://127.0.0.1:8301,127.0.0.1:8302")


async def test_generations_spread_over_the_servers_by_load(doubles, pooled, tmp_path: Path):
    a, b = doubles(hold=True), doubles(hold=True)
    setup = await pooled(a.url, b.url)
    first = await setup.submit()
    await until(lambda: a.running is not None)  # A runs one (held): its queue says 1
    second = await setup.submit()
    await until(lambda: b.running is not None)  # the idle server got it
    third = await setup.submit()  # both run one: the first listed takes the tie
    await until(lambda: len(a.posted) == 2)
    assert len(b.posted) == 1
    a.hold = b.hold = False
    outcomes = [await setup.service.wait(g) for g in (first, second, third)]
    assert [o.status for o in outcomes] == ["complete"] * 3
    rows = [await setup.service.repository.get_generation(g) for g in (first, second, third)]
    assert [r.server_url for r in rows] == [a.url, b.url, a.url]
    assert {p["prompt_id"] for p in a.posted} == {r.prompt_id for r in (rows[0], rows[2])}
    assert [p["prompt_id"] for p in b.posted] == [rows[1].prompt_id]
    for outcome in outcomes:
        (output,) = outcome.outputs
        assert (tmp_path / "generations" / output["path"]).read_bytes().startswith(b"\x89PNG")
    assert sum(1 for r in b.requests if r["path"] == "/view") == 1  # its output, from it


async def test_a_server_without_the_plans_model_is_skipped(doubles, pooled):
    # A is listed first and idle, but has another checkpoint than the plan names.
    a = doubles(model_lists={"checkpoints": ["dreamshaper_8.safetensors"]})
    b = doubles()
    setup = await pooled(a.url, b.url)
    outcome = await setup.service.wait(await setup.submit())
    assert outcome.status == "complete" and outcome.notes == []
    assert outcome.plan.checkpoint == "tiny-sd15.safetensors"
    assert a.posted == [] and len(b.posted) == 1
    ckpt = next(n for n in b.posted[0]["prompt"].values() if "ckpt_name" in n["inputs"])
    assert ckpt["inputs"]["ckpt_name"] == "tiny-sd15.safetensors"
    row = await setup.service.repository.get_generation(outcome.generation_id)
    assert row.server_url == b.url


async def test_a_server_that_dies_mid_run_has_its_job_finished_on_another(
    doubles, pooled, tmp_path: Path
):
    a, b = doubles(hold=True), doubles()
    setup = await pooled(a.url, b.url)
    generation_id = await setup.submit()
    await until(lambda: a.running is not None)
    row = await setup.service.repository.get_generation(generation_id)
    assert row.server_url == a.url and row.status in ("queued", "running")
    a.stop()  # mid-run: the socket drops, /queue and /history stop answering
    outcome = await setup.service.wait(generation_id)
    assert outcome.status == "complete", outcome.error
    assert any("moving the generation to another server" in n for n in outcome.notes)
    row = await setup.service.repository.get_generation(generation_id)
    assert row.status == "complete" and row.server_url == b.url
    assert row.prompt_id == prompt_id_for(generation_id, 1)  # the next attempt, on B
    assert [p["prompt_id"] for p in b.posted] == [row.prompt_id]
    (output,) = outcome.outputs
    assert (tmp_path / "generations" / output["path"]).read_bytes().startswith(b"\x89PNG")
    viewed = [r for r in b.requests if r["path"] == "/view"]
    assert len(viewed) == 1 and output["comfyui"]["filename"] in viewed[0]["query"]


async def test_a_conversation_finishes_on_the_second_server_when_the_first_dies(
    fresh_db_url: str, tmp_path: Path, doubles
):
    a, b = doubles(hold=True), doubles()
    provider, _ = make_provider()
    server = await ApiServer(
        fresh_db_url, tmp_path, provider=provider, comfyui_url=f"{a.url},{b.url}"
    ).start()
    try:
        assert server.studio.generations.pool.urls == [a.url, b.url]
        async with server.client() as client:
            cid = await new_conversation(client)
            following = asyncio.create_task(follow(client, cid))
            await until(lambda: a.running is not None, within=120)
            a.stop()
            events = await asyncio.wait_for(following, 180)
            done = [e for e in events if e.event == "generation_done"]
            assert done and done[-1].data["status"] == "complete"
            generation_id = done[-1].data["generation_id"]
            row = await server.studio.repository.get_generation(generation_id)
            assert row.status == "complete" and row.server_url == b.url
            (output,) = done[-1].data["outputs"]
            served = await client.get(output["url"])
            assert served.status_code == 200 and served.content.startswith(b"\x89PNG")
            assert any(r["path"] == "/view" for r in b.requests)
            assert not any(r["path"] == "/view" for r in a.requests)
    finally:
        await server.stop()

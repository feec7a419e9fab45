"""Generation through the whole stack: API, graph, generation service, ComfyUI double."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.api_server import ApiServer, sse_events
from tests.comfyui_double import ComfyUIDouble
from tests.fakes import make_provider
from tests.test_api import collect_until_done, new_conversation


@pytest.fixture
def comfy():
    double = ComfyUIDouble().start()
    yield double
    double.stop()


@pytest.fixture
async def server(fresh_db_url: str, tmp_path: Path, comfy: ComfyUIDouble):
    provider, _ = make_provider()
    api = await ApiServer(fresh_db_url, tmp_path, provider=provider, comfyui_url=comfy.url).start()
    yield api
    await api.stop()


async def test_a_plan_becomes_an_image_with_live_progress(server: ApiServer):
    async with server.client() as client:
        cid = await new_conversation(client)
        events = await asyncio.wait_for(collect_until_done(client, cid), 90)
        progress = [e.data for e in events if e.event == "generation_progress"]
        assert progress and progress[-1]["progress"] >= progress[0]["progress"]
        assert any(0 < p["progress"] < 1 for p in progress)
        done = next(e.data for e in events if e.event == "generation_done")
        output = done["outputs"][0]
        assert (
            output["url"]
            == f"/api/generations/{done['generation_id']}/outputs/{output['filename']}"
        )
        image = await client.get(output["url"])
        assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert image.headers["content-type"] == "image/png"
        gallery = (await client.get("/api/generations")).json()["items"]
        assert gallery[0]["id"] == done["generation_id"] and gallery[0]["status"] == "complete"
        assert gallery[0]["outputs"][0]["url"] == output["url"]
        assert gallery[0]["parameters"]["plan"]["seed"] == 42
        detail = (await client.get(f"/api/conversations/{cid}")).json()
        assert detail["generation"]["status"] == "complete"
        # The conversation links its outputs where the studio serves them, never storage's.
        assert detail["generation"]["outputs"][0]["url"] == output["url"]
        missing = await client.get(
            f"/api/generations/{done['generation_id']}/outputs/../../etc/passwd"
        )
        assert missing.status_code == 404
        # Retry: the same plan as a new generation.
        retried = await client.post(f"/api/generations/{done['generation_id']}/retry")
        assert retried.status_code == 202 and retried.json()["id"] != done["generation_id"]
        for _ in range(200):
            again = (await client.get(f"/api/generations/{retried.json()['id']}")).json()
            if again["status"] == "complete":
                break
            await asyncio.sleep(0.05)
        assert again["status"] == "complete"
        assert (
            await client.post(f"/api/generations/{done['generation_id']}/cancel")
        ).status_code == 409


async def test_a_long_generation_can_be_cancelled(server: ApiServer, comfy: ComfyUIDouble):
    comfy.step_delay = 0.2
    async with server.client() as client:
        cid = await new_conversation(client)
        generation_id = None
        async for event in sse_events(client, f"/api/conversations/{cid}/events"):
            if event.event == "generation_progress" and event.data.get("step"):
                generation_id = event.data["generation_id"]
                break
        assert generation_id
        cancelled = await client.post(f"/api/generations/{generation_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        for _ in range(200):
            record = (await client.get(f"/api/generations/{generation_id}")).json()
            if record["status"] == "cancelled":
                break
            await asyncio.sleep(0.05)
        assert record["status"] == "cancelled"
        assert any(r.get("path") == "/interrupt" for r in comfy.requests)


async def test_deleting_a_session_deletes_its_stored_outputs(server: ApiServer, tmp_path: Path):
    async with server.client() as client:
        cid = await new_conversation(client)
        await asyncio.wait_for(collect_until_done(client, cid), 90)
        session_id = (await client.get(f"/api/conversations/{cid}")).json()["session_id"]
        stored = await asyncio.to_thread(lambda: list(tmp_path.rglob(f"{session_id}/*/*.png")))
        assert stored, "the output should be in local storage"
        assert (await client.delete(f"/api/sessions/{session_id}")).status_code == 204
        assert not await asyncio.to_thread(lambda: any(p.exists() for p in stored))
        assert (
            await client.get("/api/generations", params={"session_id": session_id})
        ).status_code == 404


def test_every_session_setting_docs_comfyui_names_is_accepted():
    """docs/comfyui.md's session settings are real: PUT settings takes each of them."""
    import re
    from pathlib import Path

    from creative_studio.api.schemas import Preferences

    docs = (Path(__file__).resolve().parent.parent / "docs" / "comfyui.md").read_text()
    section = docs.split("* Session settings:", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", section))
    assert {
        "max_generation_retries",
        "generation_timeout",
        "free_comfyui_after_generation",
    } <= named
    values = {"max_generation_retries": 1, "generation_timeout": 60.0}
    values |= {"free_comfyui_after_generation": True, "unload_ollama_before_generation": True}
    accepted = Preferences.model_validate({k: v for k, v in values.items() if k in named})
    assert accepted.model_dump(include=set(named) & set(values)) == {
        k: v for k, v in values.items() if k in named
    }

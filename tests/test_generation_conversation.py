"""Generations as the conversation lives them, through the real API over a socket against the
ComfyUI double: previews that are live only, one cancel that stops ComfyUI, results that
arrive after their node (also in a later studio process), an uploaded workflow's values."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from creative_studio.nodes.comfyui import explicit_settings
from creative_studio.services.generation_events import NO_PREVIEWS
from creative_studio.services.generation_job import RESUMED
from creative_studio.store.workflow_store import UserWorkflowStore
from creative_studio.workflows.detection import template_from_workflow
from creative_studio.workflows.plan import TechnicalPlan
from tests.api_server import ApiServer, Sse, sse_events
from tests.comfyui_double import ComfyUIDouble
from tests.fakes import make_provider
from tests.test_api import DONE, new_conversation

EVENT_LOG_BUDGET = 100_000  # bytes one generation may add to conversation_events


async def until(predicate: Callable[[], Any], within: float = 60.0) -> None:
    """Wait for a condition (a bound on a hang, not a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
def comfy() -> AsyncIterator[ComfyUIDouble]:
    double = ComfyUIDouble().start()
    yield double  # type: ignore[misc]
    double.stop()


@pytest.fixture
async def server(fresh_db_url: str, tmp_path: Path, comfy: ComfyUIDouble):
    provider, _ = make_provider()
    api = await ApiServer(fresh_db_url, tmp_path, provider=provider, comfyui_url=comfy.url).start()
    yield api
    await api.stop()


async def follow(client: Any, cid: str, *, previews: bool = False) -> list[Sse]:
    """The stream (frames included with ``previews``) until the team stops."""
    events: list[Sse] = []
    running = False
    async for event in sse_events(client, f"/api/conversations/{cid}/events", previews=previews):
        events.append(event)
        if event.event == "status":
            running = running or event.data["state"] == "running"
            if running and event.data["state"] in DONE:
                return events
    return events


async def event_log(server: ApiServer, cid: str) -> tuple[int, int, int]:
    """(rows, bytes) of the conversation's generation events, and rows holding a preview."""
    async with server.studio.database.pool.connection() as conn:
        cur = await conn.execute(
            "select count(*) as rows, coalesce(sum(octet_length(data::text)), 0) as bytes,"
            " count(*) filter (where data ? 'preview') as previews"
            " from conversation_events where conversation_id = %s"
            " and kind like 'generation%%'",
            (cid,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row["rows"]), int(row["bytes"]), int(row["previews"])


# ----------------------------------------------------------------------------- previews


async def test_previews_are_live_only_and_the_event_log_stays_small(
    server: ApiServer, comfy: ComfyUIDouble
):
    comfy.step_delay = 0.05  # frames arrive while the client watches
    async with server.client() as client:
        cid = await new_conversation(client)
        events = await asyncio.wait_for(follow(client, cid, previews=True), 120)
        frames = [e for e in events if e.preview_id]
        assert frames, "the watching client got the live preview frames"
        assert all(f.data["preview"].startswith("data:image/jpeg;base64,") for f in frames)
        stored_ids = [e.id for e in events if not e.preview_id]
        assert stored_ids == sorted(set(stored_ids))
        # Each frame's id sits between the stored events around it: ids only grow.
        ids = [float(e.preview_id or e.id) for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        rows, size, with_preview = await event_log(server, cid)
        assert with_preview == 0 and rows > 0
        assert size < EVENT_LOG_BUDGET, f"{rows} generation events took {size} bytes"
        # A frame's id is a valid Last-Event-ID: the stream goes on after its stored event.
        stored, _, _ = frames[-1].preview_id.partition(".")  # type: ignore[union-attr]
        async with client.stream(
            "GET",
            f"/api/conversations/{cid}/events",
            headers={"Accept": "text/event-stream", "Last-Event-ID": frames[-1].preview_id},
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    assert int(line[3:].strip()) > int(stored)
                    break
        assert server.studio.generations.previews.kept() == 0  # dropped with the run


async def test_a_server_without_previews_is_named_once_with_how_to_turn_them_on(
    server: ApiServer, comfy: ComfyUIDouble
):
    comfy.previews = False  # ComfyUI started without --preview-method
    async with server.client() as client:
        cid = await new_conversation(client)
        await asyncio.wait_for(follow(client, cid), 120)
        texts = [
            m["content"] for m in (await client.get(f"/api/conversations/{cid}/messages")).json()
        ]
        assert texts.count(NO_PREVIEWS) == 1 and "--preview-method auto" in NO_PREVIEWS
        # Retried in the same conversation: not said again.
        detail = (await client.get(f"/api/conversations/{cid}")).json()
        generation_id = detail["generation"]["generation_id"]
        again = (await client.post(f"/api/generations/{generation_id}/retry")).json()
        await until(
            lambda: _status_is(client, again["id"], "complete"),
        )
        log = (await client.get(f"/api/conversations/{cid}/events/log")).json()
        said = [e for e in log if (e["data"].get("message") or "") == NO_PREVIEWS]
        assert len(said) == 1


async def _status_is(client: Any, generation_id: str, status: str) -> bool:
    return bool((await client.get(f"/api/generations/{generation_id}")).json()["status"] == status)


# ----------------------------------------------------------------------------- cancel


async def test_cancelling_the_conversation_stops_the_generation_in_comfyui(
    server: ApiServer, comfy: ComfyUIDouble
):
    comfy.step_delay = 0.3
    async with server.client() as client:
        cid = await new_conversation(client)
        generation_id = None
        async for event in sse_events(client, f"/api/conversations/{cid}/events"):
            if event.event == "generation_progress" and event.data.get("step"):
                generation_id = event.data["generation_id"]
                break
        assert generation_id
        response = await client.post(f"/api/conversations/{cid}/cancel")
        assert response.status_code == 200 and response.json()["cancelled"] is True
        # At once: the conversation is out of "generating", the chat says so.
        detail = (await client.get(f"/api/conversations/{cid}")).json()
        assert detail["phase"] == "complete" and detail["running"] is False
        assert detail["generation"]["status"] == "cancelled"
        assert detail["generation"]["generation_id"] == generation_id
        messages = (await client.get(f"/api/conversations/{cid}/messages")).json()
        assert messages[-1]["content"] == "Generation cancelled."
        record = (await client.get(f"/api/generations/{generation_id}")).json()
        assert record["status"] == "cancelled"
        # ComfyUI was told to stop exactly that prompt, and stopped it.
        interrupts = [r["body"] for r in comfy.requests if r["path"] == "/interrupt"]
        assert interrupts == [{"prompt_id": record["prompt_id"]}]

        async def stopped() -> bool:
            return comfy.running is None

        await until(stopped)
        assert record["prompt_id"] not in comfy.history or (
            comfy.history[record["prompt_id"]]["status"]["status_str"] == "error"
        )
        await until(lambda: _status_is(client, generation_id, "cancelled"))
        snapshot = await server.studio.runner.graph.aget_state({"configurable": {"thread_id": cid}})
        assert snapshot.values["phase"] == "complete" and not snapshot.next


async def test_cancelling_a_generation_answers_with_its_state_after_the_cancel(
    server: ApiServer, comfy: ComfyUIDouble
):
    comfy.step_delay = 0.3
    async with server.client() as client:
        cid = await new_conversation(client)
        generation_id = None
        async for event in sse_events(client, f"/api/conversations/{cid}/events"):
            if event.event == "generation_progress" and event.data.get("step"):
                generation_id = event.data["generation_id"]
                break
        cancelled = await client.post(f"/api/generations/{generation_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        await until(lambda: _status_is(client, str(generation_id), "cancelled"))


# ----------------------------------------------------------------------------- late results


async def _parked(client: Any, cid: str) -> dict[str, Any]:
    await asyncio.wait_for(follow(client, cid), 120)
    detail = (await client.get(f"/api/conversations/{cid}")).json()
    assert detail["phase"] == "generating", detail
    assert detail["generation"]["status"] == "queued"
    assert detail["generation"]["waiting_for_server"] is True
    return detail


async def _shows_the_late_result(client: Any, server: ApiServer, cid: str, gid: str) -> None:
    async def complete() -> bool:
        detail = (await client.get(f"/api/conversations/{cid}")).json()
        generation = detail.get("generation") or {}
        return bool(generation.get("status") == "complete" and detail["status"] == "complete")

    await until(complete, within=90)
    detail = (await client.get(f"/api/conversations/{cid}")).json()
    assert detail["phase"] == "complete" and detail["status"] == "complete"
    assert detail["generation"]["generation_id"] == gid and detail["generation"]["outputs"]
    assert detail["generation"]["error"] is None
    messages = (await client.get(f"/api/conversations/{cid}/messages")).json()
    last = messages[-1]
    assert last["role"] == "technical" and last["kind"] == "generation"
    assert last["content"].startswith("The generation that waited is ready. Done: 1 image")
    assert last["metadata"]["generation"]["status"] == "complete"
    snapshot = await server.studio.runner.graph.aget_state({"configurable": {"thread_id": cid}})
    assert snapshot.values["generation"]["status"] == "complete" and not snapshot.next
    log = (await client.get(f"/api/conversations/{cid}/events/log", params={"limit": 1000})).json()
    kinds = [e["kind"] for e in log]
    assert "generation_done" in kinds
    (told,) = [
        e for e in log if e["kind"] == "message" and e["data"]["message_id"] == last["message_id"]
    ]
    assert told["data"]["metadata"]["outputs"][0]["url"].startswith(f"/api/generations/{gid}/")
    assert log[-1] == {**log[-1], "kind": "status", "data": {"state": "complete"}}


async def test_a_parked_generation_reaches_the_conversation_when_it_completes(
    fresh_db_url: str, tmp_path: Path
):
    comfy = ComfyUIDouble().start()
    comfy.stop()  # ComfyUI is away while the team talks
    provider, _ = make_provider()
    server = await ApiServer(
        fresh_db_url, tmp_path, provider=provider, comfyui_url=comfy.url
    ).start()
    try:
        async with server.client() as client:
            cid = await new_conversation(client)
            detail = await _parked(client, cid)
            comfy.start()
            await _shows_the_late_result(client, server, cid, detail["generation"]["generation_id"])
    finally:
        await server.stop()
        comfy.stop()


async def test_a_parked_generation_reaches_the_conversation_in_a_later_studio_process(
    fresh_db_url: str, tmp_path: Path
):
    comfy = ComfyUIDouble().start()
    comfy.stop()
    provider, _ = make_provider()
    first = ApiServer(fresh_db_url, tmp_path, provider=provider, comfyui_url=comfy.url)
    await first.start()
    try:
        async with first.client() as client:
            cid = await new_conversation(client)
            detail = await _parked(client, cid)
    finally:
        await first.stop()
    comfy.start()
    later = ApiServer(fresh_db_url, tmp_path, provider=provider, comfyui_url=comfy.url)
    await later.start()
    try:
        async with later.client() as client:
            await _shows_the_late_result(client, later, cid, detail["generation"]["generation_id"])
        assert len(comfy.posted) == 1  # resumed once, not queued twice
    finally:
        await later.stop()
        comfy.stop()


# ----------------------------------------------------------------------------- own workflows

IMG2IMG_EXPORT: dict[str, Any] = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
    "2": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
    "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a harbour", "clip": ["1", 1]}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, lowres", "clip": ["1", 1]}},
    "6": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "seed": 1,
            "steps": 10,
            "cfg": 5.5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "positive": ["4", 0],
            "negative": ["5", 0],
            "latent_image": ["3", 0],
            "denoise": 0.55,
        },
    },
    "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
    "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "mine"}},
}
# Pixel's plan as the graph hands it over (read back from the state: every field is set).
PLAN_FROM_STATE = {
    "template": "custom:harbour",
    "positive_prompt": "a harbour at dusk, oil painting",
    "negative_prompt": "",
    "checkpoint": "sd_xl_base_1.0.safetensors",
    "steps": 30,
    "cfg": 7.0,
    "denoise": 1.0,
    "width": 1024,
    "height": 1024,
    "seed": 77,
}


async def test_an_uploaded_workflow_keeps_its_own_values(server: ApiServer, comfy: ComfyUIDouble):
    spec = template_from_workflow("harbour", IMG2IMG_EXPORT)
    await UserWorkflowStore(server.studio.repository.pool).create(
        "harbour", IMG2IMG_EXPORT, spec.parameters
    )
    async with server.client() as client:
        session = (await client.post("/api/sessions", json={"name": "own"})).json()
    plan = TechnicalPlan.model_validate(PLAN_FROM_STATE)
    state = {"messages": [HumanMessage("a harbour at dusk in oils")]}
    outcome = await server.studio.generations.run(
        session_id=session["id"],
        conversation_id=None,
        plan=plan,
        explicit=explicit_settings(state),  # type: ignore[arg-type]
    )
    assert outcome.status == "complete", outcome.error
    sent = comfy.posted[-1]["prompt"]
    assert sent["6"]["inputs"]["denoise"] == 0.55 and sent["6"]["inputs"]["steps"] == 10
    assert sent["6"]["inputs"]["cfg"] == 5.5 and sent["1"]["inputs"]["ckpt_name"] == (
        "tiny-sd15.safetensors"
    )
    assert sent["4"]["inputs"]["text"] == "a harbour at dusk, oil painting"
    assert sent["5"]["inputs"]["text"] == "blurry, lowres"  # the plan had no negative of its own
    assert sent["6"]["inputs"]["seed"] == 77
    assert outcome.notes == []  # nothing changed that the person should hear about
    assert (outcome.plan.steps, outcome.plan.denoise) == (10, 0.55)  # what really ran
    # The person asked for 20 steps and a lower denoise: those, and only those, change.
    state["messages"].append(HumanMessage("use 20 steps and denoise 0.4"))
    asked = plan.model_copy(update={"steps": 20, "denoise": 0.4})
    again = await server.studio.generations.run(
        session_id=session["id"],
        conversation_id=None,
        plan=asked,
        explicit=explicit_settings(state),  # type: ignore[arg-type]
    )
    assert again.status == "complete", again.error
    sent = comfy.posted[-1]["prompt"]
    assert (sent["6"]["inputs"]["steps"], sent["6"]["inputs"]["denoise"]) == (20, 0.4)
    assert sent["6"]["inputs"]["cfg"] == 5.5


def test_the_settings_a_person_names_are_the_ones_the_plan_sets_on_purpose():
    def named(*texts: str) -> set[str]:
        return set(explicit_settings({"messages": [HumanMessage(t) for t in texts]}))  # type: ignore[typeddict-item]

    base = {"positive_prompt", "negative_prompt", "seed"}
    assert named("a lighthouse in a storm") == base
    assert named("try 40 steps", "cfg 4 please") == base | {"steps", "cfg"}
    assert named("make it 768x512") == base | {"width", "height"}
    assert named("lower the denoising strength") == base | {"denoise"}
    assert named("use dreamshaper_8.safetensors") == base | {"checkpoint"}


# ----------------------------------------------------------------------------- docs


def test_every_generation_route_is_in_the_api_docs():
    from creative_studio.api.app import create_app

    docs = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    paths = create_app().openapi()["paths"]
    routes = [
        (method.upper(), path.replace("{generation_id}", "{id}"))
        for path, operations in paths.items()
        if path.startswith("/api/generations")
        for method in operations
    ]
    assert len(routes) >= 5
    missing = [f"{m} {p}" for m, p in routes if f"`{m} {p}" not in docs]
    assert not missing, f"not in docs/api.md: {missing}"


# ----------------------------------------------------------------------------- studio restart


async def test_live_progress_comes_back_after_a_studio_restart(fresh_db_url: str, tmp_path: Path):
    comfy = ComfyUIDouble(step_delay=0.05).start()
    provider, _ = make_provider()
    first = ApiServer(fresh_db_url, tmp_path, provider=provider, comfyui_url=comfy.url)
    await first.start()
    try:
        async with first.client() as client:
            cid = await new_conversation(client)
            generation_id = None
            async for event in sse_events(client, f"/api/conversations/{cid}/events"):
                if event.event == "generation_progress" and event.data.get("step"):
                    comfy.hold = True  # the run stays mid-way until the studio is back
                    generation_id = str(event.data["generation_id"])
                    break
            assert generation_id
            client_id = first.studio.comfyui.client_id
            seen = (await client.get(f"/api/conversations/{cid}")).json()["last_event_id"]
    finally:
        await first.stop()  # the studio goes away mid-run; ComfyUI goes on rendering
    assert comfy.running is not None and comfy.running.client_id == client_id
    later = ApiServer(fresh_db_url, tmp_path, provider=provider, comfyui_url=comfy.url)
    await later.start()
    try:
        assert later.studio.comfyui.client_id == client_id  # the same ComfyUI client
        async with later.client() as client:
            # While ComfyUI runs it (held mid-way: no step comes), the resumed generation
            # says "running" - to the chat and in its row.
            path = f"/api/conversations/{cid}/events"
            said: list[str] = []
            statuses: list[str] = []
            async for event in sse_events(client, path, last_event_id=seen):
                seen = int(event.id)
                data = event.data
                said.append(str(data))
                if event.event == "generation_progress":
                    statuses.append(str(data.get("status")))
                if event.event == "generation_progress" and data.get("message") == RESUMED:
                    assert data["generation_id"] == generation_id
                    assert data["status"] == "running" and data.get("step") is None
                    break
            await until(lambda: _status_is(client, generation_id, "running"))
            # ComfyUI never went away: nobody tells the person it is "back", and the
            # generation it kept running never reads "queued" on the way.
            assert not any("ComfyUI is back" in text for text in said), said
            assert set(statuses) == {"running"}, "\n".join(said)
            assert comfy.running is not None
            comfy.hold = False
            # ...and the live steps reach the chat again (ComfyUI routes them by client_id).
            steps: list[int] = []
            async for event in sse_events(client, path, last_event_id=seen):
                if event.event != "generation_progress":
                    continue
                if event.data.get("generation_id") == generation_id and event.data.get("step"):
                    steps.append(int(event.data["step"]))
                if len(steps) >= 2 or event.data.get("status") in ("complete", "failed"):
                    break
            assert len(steps) >= 2, "no live progress after the restart"
            assert steps == sorted(steps)
            await until(lambda: _status_is(client, generation_id, "complete"))
        assert len(comfy.posted) == 1  # followed, not queued again
    finally:
        await later.stop()
        comfy.stop()

"""The ComfyUI client against the double, which answers exactly like the recorded server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from creative_studio.tools.comfyui import (
    ComfyEvent,
    ComfyUIClient,
    ComfyUIRejectedError,
    ComfyUIServerError,
    ComfyUIUnreachableError,
    decode_preview,
)
from creative_studio.workflows.catalog import ServerInfo
from tests.comfyui_double import ComfyUIDouble, closed_url, fixture

WORKFLOW = fixture("ws_transcript_ksampler.json")["workflow"]
PROMPT_ID = "110500cb-6449-4eec-8c82-4df5ce3beb82"


@pytest.fixture
def comfy(doubles: Callable[..., ComfyUIDouble]) -> Callable[..., ComfyUIDouble]:
    """``comfy(**options)`` starts a ComfyUI double (tests/conftest.py ``doubles``)."""
    return doubles


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# ----------------------------------------------------------------------------- the double


@pytest.mark.parametrize(
    "name",
    [
        "errors_bad_link.json",
        "errors_missing_checkpoint.json",
        "errors_missing_required_input.json",
        "errors_no_output_node.json",
        "errors_no_prompt_key.json",
        "errors_unknown_class_type.json",
        "errors_value_out_of_range.json",
    ],
)
async def test_the_double_refuses_like_the_recorded_server(name: str, comfy):
    double = comfy()
    recorded = fixture(name)
    async with httpx.AsyncClient(base_url=double.url) as http:
        response = await http.post("/prompt", json=recorded["request"])
    assert response.status_code == recorded["response"]["status"]
    assert response.headers["content-type"] == recorded["response"]["content_type"]
    assert response.json() == recorded["response"]["body"]


async def test_the_double_answers_malformed_json_and_plain_routes_as_recorded(comfy):
    double = comfy()
    async with httpx.AsyncClient(base_url=double.url) as http:
        broken = await http.post(
            "/prompt", content=fixture("errors_malformed_json.json")["request_raw"]
        )
        assert broken.status_code == 500
        assert broken.headers["content-type"] == "text/plain; charset=utf-8"
        assert broken.text == fixture("errors_malformed_json.json")["response"]["body"]
        assert (await http.get("/object_info")).json() == fixture("object_info.json")
        for name, path in [
            ("get_system_stats.json", "/system_stats"),
            ("get_queue.json", "/queue"),
            ("get_history.json", "/history"),
            ("get_models.json", "/models"),
            ("get_models_checkpoints.json", "/models/checkpoints"),
            ("get_models_vae.json", "/models/vae"),
            ("get_object_info_EmptyImage.json", "/object_info/EmptyImage"),
            ("get_object_info_NoSuchNode.json", "/object_info/NoSuchNode"),
            ("get_prompt.json", "/prompt"),
            ("get_features.json", "/features"),
        ]:
            answer = await http.get(path)
            assert answer.status_code == 200 and answer.json() == fixture(name)["body"], path
        edge = fixture("misc_edge_cases.json")
        for case in ("get_view_path_traversal", "get_view_bad_type", "get_history_unknown_id"):
            answer = await http.get(edge[case]["path"])
            assert answer.status_code == edge[case]["status"], case
        assert (await http.get("/view?filename=nope.png&type=output")).status_code == 404
        assert (await http.post("/interrupt")).status_code == 200


# ----------------------------------------------------------------------------- a run


async def test_a_run_follows_the_recorded_message_sequence(comfy):
    double = comfy()
    client = ComfyUIClient(double.url)
    events: list[ComfyEvent] = []
    try:
        result = await client.execute(WORKFLOW, PROMPT_ID, events.append)
    finally:
        await client.aclose()
    assert result.status == "success" and result.prompt_id == PROMPT_ID
    recorded = [
        m["msg"]["type"]
        for m in fixture("ws_transcript_ksampler.json")["runs"][0]["ws"]
        if m["msg"]["type"] != "status"
    ]
    seen = [e.type for e in events if e.type not in ("connected", "preview")]
    assert seen == recorded[: len(seen)]
    assert seen[-1] == "execution_success" or seen == recorded
    steps = [
        (e.data["value"], e.data["max"], e.data["node"]) for e in events if e.type == "progress"
    ]
    assert steps == [(1, 4, "3"), (2, 4, "3"), (3, 4, "3"), (4, 4, "3")]
    assert all(e.prompt_id == PROMPT_ID for e in events if e.type != "connected")
    previews = [e for e in events if e.type == "preview"]
    assert len(previews) == 4 and previews[0].mime == "image/jpeg"
    assert previews[0].image and previews[0].image.startswith(b"\xff\xd8\xff\xe0")
    (output,) = result.outputs
    assert output.node_id == "9" and output.filename.endswith(".png") and output.type == "output"
    assert result.history["status"]["status_str"] == "success"
    assert double.posted[0]["prompt_id"] == PROMPT_ID  # our id, and our client id
    assert double.posted[0]["client_id"] == client.client_id


async def test_files_history_view_upload_and_models(comfy):
    double = comfy()
    client = ComfyUIClient(double.url)
    try:
        result = await client.execute(WORKFLOW, PROMPT_ID)
        data, content_type = await client.view(result.outputs[0].filename)
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and content_type == "image/png"
        first = await client.upload_image(b"\x89PNG one", "probe_upload.png")
        same = await client.upload_image(b"\x89PNG one", "probe_upload.png")
        other = await client.upload_image(b"\x89PNG two", "probe_upload.png")
        recorded = fixture("upload_image.json")
        assert first == recorded["upload_with_type_input_overwrite"]["body"]
        assert same == recorded["upload_again_same_bytes_no_overwrite"]["body"]
        assert other == recorded["upload_same_name_different_bytes_no_overwrite"]["body"]
        info = await client.object_info(refresh=True)
        assert "probe_upload (1).png" in info.options("LoadImage", "image")
        assert await client.models("checkpoints") == ["tiny-sd15.safetensors"]
        installed = await client.installed_models()
        assert installed["checkpoints"] == ["tiny-sd15.safetensors"] and installed["vae"] == []
        with pytest.raises(ComfyUIServerError):
            await client.view("nope.png")
    finally:
        await client.aclose()


async def test_resubmitting_a_known_prompt_id_does_not_queue_it_twice(comfy):
    double = comfy()
    client = ComfyUIClient(double.url)
    try:
        first = await client.execute(WORKFLOW, PROMPT_ID)
        again = await client.execute(WORKFLOW, PROMPT_ID)
    finally:
        await client.aclose()
    assert first.outputs == again.outputs
    assert len(double.posted) == 1


async def test_a_rejected_workflow_carries_the_servers_node_errors(comfy):
    double = comfy()
    client = ComfyUIClient(double.url)
    recorded = fixture("errors_missing_checkpoint.json")
    try:
        with pytest.raises(ComfyUIRejectedError) as refused:
            await client.queue_prompt(recorded["request"]["prompt"], PROMPT_ID)
    finally:
        await client.aclose()
    assert refused.value.body == recorded["response"]["body"]
    assert refused.value.missing_values() == [("1", "ckpt_name", "does_not_exist.safetensors")]
    assert "does_not_exist.safetensors" in refused.value.message


async def test_out_of_memory_arrives_as_an_execution_error(comfy):
    double = comfy(oom_times=1)
    client = ComfyUIClient(double.url)
    events: list[ComfyEvent] = []
    try:
        result = await client.execute(WORKFLOW, PROMPT_ID, events.append)
    finally:
        await client.aclose()
    assert result.status == "error" and result.failure is not None
    assert result.failure.is_out_of_memory
    assert result.failure.exception_type == "torch.OutOfMemoryError"
    assert result.failure.node_type == "KSampler"
    assert "execution_error" in [e.type for e in events], [e.type for e in events]
    error = next(e for e in events if e.type == "execution_error")
    recorded = fixture("errors_runtime_execution_error.json")["ws"]
    recorded_error = next(
        m["msg"]["data"] for m in recorded if m["msg"]["type"] == "execution_error"
    )
    assert set(error.data) == set(recorded_error)  # the same shape as ComfyUI's
    assert result.history["status"] == {
        "status_str": "error",
        "completed": False,
        "messages": result.history["status"]["messages"],
    }


# ----------------------------------------------------------------------------- cancel


async def test_cancel_while_running_is_a_targeted_interrupt(comfy):
    double = comfy(step_delay=0.2)
    client = ComfyUIClient(double.url)
    events: list[ComfyEvent] = []
    try:
        run = asyncio.create_task(client.execute(WORKFLOW, PROMPT_ID, events.append))
        await until(lambda: any(e.type == "progress" for e in events))
        assert await client.cancel(PROMPT_ID) == "interrupted"
        result = await run
    finally:
        await client.aclose()
    assert result.status == "interrupted"
    assert any(e.type == "execution_interrupted" for e in events)
    interrupts = [r for r in double.requests if r["path"] == "/interrupt"]
    assert interrupts[-1]["body"] == {"prompt_id": PROMPT_ID}


async def test_cancel_while_pending_deletes_it_from_the_queue(comfy):
    double = comfy(paused=True)
    client = ComfyUIClient(double.url, poll_interval=0.2)
    try:
        run = asyncio.create_task(client.execute(WORKFLOW, PROMPT_ID))
        await until(lambda: bool(double.pending))
        assert await client.cancel(PROMPT_ID) == "deleted"
        result = await run
    finally:
        await client.aclose()
    assert result.status == "cancelled"
    assert double.pending == [] and double.history == {}
    deletes = [r for r in double.requests if r["path"] == "/queue" and r["method"] == "POST"]
    assert deletes[-1]["body"] == {"delete": [PROMPT_ID]}


# ----------------------------------------------------------------------------- recovery


async def test_a_restart_that_loses_the_prompt_resubmits_it(comfy):
    double = comfy(step_delay=0.05)
    client = ComfyUIClient(double.url, poll_interval=0.2, reconnect_delay=0.05)
    events: list[ComfyEvent] = []
    try:
        run = asyncio.create_task(client.execute(WORKFLOW, PROMPT_ID, events.append))
        await until(lambda: any(e.type == "progress" for e in events))
        await asyncio.to_thread(double.restart, down_for=0.2)
        result = await asyncio.wait_for(run, 20)
    finally:
        await client.aclose()
    assert result.status == "success" and result.resubmitted == 1
    assert [p["prompt_id"] for p in double.posted] == [PROMPT_ID, PROMPT_ID]
    kinds = [e.type for e in events]
    assert "disconnected" in kinds and "reconnected" in kinds and "resubmitted" in kinds


async def test_an_unreachable_server_is_reported_as_such():
    client = ComfyUIClient(closed_url(), poll_interval=0.1)
    try:
        assert not await client.reachable()
        with pytest.raises(ComfyUIUnreachableError, match="not reachable"):
            await client.queue_prompt(WORKFLOW, PROMPT_ID)
        with pytest.raises(ComfyUIUnreachableError):
            await client.object_info()
    finally:
        await client.aclose()


async def test_a_server_that_stays_away_ends_the_wait(comfy):
    double = comfy(step_delay=0.1)
    client = ComfyUIClient(double.url, poll_interval=0.1, reconnect_delay=0.05)
    events: list[ComfyEvent] = []
    try:
        run = asyncio.create_task(
            client.execute(WORKFLOW, PROMPT_ID, events.append, reconnect_grace=0.5)
        )
        await until(lambda: any(e.type == "progress" for e in events))
        await asyncio.to_thread(double.stop)
        with pytest.raises(ComfyUIUnreachableError):
            await asyncio.wait_for(run, 10)
    finally:
        await client.aclose()


def test_preview_frames_decode_in_both_formats():
    jpeg = b"\xff\xd8\xff\xe0rest"
    assert decode_preview(b"\x00\x00\x00\x01\x00\x00\x00\x01" + jpeg) == ("image/jpeg", jpeg, {})
    meta = json.dumps({"node_id": "3", "prompt_id": "p", "image_type": "image/png"}).encode()
    frame = b"\x00\x00\x00\x04" + len(meta).to_bytes(4, "big") + meta + b"\x89PNG"
    mime, image, decoded = decode_preview(frame) or (None, b"", {})
    assert mime == "image/png" and image == b"\x89PNG" and decoded["prompt_id"] == "p"
    assert decode_preview(b"\x00\x00\x00\x02whatever") is None


def test_server_info_adds_options_without_touching_the_original():
    info = ServerInfo(fixture("object_info.json"))
    more = info.with_options({"LoraLoader.lora_name": ["a.safetensors"]})
    assert more.options("LoraLoader", "lora_name") == ["a.safetensors"]
    assert info.options("LoraLoader", "lora_name") == []

"""The ComfyUI node generates wherever the graph runs, with no studio server around it.

Under LangGraph Studio, RemoteGraph or an embedding app nothing injects the studio's
generation service: the node talks to the ComfyUI at the configuration's comfyui_url
itself (here the wire-format double over a real socket). comfyui_url may list several
servers, as COMFYUI_URL does for the studio: the generation goes to one that has the plan's
models, and moves to another when its server dies mid-run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from creative_studio.graph.builder import build_graph
from tests.comfyui_double import ComfyUIDouble, closed_url
from tests.fakes import make_provider

REQUEST = "a lighthouse on a cliff in a storm"
PLANNED_CHECKPOINT = "sd_xl_base_1.0.safetensors"  # what Pixel names for this request


@pytest.fixture
def comfy() -> Iterator[ComfyUIDouble]:
    double = ComfyUIDouble(oom_times=1)
    double.start()
    yield double
    double.stop()


async def _run(url: str, **configurable: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    provider, _ = make_provider()
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {"configurable": {"thread_id": str(uuid4()), "comfyui_url": url, **configurable}}
    custom: list[dict[str, Any]] = []
    payload = {"messages": [HumanMessage(REQUEST, id=str(uuid4()))]}
    async for mode, chunk in graph.astream(
        payload, config, stream_mode=["custom", "updates"], durability="sync"
    ):
        if mode == "custom":
            custom.append(chunk)
    return (await graph.aget_state(config)).values, custom


async def test_the_graph_generates_with_comfyui_directly(comfy: ComfyUIDouble):
    state, custom = await _run(comfy.url)
    generation = state["generation"]
    assert generation["status"] == "complete", generation
    assert state["phase"] == "complete"
    # What ran was validated and queued once per attempt (one out-of-memory retry).
    assert len(comfy.posted) == 2
    output = generation["outputs"][0]
    assert output["kind"] == "image" and output["url"].startswith(f"{comfy.url}/view?")
    async with httpx.AsyncClient() as client:
        image = await client.get(output["url"])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    steps = [
        c["data"] for c in custom if c["kind"] == "generation_progress" and c["data"].get("step")
    ]
    assert steps and all(0 < s["progress"] < 1 for s in steps)
    texts = [m.text for m in state["messages"]]
    assert any("Generation failed due to memory" in t for t in texts)
    assert any(t.startswith("Done: 1 image") for t in texts)


async def test_an_unreachable_comfyui_is_said_plainly():
    url = closed_url()
    state, _ = await _run(url)
    assert state["generation"]["status"] == "failed"
    assert url in state["generation"]["error"] and "Start ComfyUI" in state["generation"]["error"]


async def test_of_several_servers_the_one_with_the_plans_model_generates(doubles):
    # A is listed first and idle, but lacks the checkpoint Pixel plans with; B has it.
    a = doubles()
    b = doubles()
    b.install_model("checkpoints", PLANNED_CHECKPOINT)
    state, _ = await _run(f"{a.url}, {b.url}/")  # the studio's list form: commas, spaces
    generation = state["generation"]
    assert generation["status"] == "complete", generation
    assert state["plan"]["checkpoint"] == PLANNED_CHECKPOINT  # not adapted to A's models
    assert a.posted == [] and len(b.posted) == 1
    ckpt = next(n for n in b.posted[0]["prompt"].values() if "ckpt_name" in n["inputs"])
    assert ckpt["inputs"]["ckpt_name"] == PLANNED_CHECKPOINT
    (output,) = generation["outputs"]
    assert output["url"].startswith(f"{b.url}/view?")
    async with httpx.AsyncClient() as client:
        image = await client.get(output["url"])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert not any("not installed" in m.text for m in state["messages"])


async def test_a_server_that_dies_mid_run_has_the_generation_finished_on_the_other(doubles):
    a, b = doubles(hold=True), doubles()
    run = asyncio.create_task(_run(f"{a.url} {b.url}", comfyui_reconnect_grace=1.0))
    deadline = asyncio.get_running_loop().time() + 120
    while a.running is None:  # A (listed first, both idle) runs it, held mid-way
        assert not run.done() and asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    a.stop()  # mid-run: the socket drops, /queue and /history stop answering
    state, custom = await asyncio.wait_for(run, 120)
    generation = state["generation"]
    assert generation["status"] == "complete", generation
    assert len(a.posted) == 1 and len(b.posted) == 1
    assert a.posted[0]["prompt_id"] != b.posted[0]["prompt_id"]  # a new submission on B
    (output,) = generation["outputs"]
    assert output["url"].startswith(f"{b.url}/view?")
    assert any("moving the generation to another server" in m.text for m in state["messages"])
    assert [c["data"]["status"] for c in custom if c["kind"] == "generation_done"] == ["complete"]


async def test_a_mistyped_server_list_fails_the_generation_with_the_reason(comfy: ComfyUIDouble):
    state, _ = await _run(f"{comfy.url},127.0.0.1:9")
    assert state["generation"]["status"] == "failed"
    assert "127.0.0.1:9" in state["generation"]["error"] and "http" in state["generation"]["error"]
    assert comfy.posted == []

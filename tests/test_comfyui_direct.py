"""The ComfyUI node generates wherever the graph runs, with no studio server around it.

Under LangGraph Studio, RemoteGraph or an embedding app nothing injects the studio's
generation service: the node talks to the ComfyUI at the configuration's comfyui_url
itself (here the wire-format double over a real socket).
"""

from __future__ import annotations

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


@pytest.fixture
def comfy() -> Iterator[ComfyUIDouble]:
    double = ComfyUIDouble(oom_times=1)
    double.start()
    yield double
    double.stop()


async def _run(url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    provider, _ = make_provider()
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {"configurable": {"thread_id": str(uuid4()), "comfyui_url": url}}
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

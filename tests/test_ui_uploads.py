"""A workflow uploaded as ComfyUI's "Save" writes it (UI format): converted, then as usual.

Real Postgres, the real API over uvicorn, the ComfyUI double serving the recorded
object_info of ComfyUI 0.3.64 — whose node declarations the conversion reads.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.api_server
from creative_studio.workflows.plan import TechnicalPlan
from tests.api_server import ApiServer
from tests.comfyui_double import ComfyUIDouble
from tests.fakes import make_provider
from tests.test_official_templates import ui_template
from tests.test_user_workflows import app_with_workflows
from tests.ui_graphs import sd_graph, subgraph_graph


@pytest.fixture
def comfy() -> Iterator[ComfyUIDouble]:
    double = ComfyUIDouble().start()
    yield double
    double.stop()


@pytest.fixture
async def server(
    fresh_db_url: str, tmp_path: Path, comfy: ComfyUIDouble, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ApiServer]:
    monkeypatch.setattr(tests.api_server, "create_app", app_with_workflows)
    provider, _ = make_provider()
    api = await ApiServer(fresh_db_url, tmp_path, provider=provider, comfyui_url=comfy.url).start()
    yield api
    await api.stop()


@pytest.fixture
async def server_without_comfyui(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ApiServer]:
    monkeypatch.setattr(tests.api_server, "create_app", app_with_workflows)
    provider, _ = make_provider()
    api = await ApiServer(fresh_db_url, tmp_path, provider=provider).start()
    yield api
    await api.stop()


def saved_with_subgraphs() -> dict[str, Any]:
    """A txt2img graph whose prompt and latent sit in nested subgraphs, a primitive width."""
    graph = subgraph_graph(promoted=["a lighthouse at dusk", 999])
    graph.update({"last_node_id": 21, "last_link_id": 41, "groups": [], "config": {}})
    return graph


async def test_a_ui_format_upload_is_converted_detected_and_runs(
    server: ApiServer, comfy: ComfyUIDouble
):
    async with server.client() as client:
        created = await client.post(
            "/api/workflows", json={"name": "saved flow", "workflow": saved_with_subgraphs()}
        )
        assert created.status_code == 201, created.text
        data = created.json()
        assert data["checked_on_server"] is True and data["warnings"] == []
        assert data["parameters"]["positive_prompt"] == "20:1.text"
        assert data["parameters"]["negative_prompt"] == "3.text"
        assert data["parameters"]["seed"] == "5.seed"
        assert data["parameters"]["width"] == "20:2:1.width"
        assert data["parameters"]["checkpoint"] == "1.ckpt_name"
        detail = (await client.get(f"/api/workflows/{data['id']}")).json()
        stored = detail["workflow"]  # kept in the API format, as it will be queued
        assert stored["20:1"]["inputs"]["text"] == "a lighthouse at dusk"
        assert stored["20:2:1"]["inputs"]["width"] == 640  # the primitive's value
        assert "21" not in stored and "20" not in stored  # primitive and instance are gone
        session = (await client.post("/api/sessions", json={"name": "ui"})).json()
    plan = TechnicalPlan(
        template="custom:saved flow",
        positive_prompt="a red fox in fresh snow",
        checkpoint="tiny-sd15.safetensors",
        seed=1234,
        steps=6,
        width=512,
        height=512,
    )
    outcome = await server.studio.generations.run(
        session_id=session["id"], conversation_id=None, plan=plan
    )
    assert outcome.status == "complete", outcome.error
    queued = comfy.posted[-1]["prompt"]
    assert queued["20:1"]["inputs"]["text"] == "a red fox in fresh snow"
    assert queued["5"]["inputs"]["seed"] == 1234
    assert queued["20:1"]["inputs"]["clip"] == ["1", 1]


async def test_an_official_template_saved_from_comfyui_is_accepted(server: ApiServer):
    """Flux Schnell as the template browser opens it; the server lacks its checkpoint."""
    async with server.client() as client:
        created = await client.post(
            "/api/workflows", json={"name": "schnell", "workflow": ui_template("flux_schnell")}
        )
    assert created.status_code == 201, created.text
    data = created.json()
    assert data["parameters"]["positive_prompt"] == "6.text"
    assert data["parameters"]["steps"] == "31.steps"
    assert any("flux1-schnell-fp8.safetensors" in w for w in data["warnings"])


async def test_a_broken_ui_graph_is_refused_with_the_node_it_names(server: ApiServer):
    graph = sd_graph()
    graph["links"][0] = [1, 99, 0, 5, 0, "MODEL"]
    async with server.client() as client:
        refused = await client.post("/api/workflows", json={"name": "broken", "workflow": graph})
        assert refused.status_code == 422
        message = refused.json()["error"]["message"]
        assert "UI format cannot be converted" in message and "node 99" in message
        assert "Export (API)" in message
        assert (await client.get("/api/workflows")).json()["items"] == []


async def test_a_ui_graph_with_a_node_off_the_whitelist_is_refused(server: ApiServer):
    graph = sd_graph()
    graph["nodes"].append(
        {
            "id": 9,
            "type": "CheckpointSave",
            "mode": 0,
            "inputs": [{"name": "model", "type": "MODEL", "link": 50}],
            "widgets_values": ["checkpoints/ComfyUI"],
        }
    )
    graph["links"].append([50, 1, 0, 9, 0, "MODEL"])
    async with server.client() as client:
        refused = await client.post("/api/workflows", json={"name": "saver", "workflow": graph})
    assert refused.status_code == 422
    assert "CheckpointSave (node 9)" in refused.json()["error"]["message"]


async def test_without_comfyui_a_ui_graph_cannot_be_converted_and_says_so(
    server_without_comfyui: ApiServer,
):
    async with server_without_comfyui.client() as client:
        refused = await client.post(
            "/api/workflows",
            content=json.dumps({"name": "offline", "workflow": sd_graph()}),
            headers={"Content-Type": "application/json"},
        )
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    assert "ComfyUI did not answer" in message and "Export (API)" in message

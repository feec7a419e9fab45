"""A person's own ComfyUI workflow: upload, detection, checks, and a generation from it.

Real Postgres, the real API over uvicorn, the ComfyUI double serving the recorded
object_info of ComfyUI 0.3.64 (one SD 1.5 checkpoint, no custom nodes).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from pydantic import ValidationError

import tests.api_server
from creative_studio.api.app import create_app
from creative_studio.api.deps import require_token
from creative_studio.api.routes import workflows
from creative_studio.store.workflow_store import UserWorkflowStore
from creative_studio.workflows.plan import TechnicalPlan
from tests.api_server import ApiServer
from tests.comfyui_double import ComfyUIDouble
from tests.fakes import make_provider

# The built-in text-to-image template, exported again as a person's ComfyUI would write
# it: other node ids (in another order) and other titles, none of which say what a node is.
NEW_IDS = {"3": "20", "4": "1", "5": "31", "6": "12", "7": "13", "8": "40", "9": "41"}
NAN = math.nan  # Python's JSON parser lets NaN through; ComfyUI inputs never hold one


def exported_workflow() -> dict[str, Any]:
    text = resources.files("creative_studio.workflows").joinpath("templates", "txt2img.json")
    template: dict[str, Any] = json.loads(text.read_text("utf-8"))

    def relink(value: Any) -> Any:
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
            return [NEW_IDS[value[0]], value[1]]
        return value

    return {
        NEW_IDS[node_id]: {
            "inputs": {name: relink(value) for name, value in node["inputs"].items()},
            "class_type": node["class_type"],
            "_meta": {"title": f"Step {index}"},
        }
        for index, (node_id, node) in enumerate(sorted(template.items(), reverse=True))
    }


# What ComfyUI's "Save" writes (the UI format): nodes with canvas positions, links apart.
UI_EXPORT: dict[str, Any] = {
    "last_node_id": 9,
    "last_link_id": 9,
    "nodes": [
        {
            "id": 3,
            "type": "KSampler",
            "pos": [863, 186],
            "size": [315, 262],
            "flags": {},
            "order": 4,
            "mode": 0,
            "inputs": [{"name": "model", "type": "MODEL", "link": 1}],
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7], "slot_index": 0}],
            "properties": {"Node name for S&R": "KSampler"},
            "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1],
        }
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"]],
    "groups": [],
    "config": {},
    "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
    "version": 0.4,
}


def app_with_workflows(*args: Any, **kwargs: Any) -> FastAPI:
    """The studio's app with the workflows router, as api/app.py includes it.

    Until api/app.py lists the router, the tests add it the same way (under /api, behind
    the token check); once it is listed this adds nothing.
    """
    app = create_app(*args, **kwargs)
    if not any(str(getattr(r, "path", "")).startswith("/api/workflows") for r in app.routes):
        app.include_router(workflows.router, prefix="/api", dependencies=[Depends(require_token)])
    return app


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


# ----------------------------------------------------------------------------- upload


async def test_an_api_export_is_stored_with_its_parameters_detected(server: ApiServer):
    workflow = exported_workflow()
    body = {"name": "my flow", "workflow": workflow}
    assert len(json.dumps(body)) < 64 * 1024  # a realistic export is far below the body limit
    async with server.client() as client:
        created = await client.post("/api/workflows", json=body)
        assert created.status_code == 201, created.text
        data = created.json()
        assert data["name"] == "my flow" and data["template"] == "custom:my flow"
        assert data["parameters"] == {
            "positive_prompt": "12.text",
            "negative_prompt": "13.text",
            "seed": "20.seed",
            "steps": "20.steps",
            "cfg": "20.cfg",
            "sampler": "20.sampler_name",
            "scheduler": "20.scheduler",
            "denoise": "20.denoise",
            "width": "31.width",
            "height": "31.height",
            "batch_size": "31.batch_size",
            "checkpoint": "1.ckpt_name",
            "filename_prefix": "41.filename_prefix",
        }
        assert data["targets"]["seed"] == ["20.seed"]
        # Checked against the server: it lacks the SDXL checkpoint the export names.
        assert data["checked_on_server"] is True
        assert data["warnings"] == [
            "Checkpoint sd_xl_base_1.0.safetensors is not installed on the server; Pixel "
            "switched to tiny-sd15.safetensors. Size adjusted to 512x512, what that model "
            "was trained for."
        ]
        listed = (await client.get("/api/workflows")).json()
        assert [item["id"] for item in listed["items"]] == [data["id"]]
        detail = (await client.get(f"/api/workflows/{data['id']}")).json()
        assert detail["workflow"] == workflow and detail["parameters"] == data["parameters"]
        again = await client.post("/api/workflows", json={**body, "name": " my flow "})
        assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]
        assert (await client.delete(f"/api/workflows/{data['id']}")).status_code == 204
        assert (await client.get(f"/api/workflows/{data['id']}")).status_code == 404
        assert (await client.delete(f"/api/workflows/{data['id']}")).status_code == 404
        assert (await client.get("/api/workflows/not-an-id")).status_code == 404


async def test_the_ui_format_export_is_refused_with_what_to_do(server: ApiServer):
    async with server.client() as client:
        refused = await client.post("/api/workflows", json={"name": "ui", "workflow": UI_EXPORT})
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    assert "UI format" in message and "Export (API)" in message


async def test_a_node_type_off_the_whitelist_is_refused_by_name(server: ApiServer):
    workflow = exported_workflow()
    workflow["50"] = {
        "class_type": "CheckpointSave",
        "inputs": {
            "model": ["1", 0],
            "clip": ["1", 1],
            "vae": ["1", 2],
            "filename_prefix": "checkpoints/ComfyUI",
        },
    }
    async with server.client() as client:
        refused = await client.post("/api/workflows", json={"name": "saver", "workflow": workflow})
        assert refused.status_code == 422
        message = refused.json()["error"]["message"]
        assert "CheckpointSave (node 50)" in message and "workflows/rules.toml" in message
        assert (await client.get("/api/workflows")).json()["items"] == []


async def test_problems_on_the_connected_server_are_reported_per_node(server: ApiServer):
    workflow = exported_workflow()
    workflow["20"]["inputs"]["cfg"] = 1000  # KSampler allows 0-100
    workflow["60"] = {  # whitelisted, but the recorded server has no AnimateDiff
        "class_type": "ADE_AnimateDiffLoaderGen1",
        "inputs": {"model": ["1", 0], "model_name": "mm_sd_v15_v2.ckpt"},
    }
    async with server.client() as client:
        refused = await client.post("/api/workflows", json={"name": "bad", "workflow": workflow})
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    assert message.startswith("The connected ComfyUI server cannot run this workflow:")
    assert "node 20 (KSampler): cfg 1000 is above the maximum 100" in message
    assert "node 60: the server has no node type ADE_AnimateDiffLoaderGen1" in message
    assert "ComfyUI-AnimateDiff-Evolved" in message


async def test_without_comfyui_the_workflow_is_stored_with_a_warning(
    server_without_comfyui: ApiServer,
):
    async with server_without_comfyui.client() as client:
        created = await client.post(
            "/api/workflows", json={"name": "offline", "workflow": exported_workflow()}
        )
    assert created.status_code == 201, created.text
    data = created.json()
    assert data["checked_on_server"] is False
    assert len(data["warnings"]) == 1 and "ComfyUI did not answer" in data["warnings"][0]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": "x", "workflow": {}}, "JSON object of nodes"),
        ({"name": "x", "workflow": {"1": "KSampler"}}, "no class_type"),
        ({"name": "x", "workflow": {"1": {"class_type": 5}}}, "no class_type"),
        ({"name": "x", "workflow": {"1": {"class_type": "SaveImage", "inputs": []}}}, "inputs"),
        ({"name": "../x", "workflow": {"1": {"class_type": "SaveImage"}}}, "workflow name"),
        ({"name": "   ", "workflow": {"1": {"class_type": "SaveImage"}}}, "workflow name"),
        ({"name": "x", "workflow": {"1": {"class_type": "VAEDecode", "inputs": {}}}}, "prompt"),
        ({"name": "x"}, "workflow"),
        ({"name": "x", "workflow": {"1.5": {"class_type": "SaveImage"}}}, "Node id"),
        ({"name": "x", "workflow": {"\u00b2": {"class_type": "SaveImage"}}}, "Node id"),
        (
            {
                "name": "x",
                "workflow": {"1": {"class_type": "KSampler", "inputs": {"seed": 10**30}}},
            },
            "64 bits",
        ),
        (
            {"name": "x", "workflow": {"1": {"class_type": "KSampler", "inputs": {"cfg": NAN}}}},
            "finite",
        ),
    ],
)
async def test_malformed_uploads_are_refused_not_crashed_on(
    server_without_comfyui: ApiServer, body: dict[str, Any], expected: str
):
    raw = json.dumps(body)  # json.dumps writes NaN as NaN, as a sloppy client would
    async with server_without_comfyui.client() as client:
        refused = await client.post(
            "/api/workflows", content=raw, headers={"Content-Type": "application/json"}
        )
    assert refused.status_code == 422, refused.text
    assert expected in refused.json()["error"]["message"]


async def test_text_postgres_cannot_store_is_refused(server_without_comfyui: ApiServer):
    workflow = exported_workflow()
    workflow["12"]["inputs"]["text"] = "a castle\u0000"
    async with server_without_comfyui.client() as client:
        refused = await client.post("/api/workflows", json={"name": "nul", "workflow": workflow})
    assert refused.status_code == 422
    assert "cannot be stored" in refused.json()["error"]["message"]


# ----------------------------------------------------------------------------- using it


def test_a_plan_names_an_uploaded_workflow_as_custom_template():
    plan = TechnicalPlan(positive_prompt="x", template="custom:my flow")
    assert plan.template == "custom:my flow"
    for bad in ("custom:", "custom:a/b", "Custom:x", "my flow", "custom:" + "a" * 81):
        with pytest.raises(ValidationError):
            TechnicalPlan(positive_prompt="x", template=bad)


async def test_a_generation_runs_the_uploaded_workflow_filled_from_the_plan(
    server: ApiServer, comfy: ComfyUIDouble
):
    async with server.client() as client:
        created = await client.post(
            "/api/workflows", json={"name": "my flow", "workflow": exported_workflow()}
        )
        assert created.status_code == 201, created.text
        session = (await client.post("/api/sessions", json={"name": "custom"})).json()
        plan = TechnicalPlan(
            template="custom:my flow",
            positive_prompt="a lighthouse in a storm, oil on canvas",
            negative_prompt="blurry",
            checkpoint="tiny-sd15.safetensors",
            seed=8675309,
            steps=12,
            cfg=6.5,
            sampler="dpmpp_2m",
            scheduler="karras",
            width=640,
            height=448,
        )
        outcome = await server.studio.generations.run(
            session_id=session["id"], conversation_id=None, plan=plan
        )
        assert outcome.status == "complete", outcome.error
        assert outcome.template == "custom:my flow" and outcome.outputs
        queued = comfy.posted[-1]["prompt"]
        assert set(queued) == set(NEW_IDS.values())  # the person's nodes, under their ids
        assert queued["12"]["inputs"]["text"] == "a lighthouse in a storm, oil on canvas"
        assert queued["13"]["inputs"]["text"] == "blurry"
        assert queued["20"]["inputs"]["seed"] == 8675309
        assert queued["20"]["inputs"]["steps"] == 12 and queued["20"]["inputs"]["cfg"] == 6.5
        assert queued["20"]["inputs"]["sampler_name"] == "dpmpp_2m"
        assert queued["20"]["inputs"]["scheduler"] == "karras"
        assert (queued["31"]["inputs"]["width"], queued["31"]["inputs"]["height"]) == (640, 448)
        assert queued["1"]["inputs"]["ckpt_name"] == "tiny-sd15.safetensors"
        record = (await client.get(f"/api/generations/{outcome.generation_id}")).json()
        assert record["template"] == "custom:my flow" and record["status"] == "complete"
        image = await client.get(record["outputs"][0]["url"])
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG"


async def test_a_generation_refuses_unknown_and_no_longer_allowed_workflows(
    server: ApiServer, comfy: ComfyUIDouble
):
    """Stored workflows get no pass: an unknown name or a node off the whitelist is refused."""
    store = UserWorkflowStore(server.studio.repository.pool)
    sneaky = copy.deepcopy(exported_workflow())
    sneaky["50"] = {"class_type": "SaveLatent", "inputs": {"samples": ["20", 0]}}
    await store.create("sneaky", sneaky, {"positive_prompt": ["12.text"]})
    async with server.client() as client:
        session = (await client.post("/api/sessions", json={"name": "custom"})).json()
    posted_before = len(comfy.posted)
    for template, expected in (
        ("custom:ghost", "No uploaded workflow is named 'ghost'"),
        ("custom:sneaky", "SaveLatent (node 50)"),
    ):
        plan = TechnicalPlan(template=template, positive_prompt="a castle at dawn")
        outcome = await server.studio.generations.run(
            session_id=session["id"], conversation_id=None, plan=plan
        )
        assert outcome.status == "failed"
        assert expected in (outcome.error or "")
    assert len(comfy.posted) == posted_before  # nothing reached ComfyUI

"""Pixel generates with what the server has: ours, or ComfyUI's official template.

A ComfyUI double whose model folders hold only a Flux dev UNET with its text encoders and
VAE (no checkpoint at all) gets the official Flux template and a generation, end to end
through the API; a server one file short is told that file's name and folder; the
catalog (GET /api/templates, ``creative-studio templates``) tells the truth about each.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from creative_studio.core.errors import InvalidInputError
from creative_studio.workflows.builder import build
from creative_studio.workflows.catalog import TemplateUnavailableError, catalog
from creative_studio.workflows.detection import detect_parameters
from creative_studio.workflows.official_library import library
from creative_studio.workflows.plan import TechnicalPlan, VideoSettings
from creative_studio.workflows.server_info import ServerInfo
from creative_studio.workflows.template_choice import choose_template
from creative_studio.workflows.validation import validate
from tests.api_server import ApiServer
from tests.comfyui_double import ComfyUIDouble, closed_url, object_info
from tests.fakes import make_provider
from tests.test_api import collect_until_done, new_conversation

ENCODERS = ["clip_l.safetensors", "t5xxl_fp16.safetensors"]
FLUX_ONLY = {
    "checkpoints": [],
    "diffusion_models": ["flux1-dev.safetensors"],
    "text_encoders": ENCODERS,
    "vae": ["ae.safetensors"],
}
FLUX_TEMPLATE = "official:flux_dev_checkpoint_example"  # the most used one those files run


def server_with(models: dict[str, list[str]]) -> ServerInfo:
    """The recorded object_info with exactly these model lists (as the double serves it)."""
    return ServerInfo(ComfyUIDouble(model_lists=models).info)


def plan(**fields: Any) -> TechnicalPlan:
    return TechnicalPlan(positive_prompt="a red fox in fresh snow", seed=7, **fields)


# ----------------------------------------------------------------------------- the choice


def test_a_server_with_an_sd_checkpoint_keeps_our_template():
    choice = choose_template(plan(), ServerInfo(object_info()), catalog())
    assert choice.template == "txt2img" and choice.notes == []


def test_a_flux_only_server_gets_the_official_flux_template_filled_from_the_plan():
    server = server_with(FLUX_ONLY)
    built = build(
        plan(width=1344, height=768, cfg=7.0, steps=30),
        server,
        explicit=["positive_prompt", "negative_prompt", "seed"],
    )
    assert built.template == FLUX_TEMPLATE and built.kind == "image"
    assert validate(built.workflow, server) == []
    nodes = {node["class_type"]: node["inputs"] for node in built.workflow.values()}
    assert nodes["UNETLoader"]["unet_name"] == "flux1-dev.safetensors"
    assert nodes["CLIPTextEncode"]["text"] == "a red fox in fresh snow"
    # The template's own sampling (Flux dev: CFG 1, 20 steps), not an SDXL plan's 7 / 30.
    assert (nodes["KSampler"]["cfg"], nodes["KSampler"]["steps"]) == (1, 20)
    assert nodes["KSampler"]["seed"] == 7
    # The plan's landscape shape at Flux's area; the negative is zeroed, not the prompt.
    width, height = nodes["EmptySD3LatentImage"]["width"], nodes["EmptySD3LatentImage"]["height"]
    assert width > height and abs(width * height - 1024 * 1024) < 0.05 * 1024 * 1024
    assert (built.plan.width, built.plan.height, built.plan.cfg) == (width, height, 1.0)
    assert "ConditioningZeroOut" in nodes
    assert any("cannot run Text to image" in n and FLUX_TEMPLATE in n for n in built.notes)


def test_a_size_the_person_asked_for_is_kept():
    built = build(
        plan(width=512, height=768),
        server_with(FLUX_ONLY),
        explicit=["positive_prompt", "seed", "width", "height"],
    )
    latent = next(n for n in built.workflow.values() if n["class_type"] == "EmptySD3LatentImage")
    assert (latent["inputs"]["width"], latent["inputs"]["height"]) == (512, 768)


def test_a_missing_file_is_named_with_its_folder_and_nothing_else_runs():
    no_vae = {**FLUX_ONLY, "vae": []}
    with pytest.raises(TemplateUnavailableError) as refused:
        build(plan(), server_with(no_vae))
    message = refused.value.message
    assert "txt2img needs any checkpoint in models/checkpoints" in message
    assert "put ae.safetensors in ComfyUI/models/vae" in message


def test_a_video_without_video_models_says_what_to_install_and_makes_a_still():
    built = build(
        plan(template="video_native", video=VideoSettings(frames=16)), server_with(FLUX_ONLY)
    )
    assert built.template == FLUX_TEMPLATE and built.kind == "image"
    wan = next(n for n in built.notes if "would make this video" in n)
    assert "wan2.2_ti2v_5B_fp16.safetensors in ComfyUI/models/diffusion_models" in wan
    assert "wan2.2_vae.safetensors in ComfyUI/models/vae" in wan
    assert any("still key frame" in n for n in built.notes)


def test_a_preferred_official_template_runs_and_one_lacking_files_is_explained():
    server = server_with(FLUX_ONLY)
    chosen = build(plan(template="official:flux_dev_full_text_to_image"), server)
    assert chosen.template == "official:flux_dev_full_text_to_image"
    assert not any(note.startswith("Your preferred") for note in chosen.notes)
    krea = build(plan(template="official:flux1_krea_dev"), server)
    assert krea.template == FLUX_TEMPLATE
    assert krea.notes[0].startswith("Your preferred template 'Flux.1 Krea Dev'")
    assert (
        "flux1-krea-dev_fp8_scaled.safetensors in ComfyUI/models/diffusion_models"
        in (krea.notes[0])
    )
    with pytest.raises(InvalidInputError, match="No official template"):
        build(plan(template="official:no_such_template"), server)


def test_detection_finds_split_sampling_and_wan_latents():
    server = server_with(FLUX_ONLY)
    chroma = detect_parameters(library().workflow("image_chroma_text_to_image", server))
    assert {"steps", "cfg", "sampler", "scheduler", "seed", "width"} <= set(chroma)
    assert chroma["positive_prompt"] != chroma["negative_prompt"]
    wan = detect_parameters(library().workflow("video_wan2_2_5B_ti2v", server))
    assert {"frames", "width", "height", "fps"} <= set(wan)
    flux = detect_parameters(library().workflow("flux_dev_full_text_to_image", server))
    assert "negative_prompt" not in flux  # ConditioningZeroOut of the positive


# ----------------------------------------------------------------------------- end to end


@pytest.fixture
def flux_comfy():
    double = ComfyUIDouble(model_lists=FLUX_ONLY).start()
    yield double
    double.stop()


@pytest.fixture
async def flux_api(fresh_db_url: str, tmp_path: Path, flux_comfy: ComfyUIDouble):
    provider, _ = make_provider()
    api = await ApiServer(
        fresh_db_url, tmp_path, provider=provider, comfyui_url=flux_comfy.url
    ).start()
    yield api
    await api.stop()


async def test_a_flux_only_server_generates_through_the_api(
    flux_api: ApiServer, flux_comfy: ComfyUIDouble
):
    async with flux_api.client() as client:
        cid = await new_conversation(client)
        events = await asyncio.wait_for(collect_until_done(client, cid), 90)
        done = next(e.data for e in events if e.event == "generation_done")
        image = await client.get(done["outputs"][0]["url"])
        assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
        generation = (await client.get(f"/api/generations/{done['generation_id']}")).json()
        messages = (await client.get(f"/api/conversations/{cid}/messages")).json()
    queued = flux_comfy.posted[-1]["prompt"]
    assert {n["class_type"] for n in queued.values()} >= {"UNETLoader", "DualCLIPLoader"}
    assert not any(n["class_type"] == "CheckpointLoaderSimple" for n in queued.values())
    assert generation["status"] == "complete"
    said = " ".join(str(m) for m in messages)
    assert FLUX_TEMPLATE in said  # the note reached the chat


async def test_the_template_list_tells_what_runs_and_what_is_missing(flux_api: ApiServer):
    async with flux_api.client() as client:
        listing = (await client.get("/api/templates")).json()
        images = (await client.get("/api/templates", params={"kind": "image"})).json()
        running = (await client.get("/api/templates", params={"runnable": "true"})).json()
        bad = await client.get("/api/templates", params={"kind": "audio"})
    assert listing["comfyui"] == "connected" and listing["library_version"] == "0.1.123"
    items = {item["name"]: item for item in listing["items"]}
    assert items["txt2img"]["source"] == "studio" and items["txt2img"]["runnable"] is False
    assert items["txt2img"]["missing_models"] == {"checkpoints": ["any checkpoint"]}
    flux = items[FLUX_TEMPLATE]
    assert (flux["kind"], flux["family"], flux["runnable"]) == ("image", "flux", True)
    krea = items["official:flux1_krea_dev"]
    assert krea["runnable"] is False
    assert krea["missing_models"] == {"diffusion_models": ["flux1-krea-dev_fp8_scaled.safetensors"]}
    assert {i["kind"] for i in listing["items"]} == {"image", "edit", "video", "upscale"}
    assert {i["kind"] for i in images["items"]} == {"image"}
    assert running["items"] and all(i["runnable"] for i in running["items"])
    assert bad.status_code == 422


async def test_the_template_list_says_when_comfyui_is_down(fresh_db_url: str, tmp_path: Path):
    provider, _ = make_provider()
    api = ApiServer(fresh_db_url, tmp_path, provider=provider, comfyui_url=closed_url())
    await api.start()
    try:
        async with api.client() as client:
            listing = (await client.get("/api/templates")).json()
    finally:
        await api.stop()
    assert listing["comfyui"] == "unreachable" and listing["comfyui_detail"]
    assert listing["items"] and all(i["runnable"] is None for i in listing["items"])


async def test_an_official_template_is_a_valid_session_preference(flux_api: ApiServer):
    async with flux_api.client() as client:
        session = (await client.post("/api/sessions", json={"name": "t"})).json()
        url = f"/api/sessions/{session['id']}/settings"
        ok = await client.put(url, json={"preferences": {"preferred_template": FLUX_TEMPLATE}})
        unknown = await client.put(
            url, json={"preferences": {"preferred_template": "official:nope"}}
        )
    assert ok.status_code == 200, ok.text
    assert ok.json()["preferences"]["preferred_template"] == FLUX_TEMPLATE
    assert unknown.status_code == 422 and "official:nope" in unknown.json()["error"]["message"]


def test_the_terminal_lists_the_templates(flux_comfy: ComfyUIDouble, tmp_path: Path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "creative_studio.api.cli",
            "templates",
            "--comfyui-url",
            flux_comfy.url,
            "--kind",
            "image",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
    )
    assert result.returncode == 0, result.stderr
    assert "official:flux_dev_checkpoint_example" in result.stdout
    assert "flux1-krea-dev_fp8_scaled.safetensors" in result.stdout
    assert "video_native" not in result.stdout  # --kind image


# The official template a server holding only one family's files gets (the list):
# the files are the template's own model list, as a person following its notes installs them.
FAMILY_TEMPLATES = [
    ("official:image_z_image_turbo", "image"),
    ("official:image_chroma_text_to_image", "image"),
    ("official:hidream_i1_dev", "image"),
    ("official:template_qwen_image_illustration_lora", "image"),
    ("official:video_wan2_2_5B_ti2v", "video"),
]


@pytest.mark.parametrize(("name", "kind"), FAMILY_TEMPLATES)
def test_a_server_with_one_familys_files_gets_that_familys_official_template(name: str, kind: str):
    template = library().get(name.removeprefix("official:"))
    assert template is not None
    lists: dict[str, list[str]] = {"checkpoints": []}
    for file in template.files:
        lists.setdefault(file.folder, []).append(file.name)
    server = server_with(lists)
    video = VideoSettings(frames=16) if kind == "video" else None
    built = build(
        plan(template="video_native" if video else "txt2img", video=video),
        server,
        explicit=["positive_prompt", "seed"],
    )
    assert built.template.startswith("official:") and built.kind == kind
    assert library().get(built.template.removeprefix("official:")).family == template.family
    assert validate(built.workflow, server) == []
    texts = [
        value
        for node in built.workflow.values()
        for key, value in node["inputs"].items()
        if isinstance(value, str) and key in ("text", "prompt", "text_g", "clip_l", "t5xxl")
    ]
    assert any("a red fox in fresh snow" in text for text in texts), texts
    # The plan the person is shown is what runs: the template's own values where it kept
    # them (a video's frame count and rate too), not the plan's.
    own = detect_parameters(library().workflow(name.removeprefix("official:"), server))
    shown = {"steps": built.plan.steps, "cfg": built.plan.cfg}
    if video is not None:
        assert built.plan.video is not None
        shown |= {"frames": built.plan.video.frames, "fps": built.plan.video.fps}
    for param, value in shown.items():
        if param in own:
            node_id, input_name = own[param][0].split(".", 1)
            assert built.workflow[node_id]["inputs"][input_name] == value, param

"""Templates, builder and validation against the REAL object_info of ComfyUI 0.3.64."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from creative_studio.core.errors import InvalidInputError
from creative_studio.workflows.builder import (
    build,
    checkpoint_family,
    reduce_for_memory,
    switch_checkpoint,
)
from creative_studio.workflows.catalog import (
    Catalog,
    ServerInfo,
    TemplateUnavailableError,
    catalog,
)
from creative_studio.workflows.detection import detect_parameters, template_from_workflow
from creative_studio.workflows.plan import LoRA, TechnicalPlan, VideoSettings
from creative_studio.workflows.validation import WorkflowValidationError, check, validate
from tests.comfyui_double import ANIMATEDIFF_NODES, fixture, object_info

PLAN = TechnicalPlan(positive_prompt="rain-soaked neon street at night, cinematic")


@pytest.fixture(scope="module")
def server() -> ServerInfo:
    return ServerInfo(object_info())


def with_models(server: ServerInfo, **folders: list[str]) -> ServerInfo:
    targets = {
        "checkpoints": "CheckpointLoaderSimple.ckpt_name",
        "loras": "LoraLoader.lora_name",
        "upscale_models": "UpscaleModelLoader.model_name",
        "diffusion_models": "UNETLoader.unet_name",
        "text_encoders": "CLIPLoader.clip_name",
        "vae": "VAELoader.vae_name",
    }
    return server.with_options({targets[k]: v for k, v in folders.items()})


def codes(workflow: dict[str, Any], server: ServerInfo) -> set[str]:
    return {issue.code for issue in validate(workflow, server)}


# ----------------------------------------------------------------------------- templates


def test_object_info_combos_in_both_formats_are_read(server: ServerInfo):
    assert server.options("CheckpointLoaderSimple", "ckpt_name") == ["tiny-sd15.safetensors"]
    assert "euler" in server.options("KSampler", "sampler_name")
    assert server.options("SaveVideo", "format") == ["auto", "mp4"]  # ["COMBO", {"options"}]
    assert server.options("UpscaleModelLoader", "model_name") == []
    assert server.models("checkpoints") == fixture("get_models_checkpoints.json")["body"]


@pytest.mark.parametrize("name", ["txt2img", "img2img", "upscale_latent"])
def test_templates_the_real_server_runs_validate_as_built(name: str, server: ServerInfo):
    plan = PLAN.model_copy(update={"template": name})
    built = build(plan, server, init_image="example.png")
    assert built.template == name
    assert validate(built.workflow, server) == []
    assert catalog().availability(catalog().get(name), server).runnable


def test_every_template_validates_once_its_models_and_nodes_are_there(server: ServerInfo):
    full = with_models(
        server,
        checkpoints=["v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"],
        upscale_models=["RealESRGAN_x4plus.pth"],
        diffusion_models=["wan2.1_t2v_1.3B_fp16.safetensors"],
        text_encoders=["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
        vae=["wan_2.1_vae.safetensors"],
    ).with_nodes(ANIMATEDIFF_NODES)
    video = VideoSettings(frames=24, fps=12, motion="slow dolly in", motion_strength=1.2)
    for name, spec in catalog().templates.items():
        plan = PLAN.model_copy(update={"template": name, "video": video})
        built = build(plan, full, init_image="example.png", allow_fallback=False)
        assert validate(built.workflow, full) == [], name
        assert built.template == name
        for param, targets in spec.parameters.items():
            for target in targets:
                node_id, input_name = target.split(".")
                assert input_name in built.workflow[node_id]["inputs"], (name, param)
    animatediff = build(
        PLAN.model_copy(update={"template": "video_animatediff", "video": video}), full
    )
    assert animatediff.workflow["5"]["inputs"]["batch_size"] == 24  # frames
    assert animatediff.workflow["9"]["inputs"]["fps"] == 12.0
    assert animatediff.workflow["22"]["inputs"]["float_val"] == 1.2  # motion strength
    # AnimateDiff's motion model needs SD 1.5: the SDXL plan checkpoint is swapped.
    assert checkpoint_family(animatediff.workflow["4"]["inputs"]["ckpt_name"]) == "sd15"
    assert "slow dolly in" in animatediff.workflow["6"]["inputs"]["text"]
    wan = build(PLAN.model_copy(update={"template": "video_native", "video": video}), full)
    assert wan.workflow["40"]["inputs"]["length"] == 25  # Wan takes 4n+1 frames
    assert wan.workflow["40"]["inputs"]["width"] % 16 == 0


def test_the_real_server_lacks_exactly_what_is_named(server: ServerInfo):
    templates = catalog()
    upscale = templates.availability(templates.get("upscale"), server)
    assert upscale.missing_models == {"upscale_models": ["RealESRGAN_x4plus.pth"]}
    wan = templates.availability(templates.get("video_native"), server)
    assert wan.missing_nodes == []
    assert wan.missing_models == {
        "diffusion_models": ["wan2.1_t2v_1.3B_fp16.safetensors"],
        "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
        "vae": ["wan_2.1_vae.safetensors"],
    }
    animatediff = templates.availability(templates.get("video_animatediff"), server)
    assert animatediff.missing_nodes == [
        "ADE_AnimateDiffLoaderGen1",
        "ADE_StandardUniformContextOptions",
        "ADE_MultivalDynamic",
    ]
    assert "ComfyUI-AnimateDiff-Evolved" in animatediff.describe()


def test_a_video_plan_on_the_real_server_says_what_is_missing_and_makes_a_key_frame(
    server: ServerInfo,
):
    plan = PLAN.model_copy(update={"template": "video_animatediff", "video": VideoSettings()})
    built = build(plan, server)
    assert built.template == "txt2img" and built.kind == "image"
    text = " ".join(built.notes)
    assert "ADE_AnimateDiffLoaderGen1" in text and "ComfyUI-AnimateDiff-Evolved" in text
    assert "wan2.1_t2v_1.3B_fp16.safetensors in models/diffusion_models" in text
    assert "still key frame instead of a video" in text
    assert [a.template for a in built.unavailable] == ["video_animatediff", "video_native"]


def test_upscale_without_an_upscale_model_refines_with_the_checkpoint(server: ServerInfo):
    built = build(
        PLAN.model_copy(update={"template": "upscale", "width": 2048, "height": 2048}),
        server,
        init_image="example.png",
    )
    assert built.template == "upscale_latent"
    assert built.workflow["12"]["inputs"]["width"] == 2048  # the target size is kept
    assert "RealESRGAN_x4plus.pth" in built.notes[0]


def test_an_installed_upscale_model_stands_in_for_the_templates_default(server: ServerInfo):
    has_one = with_models(server, upscale_models=["4x-UltraSharp.pth"])
    built = build(
        PLAN.model_copy(update={"template": "upscale"}), has_one, init_image="example.png"
    )
    assert built.template == "upscale"
    assert built.workflow["11"]["inputs"]["model_name"] == "4x-UltraSharp.pth"
    assert any("4x-UltraSharp.pth" in note for note in built.notes)


def test_upscale_needs_an_image_and_says_so(server: ServerInfo):
    with pytest.raises(InvalidInputError, match="needs an image"):
        build(PLAN.model_copy(update={"template": "upscale"}), server)


def test_img2img_without_an_image_falls_back_to_text_to_image(server: ServerInfo):
    built = build(PLAN.model_copy(update={"template": "img2img"}), server)
    assert built.template == "txt2img" and "needs a starting image" in built.notes[0]


def test_img2img_fills_the_image_and_a_real_denoise(server: ServerInfo):
    built = build(PLAN.model_copy(update={"template": "img2img"}), server, init_image="example.png")
    assert built.workflow["10"]["inputs"]["image"] == "example.png"
    assert built.workflow["3"]["inputs"]["denoise"] == 0.6  # 1.0 would ignore the image


def test_img2img_on_a_switched_checkpoint_works_at_that_models_size(server: ServerInfo):
    # Seen on a real ComfyUI: an SDXL-sized portrait img2img ran at 832x1216 on the only
    # (SD 1.5) checkpoint. The image is scaled to the model's area, its shape kept.
    plan = PLAN.model_copy(update={"template": "img2img", "width": 832, "height": 1216})
    built = build(plan, server, init_image="example.png")
    assert built.workflow["4"]["inputs"]["ckpt_name"] == "tiny-sd15.safetensors"
    assert (built.workflow["12"]["inputs"]["width"], built.workflow["12"]["inputs"]["height"]) == (
        448,
        640,
    )
    assert any("Size adjusted to 448x640" in note for note in built.notes)


def test_nothing_runnable_is_refused_with_every_reason(server: ServerInfo):
    no_checkpoint = ServerInfo(copy.deepcopy(server.raw))
    no_checkpoint.raw["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = []
    with pytest.raises(TemplateUnavailableError, match="any checkpoint"):
        build(PLAN, no_checkpoint)


# ----------------------------------------------------------------------------- the mapping


def test_the_plan_fills_the_template(server: ServerInfo):
    plan = PLAN.model_copy(
        update={
            "checkpoint": "tiny-sd15.safetensors",
            "sampler": "dpmpp_2m",
            "scheduler": "karras",
            "steps": 30,
            "cfg": 6.5,
            "width": 768,
            "height": 512,
            "seed": 1234,
            "batch_size": 2,
            "negative_prompt": "blurry",
        }
    )
    built = build(plan, server, filename_prefix="studio_abc")
    workflow = built.workflow
    assert workflow["3"]["inputs"] | {"model": None} == {
        "seed": 1234,
        "steps": 30,
        "cfg": 6.5,
        "sampler_name": "dpmpp_2m",
        "scheduler": "karras",
        "denoise": 1.0,
        "model": None,
        "positive": ["6", 0],
        "negative": ["7", 0],
        "latent_image": ["5", 0],
    }
    assert workflow["5"]["inputs"] == {"width": 768, "height": 512, "batch_size": 2}
    assert workflow["6"]["inputs"]["text"] == PLAN.positive_prompt
    assert workflow["7"]["inputs"]["text"] == "blurry"
    assert workflow["9"]["inputs"]["filename_prefix"] == "studio_abc"
    assert built.notes == []


def test_an_empty_negative_prompt_gets_the_studio_default(server: ServerInfo):
    built = build(PLAN.model_copy(update={"checkpoint": "tiny-sd15.safetensors"}), server)
    assert "low quality" in built.workflow["7"]["inputs"]["text"]


def test_a_missing_checkpoint_switches_to_an_installed_one_and_rescales(server: ServerInfo):
    plan = PLAN.model_copy(update={"width": 1216, "height": 832})
    built = build(plan, server)
    assert built.plan.checkpoint == "tiny-sd15.safetensors"
    assert built.workflow["4"]["inputs"]["ckpt_name"] == "tiny-sd15.safetensors"
    assert (built.plan.width, built.plan.height) == (640, 448)  # SD 1.5 area, same shape
    assert built.plan.seed == plan.seed
    assert "sd_xl_base_1.0.safetensors is not installed" in built.notes[0]


def test_the_same_family_is_preferred_when_switching():
    plan = PLAN.model_copy(update={"checkpoint": "juggernautXL_v9.safetensors"})
    switched, note = switch_checkpoint(
        plan, ["dreamshaper_8.safetensors", "sd_xl_base_1.0.safetensors"]
    )
    assert switched.checkpoint == "sd_xl_base_1.0.safetensors"
    assert (switched.width, switched.height) == (plan.width, plan.height)
    assert note and "juggernautXL_v9" in note


def test_missing_loras_are_dropped_installed_ones_chained(server: ServerInfo):
    has_lora = with_models(server, loras=["neon_glow.safetensors"])
    plan = PLAN.model_copy(
        update={
            "checkpoint": "tiny-sd15.safetensors",
            "loras": [
                LoRA(name="neon_glow.safetensors", strength=0.7),
                LoRA(name="gone.safetensors"),
            ],
        }
    )
    built = build(plan, has_lora)
    assert [lo.name for lo in built.plan.loras] == ["neon_glow.safetensors"]
    assert any("gone.safetensors is not installed" in n for n in built.notes)
    loras = {k: v for k, v in built.workflow.items() if v["class_type"] == "LoraLoader"}
    assert len(loras) == 1
    ((lora_id, lora),) = loras.items()
    assert lora["inputs"]["model"] == ["4", 0] and lora["inputs"]["clip"] == ["4", 1]
    assert lora["inputs"]["strength_model"] == 0.7
    assert built.workflow["3"]["inputs"]["model"] == [lora_id, 0]
    assert built.workflow["6"]["inputs"]["clip"] == [lora_id, 1]
    assert built.workflow["7"]["inputs"]["clip"] == [lora_id, 1]
    assert validate(built.workflow, has_lora) == []


def test_out_of_memory_lowers_batch_then_frames_then_resolution():
    plan = PLAN.model_copy(update={"batch_size": 2, "width": 1024, "height": 768})
    smaller, what = reduce_for_memory(plan) or (None, "")
    assert smaller is not None and smaller.batch_size == 1 and what == "batch 1"
    smaller, what = reduce_for_memory(smaller) or (None, "")
    assert smaller is not None and (smaller.width, smaller.height) == (768, 576)
    assert what == "768x576" and smaller.seed == plan.seed
    video = PLAN.model_copy(update={"video": VideoSettings(frames=32)})
    fewer, what = reduce_for_memory(video, "video") or (None, "")
    assert fewer is not None and fewer.video is not None and fewer.video.frames == 24
    tiny = PLAN.model_copy(update={"width": 256, "height": 256})
    assert reduce_for_memory(tiny) is None


# ----------------------------------------------------------------------------- refusals


def test_an_unknown_sampler_is_refused_with_the_servers_choices(server: ServerInfo):
    with pytest.raises(WorkflowValidationError) as refused:
        build(PLAN.model_copy(update={"sampler": "euler_fancy"}), server)
    (issue,) = refused.value.issues
    assert issue.code == "value_not_in_list" and issue.input_name == "sampler_name"
    assert "sampler_name 'euler_fancy' is not available on the server" in refused.value.message
    assert "closest: euler" in refused.value.message


def test_an_out_of_range_cfg_is_refused(server: ServerInfo):
    with pytest.raises(WorkflowValidationError, match="cfg 250 is above the maximum 100"):
        build(PLAN.model_copy(update={"cfg": 250.0}), server)
    with pytest.raises(WorkflowValidationError, match="steps 0 is below the minimum 1"):
        build(PLAN, server, overrides={"steps": 0})


def test_a_node_off_the_whitelist_is_refused(server: ServerInfo):
    workflow = build(PLAN, server).workflow
    workflow["20"] = {
        "class_type": "CheckpointSave",  # exists on the server, writes model files
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "vae": ["4", 2],
            "filename_prefix": "stolen",
        },
    }
    with pytest.raises(WorkflowValidationError, match="CheckpointSave is not on the studio's list"):
        check(workflow, server)


def test_a_path_in_a_filename_is_refused(server: ServerInfo):
    recorded = fixture("errors_runtime_execution_error.json")["request"]["prompt"]
    assert recorded["3"]["inputs"]["filename_prefix"] == "../../escape"
    issues = validate(recorded, server)
    assert [i.code for i in issues] == ["path_in_filename"]
    assert "must be a plain file name" in issues[0].message
    with pytest.raises(WorkflowValidationError, match="plain file name"):
        build(PLAN, server, filename_prefix="sub/dir")
    for bad in ("/etc/passwd", "..\\x", "C:evil", ".hidden"):
        assert "path_in_filename" in codes(
            {
                **recorded,
                "3": {**recorded["3"], "inputs": {"images": ["2", 0], "filename_prefix": bad}},
            },
            server,
        )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("errors_missing_checkpoint.json", {"value_not_in_list"}),
        ("errors_unknown_class_type.json", {"unknown_node"}),
        ("errors_missing_required_input.json", {"required_input_missing"}),
        ("errors_value_out_of_range.json", {"value_smaller_than_min"}),
        ("errors_bad_link.json", {"bad_link"}),
        ("errors_no_output_node.json", {"prompt_no_outputs"}),
    ],
)
def test_what_comfyui_refused_is_refused_before_queueing(
    name: str, expected: set[str], server: ServerInfo
):
    recorded = fixture(name)
    assert recorded["response"]["status"] == 400
    assert codes(recorded["request"]["prompt"], server) == expected


def test_what_comfyui_accepted_validates(server: ServerInfo):
    for workflow in (
        fixture("post_prompt_ok.json")["request"]["prompt"],
        fixture("ws_transcript_ksampler.json")["workflow"],
        fixture("interrupt.json")["request"]["prompt"],
    ):
        assert validate(workflow, server) == []


def test_wrong_link_types_and_values_are_refused(server: ServerInfo):
    workflow = build(PLAN, server).workflow
    broken = copy.deepcopy(workflow)
    broken["3"]["inputs"]["model"] = ["4", 1]  # CLIP into MODEL
    assert codes(broken, server) == {"return_type_mismatch"}
    broken = copy.deepcopy(workflow)
    broken["3"]["inputs"]["latent_image"] = ["5", 3]  # EmptyLatentImage has one output
    assert codes(broken, server) == {"bad_link"}
    broken = copy.deepcopy(workflow)
    broken["3"]["inputs"]["steps"] = 2.5
    assert codes(broken, server) == {"invalid_input_type"}


# ----------------------------------------------------------------------------- user workflows


def test_a_dropped_in_workflow_has_its_parameters_detected(server: ServerInfo):
    exported = fixture("ws_transcript_ksampler.json")["workflow"]
    params = detect_parameters(exported)
    assert params["positive_prompt"] == ["6.text"]
    assert params["negative_prompt"] == ["7.text"]
    assert params["seed"] == ["3.seed"] and params["sampler"] == ["3.sampler_name"]
    assert params["width"] == ["5.width"] and params["height"] == ["5.height"]
    assert params["checkpoint"] == ["4.ckpt_name"]
    templates = Catalog(dict(catalog().templates))
    spec = templates.add_user_workflow("my_tiny", json.dumps({"prompt": exported}))
    plan = PLAN.model_copy(update={"checkpoint": "tiny-sd15.safetensors", "seed": 99})
    built = build(plan, server, template="my_tiny", templates=templates)
    assert built.template == "my_tiny" and spec.user_supplied
    assert built.workflow["6"]["inputs"]["text"] == PLAN.positive_prompt
    assert built.workflow["3"]["inputs"]["seed"] == 99
    assert built.workflow["9"]["inputs"]["filename_prefix"] == "studio"


def test_prompts_are_told_apart_by_wording_when_no_sampler_links_them():
    workflow = {
        "1": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "worst quality, blurry, watermark"},
        },
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle at dawn"}},
    }
    params = detect_parameters(workflow)
    assert params == {"negative_prompt": ["1.text"], "positive_prompt": ["2.text"]}


def test_workflows_in_the_wrong_format_are_refused_clearly():
    with pytest.raises(InvalidInputError, match="UI format"):
        template_from_workflow("x", {"nodes": [], "links": []})
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        template_from_workflow("x", "{broken")
    with pytest.raises(InvalidInputError, match="prompt"):
        template_from_workflow("x", fixture("post_prompt_ok.json")["request"]["prompt"])
    with pytest.raises(InvalidInputError, match="built-in"):
        Catalog(dict(catalog().templates)).add_user_workflow(
            "txt2img", fixture("ws_transcript_ksampler.json")["workflow"]
        )

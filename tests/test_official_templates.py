"""ComfyUI's official templates: UI format to API format, and what a server can run.

Against the recorded object_info of a real ComfyUI 0.3.64 (tests/data/comfyui). The
templates come from the pinned PyPI packages, as the studio reads them at run time.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from creative_studio.workflows.official_library import OfficialLibrary, library, version_tuple
from creative_studio.workflows.server_info import ServerInfo
from creative_studio.workflows.ui_format import ui_to_api, widget_names
from creative_studio.workflows.ui_subgraphs import UIConversionError
from creative_studio.workflows.validation import validate
from tests.comfyui_double import object_info
from tests.ui_graphs import node, sd_graph, subgraph_graph

DATA = Path(__file__).parent / "data" / "official"
TEMPLATES = resources.files("comfyui_workflow_templates_json").joinpath("templates")
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
# Enum values newer than ComfyUI 0.3.64: these templates need a newer server even where
# their minComfyUIVersion says otherwise, and the check must say so.
NEEDS_NEWER_VALUES = {
    "image_newbieimage_exp0_1-t2i": "type 'newbie'",
    "image_kandinsky5_t2i": "type 'kandinsky5_image'",
    "image_ovis_text_to_image": "type 'ovis'",
    "image-qwen_image_edit_2511_lora_inflation": "reference_latents_method 'index_timestep_zero'",
}


@pytest.fixture(scope="module")
def server() -> ServerInfo:
    return ServerInfo(object_info())


def ui_template(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TEMPLATES.joinpath(f"{name}.json").read_text("utf-8"))
    return data


def local_templates_the_server_has_nodes_for(server: ServerInfo) -> list[str]:
    """Every non-API template of the package whose nodes (subgraphs included) all exist."""
    index = json.loads(TEMPLATES.joinpath("index.json").read_text("utf-8"))
    names = []
    for category in index:
        for entry in category["templates"]:
            if entry["name"].startswith("api_"):
                continue
            graph = ui_template(entry["name"])
            definitions = graph.get("definitions", {}).get("subgraphs", [])
            nodes = graph["nodes"] + [n for d in definitions for n in d["nodes"]]
            types = {n["type"] for n in nodes} - {d["id"] for d in definitions} - FRONTEND_ONLY
            if all(server.has(t) for t in types):
                names.append(entry["name"])
    return names


# ----------------------------------------------------------------------------- the package


def test_every_local_template_with_known_nodes_converts(server: ServerInfo):
    names = local_templates_the_server_has_nodes_for(server)
    assert len(names) == 80  # what the issue counted for ComfyUI 0.3.64
    for name in names:
        api = ui_to_api(ui_template(name), server)
        assert api, name
        for node_id, api_node in api.items():
            assert api_node["class_type"] not in FRONTEND_ONLY, (name, node_id)
            assert server.has(api_node["class_type"]), (name, node_id)
            for value in api_node["inputs"].values():
                if isinstance(value, list):  # every link points at a node that is there
                    assert value[0] in api and isinstance(value[1], int), (name, node_id)


def test_every_offered_template_passes_the_validator(server: ServerInfo):
    """Once its model files and input images are there, each template validates as is.

    Except the four that use a value a 0.3.64 server's nodes do not offer yet: the
    validator names that value, and the library reports the template as not runnable.
    """
    official = library()
    checked = 0
    for name, template in official.templates.items():
        if not all(server.has(t) for t in template.node_types):
            continue
        checked += 1
        availability = official.check(name, server)
        if name in NEEDS_NEWER_VALUES:
            assert not availability.runnable
            assert any(NEEDS_NEWER_VALUES[name] in p for p in availability.problems), name
        else:
            assert availability.problems == [], (name, availability.problems)
    # The 80 less the four 3D templates, the one that calls paid API nodes and the
    # node-editor lesson (masks, no model).
    assert checked == 74


@pytest.mark.parametrize(
    "name",
    ["flux_schnell", "image_z_image_turbo", "hidream_e1_full", "video_wan2_2_5B_ti2v"],
)
def test_conversion_matches_the_api_export_written_by_hand(name: str, server: ServerInfo):
    """Field by field. Long prompts are written "@widgets_values[0]@": the node's own text."""
    expected = json.loads((DATA / f"{name}.api.json").read_text("utf-8"))
    graph = ui_template(name)
    ui_nodes = {str(n["id"]): n for n in graph["nodes"]}
    for d in graph.get("definitions", {}).get("subgraphs", []):
        ui_nodes.update({str(n["id"]): n for n in d["nodes"]})
    api = ui_to_api(graph, server)
    assert sorted(api) == sorted(expected)
    for node_id, want in expected.items():
        inputs = {
            key: ui_nodes[node_id.split(":")[-1]]["widgets_values"][0]
            if value == "@widgets_values[0]@"
            else value
            for key, value in want["inputs"].items()
        }
        assert api[node_id]["class_type"] == want["class_type"], node_id
        assert api[node_id]["inputs"] == inputs, node_id
        if "_meta" in want:
            assert api[node_id]["_meta"] == want["_meta"], node_id


# ----------------------------------------------------------------------------- small graphs


def test_widget_values_map_to_names_skipping_the_seed_control(server: ServerInfo):
    api = ui_to_api(sd_graph(), server)
    assert sorted(api) == ["1", "2", "3", "4", "5", "6", "7"]  # the note is gone
    assert api["5"]["inputs"] == {
        "seed": 42,
        "steps": 20,
        "cfg": 7.5,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1,
        "model": ["1", 0],
        "positive": ["2", 0],
        "negative": ["3", 0],
        "latent_image": ["4", 0],
    }
    assert api["1"]["_meta"]["title"] == "Load Checkpoint"  # the server's display name
    assert validate(api, server) == []


def test_widget_order_follows_the_server_and_its_frontend_only_widgets():
    raw = {
        "input": {
            "required": {
                "image": [["a.png"], {"image_upload": True}],
                "seed": ["INT", {}],  # no flag: named seed, so the frontend adds a control
                "count": ["INT", {"control_after_generate": True}],
                "fixed_seed": ["INT", {"control_after_generate": False}],
                "text": ["STRING", {"forceInput": True}],  # a socket, never a widget
                "model": ["MODEL"],
            },
            "optional": {"mode": ["COMBO", {"options": ["a", "b"]}]},
        },
        "input_order": {
            "required": ["seed", "image", "count", "fixed_seed", "text", "model"],
            "optional": ["mode"],
        },
    }
    assert widget_names(raw) == [
        ("seed", 1),
        ("image", 1),
        ("count", 1),
        ("fixed_seed", 0),
        ("mode", 0),
    ]


def test_primitives_and_reroutes_are_resolved_into_their_targets(server: ServerInfo):
    graph = sd_graph()
    sampler = graph["nodes"][4]
    sampler["inputs"].append(
        {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 20}
    )
    sampler["inputs"][0]["link"] = 22  # model now comes through two reroutes
    graph["nodes"] += [
        node(9, "PrimitiveNode", [777, "fixed"], [], ["INT"]),
        node(10, "Reroute", None, [("", "*", 21)], ["MODEL"]),
        node(11, "Reroute", None, [("", "*", 23)], ["MODEL"]),
    ]
    graph["links"] = [link for link in graph["links"] if link[0] != 1] + [
        [20, 9, 0, 5, 4, "INT"],
        [21, 1, 0, 10, 0, "MODEL"],
        [23, 10, 0, 11, 0, "MODEL"],
        [22, 11, 0, 5, 0, "MODEL"],
    ]
    api = ui_to_api(graph, server)
    assert sorted(api) == ["1", "2", "3", "4", "5", "6", "7"]
    assert api["5"]["inputs"]["seed"] == 777
    assert api["5"]["inputs"]["model"] == ["1", 0]
    assert validate(api, server) == []


def test_bypassed_nodes_pass_their_inputs_through_and_muted_nodes_are_left_out(
    server: ServerInfo,
):
    graph = sd_graph()
    lora = node(
        9,
        "LoraLoader",
        ["missing.safetensors", 1.0, 1.0],
        [("model", "MODEL", 30), ("clip", "CLIP", 31)],
        ["MODEL", "CLIP"],
        mode=4,
    )
    load = node(10, "LoadImage", ["example.png", "image"], [], ["IMAGE", "MASK"], mode=4)
    encode = node(11, "VAEEncode", [], [("pixels", "IMAGE", 34), ("vae", "VAE", 35)], ["LATENT"])
    preview = node(12, "PreviewImage", [], [("images", "IMAGE", 36)], [], mode=2)
    graph["nodes"] += [lora, load, encode, preview]
    graph["nodes"][0]["outputs"] = []
    graph["nodes"][4]["inputs"][0]["link"] = 32  # KSampler.model <- LoRA (bypassed)
    graph["nodes"][1]["inputs"][0]["link"] = 33  # positive prompt clip <- LoRA slot 1
    graph["links"] += [
        [30, 1, 0, 9, 0, "MODEL"],
        [31, 1, 1, 9, 1, "CLIP"],
        [32, 9, 0, 5, 0, "MODEL"],
        [33, 9, 1, 2, 0, "CLIP"],
        [34, 10, 0, 11, 0, "IMAGE"],
        [35, 1, 2, 11, 1, "VAE"],
        [36, 6, 0, 12, 0, "IMAGE"],
    ]
    api = ui_to_api(graph, server)
    assert "9" not in api and "10" not in api and "12" not in api
    assert api["5"]["inputs"]["model"] == ["1", 0]
    assert api["2"]["inputs"]["clip"] == ["1", 1]  # the same slot's input, matching type
    assert api["11"]["inputs"] == {"vae": ["1", 2]}  # a bypassed loader has nothing to pass


def test_nested_subgraphs_are_expanded_with_their_promoted_values(server: ServerInfo):
    api = ui_to_api(subgraph_graph(promoted=["the promoted text", 999]), server)
    assert sorted(api) == ["1", "20:1", "20:2:1", "3", "5", "6", "7"]
    assert api["20:1"]["inputs"] == {"text": "the promoted text", "clip": ["1", 1]}
    # The primitive feeding the instance wins over the instance's own saved value.
    assert api["20:2:1"]["inputs"] == {"width": 640, "height": 768, "batch_size": 1}
    assert api["5"]["inputs"]["positive"] == ["20:1", 0]
    assert api["5"]["inputs"]["latent_image"] == ["20:2:1", 0]
    assert validate(api, server) == []


def test_a_subgraph_without_saved_values_keeps_its_inner_widgets(server: ServerInfo):
    """The newer frontend (``proxyWidgets``) saves nothing on the instance."""
    api = ui_to_api(subgraph_graph(promoted=None), server)
    assert api["20:1"]["inputs"]["text"] == "the inner text"


def test_a_bypassed_subgraph_instance_passes_through_and_hides_its_nodes(server: ServerInfo):
    graph = subgraph_graph(promoted=None)
    graph["nodes"][-2]["mode"] = 4
    api = ui_to_api(graph, server)
    assert not any(node_id.startswith("20:") for node_id in api)
    assert "positive" not in api["5"]["inputs"]  # no CONDITIONING input to pass through


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda g: g["links"].__setitem__(0, [1, 99, 0, 5, 0, "MODEL"]), "node 99"),
        (lambda g: g["nodes"][4]["inputs"][0].__setitem__("link", 404), "link 404"),
        (lambda g: g.setdefault("extra", {}).__setitem__("groupNodes", {"x": {}}), "group nodes"),
        (lambda g: g["nodes"].append({"id": 30}), "no id or type"),
    ],
)
def test_a_broken_graph_is_refused_with_where(change: Any, expected: str, server: ServerInfo):
    graph = sd_graph()
    change(graph)
    with pytest.raises(UIConversionError, match=expected):
        ui_to_api(graph, server)


def test_a_subgraph_that_contains_itself_is_refused(server: ServerInfo):
    graph = subgraph_graph(promoted=None)
    sub_b = graph["definitions"]["subgraphs"][1]
    sub_b["nodes"].append({"id": 5, "type": "sub-b", "mode": 0, "inputs": []})
    with pytest.raises(UIConversionError, match="nested too deep"):
        ui_to_api(graph, server)


# ----------------------------------------------------------------------------- the library


def flux_server(server: ServerInfo) -> ServerInfo:
    """A server whose model folders hold only a Flux dev UNET with its encoders and VAE."""
    encoders = ["clip_l.safetensors", "t5xxl_fp16.safetensors"]
    return ServerInfo(copy.deepcopy(server.raw)).with_options(
        {
            "UNETLoader.unet_name": ["flux1-dev.safetensors"],
            "DualCLIPLoader.clip_name1": encoders,
            "DualCLIPLoader.clip_name2": encoders,
            "CLIPLoader.clip_name": encoders,
            "VAELoader.vae_name": ["ae.safetensors"],
        }
    )


def test_paid_api_and_non_image_templates_are_left_out():
    official = library()
    assert official.version == "0.1.123"
    assert not any(name.startswith("api_") for name in official.templates)
    assert "templates-photo_to_product_vid" not in official.templates  # API-node bundle
    assert "3d_hunyuan3d-v2.1" not in official.templates
    assert "basic_mask_operations_and_compositing" not in official.templates
    assert {t.kind for t in official.templates.values()} == {"image", "edit", "video", "upscale"}
    schnell = official.get("flux_schnell")
    assert (schnell.family, schnell.kind, schnell.min_version) == ("flux", "image", "0.0.4")


def test_a_flux_only_server_runs_the_flux_templates_and_is_told_what_else_needs(
    server: ServerInfo,
):
    official = library()
    flux = flux_server(server)
    runnable = [
        t.name
        for t, a in official.available(flux, kind="image", comfyui_version="0.3.64")
        if a.runnable
    ]
    assert "flux_dev_full_text_to_image" in runnable
    assert all(official.get(name).family == "flux" for name in runnable)
    krea = official.check("flux1_krea_dev", flux, comfyui_version="0.3.64")
    assert krea.missing_models == {"diffusion_models": ["flux1-krea-dev_fp8_scaled.safetensors"]}
    assert "flux1-krea-dev_fp8_scaled.safetensors in ComfyUI/models/diffusion_models" in (
        krea.describe()
    )
    # The same answer from the server's model lists (GET /models/{folder}).
    listed = official.check(
        "flux1_krea_dev",
        server,
        installed={"diffusion_models": [], "text_encoders": ["clip_l.safetensors"]},
    )
    assert listed.missing_models["diffusion_models"] == ["flux1-krea-dev_fp8_scaled.safetensors"]
    assert listed.missing_models["text_encoders"] == ["t5xxl_fp16.safetensors"]


def test_a_server_older_than_the_template_is_told_the_version(server: ServerInfo):
    official = library()
    turbo = official.check("image_z_image_turbo", server, comfyui_version="0.3.64")
    assert turbo.needs_version == "0.11.0" and not turbo.runnable
    assert turbo.describe().startswith("ComfyUI 0.11.0 or newer")
    assert version_tuple("0.3.64") < version_tuple("0.11.0") and version_tuple("x") == ()


def test_missing_node_types_are_named(server: ServerInfo):
    official = library()
    name = next(n for n, t in official.templates.items() if "EmptyFlux2LatentImage" in t.node_types)
    availability = official.check(name, server)
    assert "EmptyFlux2LatentImage" in availability.missing_nodes and not availability.runnable


def test_the_library_spec_exposes_the_prompt_and_sampler_parameters(server: ServerInfo):
    spec = library().spec("flux_dev_full_text_to_image", flux_server(server))
    assert spec.name == "official:flux_dev_full_text_to_image" and spec.kind == "image"
    assert {"positive_prompt", "seed", "width", "height", "filename_prefix"} <= set(spec.parameters)
    node_id, input_name = spec.parameters["positive_prompt"][0].split(".")
    assert isinstance(spec.workflow[node_id]["inputs"][input_name], str)


def test_reading_the_package_again_gives_the_same_library():
    again = OfficialLibrary.load()
    assert sorted(again.templates) == sorted(library().templates)

"""A workflow a person exported from ComfyUI becomes a template: its parameters detected.

Follows the sampler's links back to the text encoders, latent size and seed inputs, so
detection does not depend on node titles.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from creative_studio.core.errors import InvalidInputError
from creative_studio.workflows.server_info import Workflow, is_link, rules
from creative_studio.workflows.spec import TemplateSpec, check_spec, node_order


def _as_api_workflow(workflow: Any) -> Workflow:
    """Accept API format (``{id: {class_type, inputs}}``), optionally wrapped in {"prompt": ...}."""
    if isinstance(workflow, str):
        try:
            workflow = json.loads(workflow)
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"The workflow is not valid JSON: {error}.") from None
    if isinstance(workflow, dict) and isinstance(workflow.get("prompt"), dict):
        workflow = workflow["prompt"]
    if isinstance(workflow, dict) and "nodes" in workflow and "links" in workflow:
        raise InvalidInputError(
            "This is ComfyUI's UI format. Export it with 'Save (API)' (or Workflow > "
            "Export (API)) and drop that file instead."
        )
    if not isinstance(workflow, dict) or not workflow:
        raise InvalidInputError("A workflow is a JSON object of nodes in ComfyUI's API format.")
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or "class_type" not in node:
            raise InvalidInputError(
                f"Node {node_id!r} has no class_type: is this ComfyUI's API format?"
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise InvalidInputError(f"Node {node_id!r}: inputs must be an object.")
    return copy.deepcopy(workflow)


def _link_source(workflow: Workflow, value: Any) -> dict[str, Any] | None:
    return workflow.get(value[0]) if is_link(value) else None


def detect_parameters(workflow: Workflow) -> dict[str, list[str]]:
    """Find a workflow's prompt, sampler, size, seed (and model) inputs.

    Follows the sampler's (or its guider's) ``positive`` / ``negative`` links back to the
    text encoders, so the result does not depend on node titles; falls back to wording
    ("blurry, low quality" is a negative prompt) when the links do not tell. The node
    vocabulary is rules.toml [detect]: it covers our templates, people's exports and
    ComfyUI's official templates (Flux, SD3.5, Chroma, Qwen-Image, HiDream, Wan).
    """
    detect = rules()["detect"]
    sampler_nodes = set(rules()["progress"]["sampler_nodes"])
    params: dict[str, list[str]] = {}

    def add(name: str, target: str) -> None:
        targets = params.setdefault(name, [])
        if target not in targets:
            targets.append(target)

    prompt_nodes = set(detect["prompt_nodes"])
    prompt_inputs: dict[str, list[str]] = detect.get("prompt_inputs", {})
    blockers = set(detect.get("prompt_blockers", []))
    guiders = set(detect.get("guider_nodes", []))
    split: dict[str, dict[str, str]] = detect.get("split_sampling", {})

    def text_encoder(value: Any, depth: int = 0) -> str | None:
        """Walk conditioning links back to the text encoder that feeds them."""
        if not is_link(value) or depth > 6:
            return None
        node = workflow.get(value[0])
        if node is None or node.get("class_type") in blockers:
            return None
        if node.get("class_type") in prompt_nodes:
            return value[0]
        for key in ("conditioning", "positive", "negative", "conditioning_to", "conditioning_1"):
            found = text_encoder(node.get("inputs", {}).get(key), depth + 1)
            if found:
                return found
        return None

    def prompt_of(inputs: dict[str, Any], links: tuple[tuple[str, str], ...]) -> None:
        for key, param in links:
            encoder = text_encoder(inputs.get(key))
            if encoder is None:
                continue
            encoder_node = workflow[encoder]
            encoder_inputs = encoder_node.get("inputs", {})
            for name in prompt_inputs.get(encoder_node["class_type"], ["text"]):
                if isinstance(encoder_inputs.get(name), str):
                    add(param, f"{encoder}.{name}")

    for node_id in sorted(workflow, key=node_order):
        node = workflow[node_id]
        class_type = node.get("class_type")
        inputs = node.get("inputs", {})
        if class_type in sampler_nodes:
            for key, param in (
                ("seed", "seed"),
                ("noise_seed", "seed"),
                ("steps", "steps"),
                ("cfg", "cfg"),
                ("sampler_name", "sampler"),
                ("scheduler", "scheduler"),
                ("denoise", "denoise"),
            ):
                if key in inputs and not is_link(inputs[key]):
                    add(param, f"{node_id}.{key}")
            prompt_of(inputs, (("positive", "positive_prompt"), ("negative", "negative_prompt")))
        if class_type in guiders:
            prompt_of(
                inputs,
                (
                    ("positive", "positive_prompt"),
                    ("conditioning", "positive_prompt"),
                    ("cond1", "positive_prompt"),
                    ("negative", "negative_prompt"),
                ),
            )
        for key, param in split.get(str(class_type), {}).items():
            if key in inputs and not is_link(inputs[key]):
                add(param, f"{node_id}.{key}")
        if class_type in sampler_nodes or class_type in guiders or class_type in split:
            continue
        if class_type == "RandomNoise" and "noise_seed" in inputs:
            add("seed", f"{node_id}.noise_seed")
        elif class_type in detect["size_nodes"]:
            for key in ("width", "height", "batch_size"):
                if key in inputs and not is_link(inputs[key]):
                    add(key, f"{node_id}.{key}")
            if "length" in inputs and not is_link(inputs["length"]):
                add("frames", f"{node_id}.length")
        elif class_type == "CheckpointLoaderSimple":
            add("checkpoint", f"{node_id}.ckpt_name")
        elif class_type in ("SaveImage", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveWEBM"):
            add("filename_prefix", f"{node_id}.filename_prefix")
            if "fps" in inputs:
                add("fps", f"{node_id}.fps")
        elif class_type == "SaveVideo":
            add("filename_prefix", f"{node_id}.filename_prefix")
        elif class_type in detect.get("fps_nodes", []) and "fps" in inputs:
            add("fps", f"{node_id}.fps")
        elif class_type == "LoadImage":
            add("init_image", f"{node_id}.image")

    # One encoder feeding both sides is the positive prompt (never overwrite it).
    positive = set(params.get("positive_prompt", []))
    negative = [t for t in params.get("negative_prompt", []) if t not in positive]
    if negative:
        params["negative_prompt"] = negative
    else:
        params.pop("negative_prompt", None)

    if "positive_prompt" not in params:
        # No sampler links to follow: tell positive from negative by their words.
        negatives = [w.lower() for w in detect["negative_words"]]
        for node_id in sorted(workflow, key=node_order):
            node = workflow[node_id]
            text = node.get("inputs", {}).get("text")
            if node.get("class_type") not in prompt_nodes or not isinstance(text, str):
                continue
            lowered = text.lower()
            is_negative = (
                sum(w in lowered for w in negatives) >= 2
                or "negative" in str(node.get("_meta", {}).get("title", "")).lower()
            )
            add("negative_prompt" if is_negative else "positive_prompt", f"{node_id}.text")
    return params


def template_from_workflow(name: str, workflow: Any) -> TemplateSpec:
    """A person's exported workflow as a template, with its parameters detected."""
    api = _as_api_workflow(workflow)
    params = detect_parameters(api)
    if "positive_prompt" not in params:
        raise InvalidInputError(
            "Could not find the prompt in this workflow: it needs a CLIPTextEncode "
            "(or similar) node feeding a sampler."
        )
    is_video = any(
        node.get("class_type") in ("SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveWEBM", "SaveVideo")
        for node in api.values()
    )
    lora: dict[str, str] = {}
    for node_id, node in api.items():
        if node.get("class_type") == "CheckpointLoaderSimple":
            lora = {"model": f"{node_id}.0", "clip": f"{node_id}.1"}
            break
    spec = TemplateSpec(
        name=name,
        title=f"Your workflow {name}",
        kind="video" if is_video else "image",
        workflow=api,
        parameters=params,
        lora=lora,
        needs_init_image=False,  # a LoadImage keeps its own image unless one is given
        user_supplied=True,
    )
    check_spec(spec)
    return spec

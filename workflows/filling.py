"""Filling a template from a plan: which values go where, and LoRAs chained in.

The builder (workflows/builder.py) decides which template runs and what the plan may
change; this module only writes values into a fresh copy of the template: the plan's
fields through rules.toml [plan], snapped onto the server's input grid, an uploaded
workflow's own values kept where the plan does not choose on purpose, and LoraLoader
nodes inserted between the model loader and its consumers.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from creative_studio.workflows.catalog import (
    ServerInfo,
    TemplateSpec,
    Workflow,
    is_link,
    rules,
    split_target,
)
from creative_studio.workflows.plan import LoRA, TechnicalPlan

__all__ = [
    "ALWAYS_FROM_PLAN",
    "explicit_parameters",
    "insert_loras",
    "model_class",
    "own_values",
    "plan_values",
    "set_input",
    "snap_to_step",
]

# What an uploaded workflow always takes from the plan: what the discussion decided (the
# prompts and the seed), where the file goes, and a starting image when one is given.
ALWAYS_FROM_PLAN = frozenset(
    {"positive_prompt", "negative_prompt", "seed", "filename_prefix", "init_image"}
)


def _field_parameters() -> dict[str, str]:
    """Plan field -> template parameter (rules.toml [plan], video settings included)."""
    mapping = rules()["plan"]
    found = {name: param for name, param in mapping.items() if isinstance(param, str)}
    return found | {f"video.{name}": param for name, param in mapping["video"].items()}


def explicit_parameters(plan: TechnicalPlan) -> set[str]:
    """The parameters a plan object sets on purpose (pydantic's ``model_fields_set``).

    A plan read back from JSON has every field set; callers that know better (the graph
    node knows what the person asked for) pass ``explicit`` to build() instead.
    """
    fields = _field_parameters()
    chosen = {fields[name] for name in plan.model_fields_set if name in fields}
    if "video" in plan.model_fields_set and plan.video is not None:
        video = plan.video.model_fields_set
        chosen |= {fields[f"video.{name}"] for name in video if f"video.{name}" in fields}
    return chosen


def own_values(plan: TechnicalPlan, spec: TemplateSpec, kept: set[str]) -> TechnicalPlan:
    """The plan as it really runs: an uploaded or official workflow's own values where it
    kept them (steps, CFG, size, and a video's frames and frame rate), so what the person
    is shown is what ComfyUI makes."""
    fields = {param: name for name, param in _field_parameters().items()}
    update: dict[str, Any] = {}
    video: dict[str, Any] = {}
    for param in kept:
        targets = spec.parameters.get(param) or []
        if param not in fields or not targets:
            continue
        node_id, input_name = split_target(targets[0])
        value = spec.workflow[node_id]["inputs"].get(input_name)
        if value is None or is_link(value):
            continue
        name = fields[param]
        if name.startswith("video."):
            video[name.removeprefix("video.")] = value
        else:
            update[name] = value
    if video and plan.video is not None:
        update["video"] = {**plan.video.model_dump(), **video}
    if not update:
        return plan
    try:
        return TechnicalPlan.model_validate({**plan.model_dump(), **update})
    except ValidationError:  # a value the plan cannot describe: the workflow still runs it
        return plan


def plan_values(plan: TechnicalPlan, spec: TemplateSpec) -> dict[str, Any]:
    mapping = rules()["plan"]
    values: dict[str, Any] = {}
    for field_name, param in mapping.items():
        if isinstance(param, str):
            values[param] = getattr(plan, field_name)
    if not values.get("negative_prompt"):
        values["negative_prompt"] = mapping["defaults"]["negative_prompt"]
    if spec.needs_init_image and "denoise" in spec.parameters and plan.denoise >= 1.0:
        values["denoise"] = float(mapping["defaults"]["img2img_denoise"])
    if plan.video is not None:
        video = mapping["video"]
        values[video["frames"]] = plan.video.frames
        values[video["fps"]] = float(plan.video.fps)
        values[video["motion_strength"]] = plan.video.motion_strength
        if plan.video.motion and spec.kind == "video":
            values["positive_prompt"] = video["motion_prompt"].format(
                prompt=plan.positive_prompt, motion=plan.video.motion
            )
    return values


def snap_to_step(server: ServerInfo, class_type: str, input_name: str, value: Any) -> Any:
    """Round whole numbers onto the input's grid (latent sizes step 8/16/32, Wan frames 4n+1).

    Out-of-range values are left alone on purpose: validation refuses them with a reason.
    """
    node = server.node(class_type)
    spec = node.inputs.get(input_name) if node else None
    if spec is None or spec.type != "INT" or isinstance(value, bool):
        return value
    if not isinstance(value, int | float):
        return value
    step = int(spec.step or 1)
    if step <= 1:
        return int(value)
    base = int(spec.min or 0)
    snapped = base + round((value - base) / step) * step
    if spec.max is not None and snapped > spec.max >= value:
        snapped -= step
    return snapped if value >= base else int(value)


def set_input(workflow: Workflow, target: str, value: Any) -> None:
    node_id, input_name = split_target(target)
    workflow[node_id]["inputs"][input_name] = value


def _next_id(workflow: Workflow) -> int:
    numeric = [int(k) for k in workflow if k.isdigit()]
    return max(numeric, default=0) + 1


def insert_loras(workflow: Workflow, spec: TemplateSpec, loras: list[LoRA]) -> None:
    """Chain LoraLoader nodes between the model loader and everything that used it."""
    if not loras or "model" not in spec.lora:
        return
    model_id, model_out = spec.lora["model"].split(".")
    clip = spec.lora.get("clip")
    clip_id, clip_out = clip.split(".") if clip else ("", "0")
    model_src: list[Any] = [model_id, int(model_out)]
    clip_src: list[Any] | None = [clip_id, int(clip_out)] if clip else None
    consumers: list[tuple[str, str, str]] = []  # (node, input, "model" | "clip")
    for node_id, node in workflow.items():
        for name, value in node.get("inputs", {}).items():
            if is_link(value) and value == model_src:
                consumers.append((node_id, name, "model"))
            elif clip_src is not None and is_link(value) and value == clip_src:
                consumers.append((node_id, name, "clip"))
    next_id = _next_id(workflow)
    last_model, last_clip = model_src, clip_src
    for lora in loras:
        node_id = str(next_id)
        next_id += 1
        if last_clip is not None:
            workflow[node_id] = {
                "class_type": "LoraLoader",
                "inputs": {
                    "model": last_model,
                    "clip": last_clip,
                    "lora_name": lora.name,
                    "strength_model": lora.strength,
                    "strength_clip": lora.strength,
                },
                "_meta": {"title": f"LoRA {lora.name}"},
            }
            last_clip = [node_id, 1]
        else:
            workflow[node_id] = {
                "class_type": "LoraLoaderModelOnly",
                "inputs": {
                    "model": last_model,
                    "lora_name": lora.name,
                    "strength_model": lora.strength,
                },
                "_meta": {"title": f"LoRA {lora.name}"},
            }
        last_model = [node_id, 0]
    for node_id, name, kind in consumers:
        workflow[node_id]["inputs"][name] = list(last_model if kind == "model" else last_clip)  # type: ignore[arg-type]


def model_class(spec: TemplateSpec, param: str) -> tuple[str, str] | None:
    targets = spec.parameters.get(param) or []
    if not targets:
        return None
    node_id, input_name = split_target(targets[0])
    return spec.workflow[node_id]["class_type"], input_name

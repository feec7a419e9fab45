"""The Technical Director's plan -> a filled, validated ComfyUI workflow.

The builder never guesses silently: every change it makes to the plan so that the
connected server can run it (another template, an installed checkpoint instead of a
missing one, a dropped LoRA, a smaller size after running out of memory) is written into
``notes`` for the person, and the result is validated against the server's
``/object_info`` before anyone may queue it.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from creative_studio.core.errors import InvalidInputError
from creative_studio.workflows.catalog import (
    Availability,
    Catalog,
    ServerInfo,
    TemplateSpec,
    Workflow,
    catalog,
    is_link,
    rules,
    split_target,
)
from creative_studio.workflows.plan import LoRA, TechnicalPlan
from creative_studio.workflows.template_choice import choose_template, template_kind
from creative_studio.workflows.validation import check

__all__ = [
    "ALWAYS_FROM_PLAN",
    "BuiltWorkflow",
    "build",
    "checkpoint_family",
    "explicit_parameters",
    "reduce_for_memory",
    "switch_checkpoint",
]


@dataclass
class BuiltWorkflow:
    """A workflow ready to queue, and how it came to be."""

    workflow: Workflow
    template: str  # the template actually used
    requested_template: str  # what the plan asked for
    kind: str  # image | video
    plan: TechnicalPlan  # the plan as built (after any adjustment)
    parameters: dict[str, Any]  # parameter -> value filled in
    notes: list[str] = field(default_factory=list)  # what changed and why, for the person
    unavailable: list[Availability] = field(default_factory=list)  # templates skipped

    def keeps_models_of(self, plan: TechnicalPlan) -> bool:
        """Built with the checkpoint, LoRAs and template ``plan`` names, none swapped for
        what the server has (a pool of servers prefers one where this holds)."""
        return (
            self.plan.checkpoint == plan.checkpoint
            and [lora.name for lora in self.plan.loras] == [lora.name for lora in plan.loras]
            and not self.unavailable
        )


# --------------------------------------------------------------------------- model choices


def checkpoint_family(name: str) -> str | None:
    """sdxl / sd15 / flux ... from the file name, or None when it does not say."""
    lowered = name.lower()
    for family, rule in rules()["families"].items():
        if any(word in lowered for word in rule["words"]):
            return str(family)
    return None


def _family_pixels(family: str | None) -> int | None:
    if family is None:
        return None
    return int(rules()["families"][family]["pixels"])


def _snap(value: float, multiple: int = 64, minimum: int = 64) -> int:
    return max(minimum, round(value / multiple) * multiple)


def _rescale(plan: TechnicalPlan, pixels: int) -> tuple[int, int]:
    """Width and height with the same aspect ratio and about ``pixels`` area."""
    ratio = plan.width / plan.height
    height = math.sqrt(pixels / ratio)
    return _snap(height * ratio), _snap(height)


def switch_checkpoint(
    plan: TechnicalPlan, installed: list[str], family: str | None = None, *, rescale: bool = True
) -> tuple[TechnicalPlan, str | None]:
    """An installed checkpoint for a plan whose checkpoint the server lacks.

    Prefers the plan's own family (an SDXL plan stays SDXL), or ``family`` when the
    template needs one; when the family changes the size follows the new family's area.
    Returns the plan unchanged and no note when nothing needs to change.
    """
    wanted = family or checkpoint_family(plan.checkpoint)
    current_ok = plan.checkpoint in installed and (
        family is None or checkpoint_family(plan.checkpoint) in (family, None)
    )
    if current_ok or not installed:
        return plan, None
    same = [name for name in installed if checkpoint_family(name) == wanted]
    choice = (same or installed)[0]
    update: dict[str, Any] = {"checkpoint": choice}
    old_family, new_family = checkpoint_family(plan.checkpoint), checkpoint_family(choice)
    if plan.checkpoint in installed:
        note = f"{plan.checkpoint} does not suit this template; Pixel switched to {choice}."
    else:
        note = f"Checkpoint {plan.checkpoint} is not installed on the server; Pixel switched to {choice}."
    pixels = _family_pixels(new_family)
    if rescale and pixels and new_family != old_family and plan.width * plan.height > pixels * 1.2:
        width, height = _rescale(plan, pixels)
        update.update(width=width, height=height)
        note += f" Size adjusted to {width}x{height}, what that model was trained for."
    return plan.model_copy(update=update), note


def reduce_for_memory(plan: TechnicalPlan, kind: str = "image") -> tuple[TechnicalPlan, str] | None:
    """The next smaller plan after ComfyUI ran out of memory, or None at the floor.

    Batch first (the person still gets the picture they asked for), then for a video the
    frame count, then the resolution, keeping the aspect ratio.
    """
    recovery = rules()["recovery"]
    if plan.batch_size > 1:
        batch = max(1, plan.batch_size // 2)
        return plan.model_copy(update={"batch_size": batch}), f"batch {batch}"
    if kind == "video" and plan.video is not None:
        minimum = int(recovery["oom_min_frames"])
        if plan.video.frames > minimum:
            frames = max(minimum, int(plan.video.frames * 0.75))
            video = plan.video.model_copy(update={"frames": frames})
            return plan.model_copy(update={"video": video}), f"{frames} frames"
    scale = float(recovery["oom_scale"])
    min_side = int(recovery["oom_min_side"])
    if min(plan.width, plan.height) * scale < min_side:
        return None
    width, height = _snap(plan.width * scale), _snap(plan.height * scale)
    if (width, height) == (plan.width, plan.height):
        return None
    return plan.model_copy(update={"width": width, "height": height}), f"{width}x{height}"


# --------------------------------------------------------------------------- filling

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


def _own_values(plan: TechnicalPlan, spec: TemplateSpec, kept: set[str]) -> TechnicalPlan:
    """The plan as it really runs: an uploaded workflow's own values where it kept them."""
    fields = {param: name for name, param in _field_parameters().items() if "." not in name}
    update: dict[str, Any] = {}
    for param in kept:
        targets = spec.parameters.get(param) or []
        if param in fields and targets:
            node_id, input_name = split_target(targets[0])
            value = spec.workflow[node_id]["inputs"].get(input_name)
            if value is not None and not is_link(value):
                update[fields[param]] = value
    if not update:
        return plan
    try:
        return TechnicalPlan.model_validate({**plan.model_dump(), **update})
    except ValidationError:  # a value the plan cannot describe: the workflow still runs it
        return plan


def _plan_values(plan: TechnicalPlan, spec: TemplateSpec) -> dict[str, Any]:
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


def _snap_to_step(server: ServerInfo, class_type: str, input_name: str, value: Any) -> Any:
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


def _set(workflow: Workflow, target: str, value: Any) -> None:
    node_id, input_name = split_target(target)
    workflow[node_id]["inputs"][input_name] = value


def _next_id(workflow: Workflow) -> int:
    numeric = [int(k) for k in workflow if k.isdigit()]
    return max(numeric, default=0) + 1


def _insert_loras(workflow: Workflow, spec: TemplateSpec, loras: list[LoRA]) -> None:
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


def _model_class(spec: TemplateSpec, param: str) -> tuple[str, str] | None:
    targets = spec.parameters.get(param) or []
    if not targets:
        return None
    node_id, input_name = split_target(targets[0])
    return spec.workflow[node_id]["class_type"], input_name


def build(
    plan: TechnicalPlan,
    server: ServerInfo,
    *,
    template: str | None = None,
    init_image: str | None = None,
    filename_prefix: str = "studio",
    overrides: dict[str, Any] | None = None,
    templates: Catalog | None = None,
    allow_fallback: bool = True,
    explicit: Collection[str] | None = None,
) -> BuiltWorkflow:
    """Fill the plan's template for ``server`` and validate it; raises with reasons if refused.

    ``init_image`` is the name of an image already uploaded to the server (img2img,
    upscale). ``overrides`` sets template parameters directly (a person's own values).
    A built-in template takes every value from the plan. A workflow a person uploaded
    keeps its own values (denoise, steps, CFG, sampler, size, checkpoint...) except the
    prompts, the seed and what ``explicit`` names (default: the fields the plan object
    sets, ``explicit_parameters``); notes then tell only what really changed.
    """
    templates = templates or catalog()
    # What the server can run: ours, or ComfyUI's official template for its models.
    choice = choose_template(
        plan,
        server,
        templates,
        requested=template or plan.template,
        init_image=init_image,
        explicit=explicit if explicit is not None else explicit_parameters(plan),
        allow_fallback=allow_fallback,
    )
    templates, requested, plan, notes = choice.templates, choice.template, choice.plan, choice.notes
    if choice.fills:
        explicit = {
            *(explicit if explicit is not None else explicit_parameters(plan)),
            *choice.fills,
        }
    first = templates.get(requested)
    if first.needs_init_image and not init_image:
        if "txt2img" in first.fallbacks:
            notes.append(
                f"{first.title} needs a starting image and none was given; Pixel is making it from the prompt instead."
            )
            requested = "txt2img"
        else:
            raise InvalidInputError(f"{first.title} needs an image: upload one first.")
    if init_image and init_image not in server.options("LoadImage", "image"):
        server = server.with_options({"LoadImage.image": [init_image]})
    unavailable: list[Availability] = []
    if allow_fallback:
        spec, unavailable = templates.choose(requested, server)
    else:
        spec = templates.get(requested)
    for skipped in unavailable:
        title = templates.get(skipped.template).title
        notes.append(f"The ComfyUI server cannot run {title}: it lacks {skipped.describe()}.")
    if unavailable:
        instead = spec.title
        if templates.get(plan.template).kind == "video" and spec.kind != "video":
            instead += " - a still key frame instead of a video"
        notes.append(f"Using {instead}.")

    # An uploaded workflow: which parameters the plan fills (None: a built-in, all of them).
    chosen: set[str] | None = None
    if spec.user_supplied:
        chosen = set(ALWAYS_FROM_PLAN) | set(
            explicit if explicit is not None else explicit_parameters(plan)
        )

    def fills(param: str) -> bool:
        return param in spec.parameters and (chosen is None or param in chosen)

    # Make the plan fit what the server has (each change is a note).
    if fills("checkpoint"):
        located = _model_class(spec, "checkpoint")
        installed = [str(o) for o in server.options(*located)] if located else []
        # An upscale's size is the target, not the model's working size: keep it. An
        # img2img works at the model's size like a text-to-image (an SDXL-sized plan on an
        # SD 1.5 checkpoint repeats the subject and is ~3x slower). A workflow whose size
        # is not the plan's (none, or its own) is not resized either.
        plan, note = switch_checkpoint(
            plan,
            installed,
            spec.checkpoint_family,
            rescale=template_kind(spec.name) != "upscale" and fills("width") and fills("height"),
        )
        if note:
            notes.append(note)
    if plan.loras:
        installed_loras = set(server.models("loras"))
        kept = [lora for lora in plan.loras if lora.name in installed_loras]
        for lora in plan.loras:
            if lora.name not in installed_loras:
                notes.append(f"LoRA {lora.name} is not installed on the server; Pixel dropped it.")
        if len(kept) != len(plan.loras):
            plan = plan.model_copy(update={"loras": kept})

    workflow = spec.fresh()
    values = _plan_values(plan, spec)
    if chosen is not None:
        values = {k: v for k, v in values.items() if k in chosen}
        if not plan.negative_prompt:  # no negative of the plan's own: keep the workflow's
            values.pop("negative_prompt", None)
        plan = _own_values(plan, spec, set(spec.parameters) - set(values))
    values["filename_prefix"] = filename_prefix
    if init_image:
        values["init_image"] = init_image
    values.update(overrides or {})
    filled: dict[str, Any] = {}
    for param, targets in spec.parameters.items():
        if param not in values or values[param] is None:
            continue
        for target in targets:
            node_id, input_name = split_target(target)
            class_type = workflow[node_id]["class_type"]
            value = _snap_to_step(server, class_type, input_name, values[param])
            _set(workflow, target, value)
            filled[param] = value
    if not spec.fixed_sampling:
        _insert_loras(workflow, spec, plan.loras)
    availability = templates.availability(spec, server)
    for target, substitute in availability.substitutes.items():
        node_id, input_name = split_target(target)
        old = workflow[node_id]["inputs"][input_name]
        workflow[node_id]["inputs"][input_name] = substitute
        notes.append(f"{old} is not installed on the server; using {substitute} instead.")
    check(workflow, server)
    return BuiltWorkflow(
        workflow=workflow,
        template=spec.name,
        requested_template=plan.template if template is None else template,
        kind=spec.kind,
        plan=plan,
        parameters=filled,
        notes=notes,
        unavailable=unavailable,
    )

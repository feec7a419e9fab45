"""The Technical Director's plan -> a filled, validated ComfyUI workflow.

The builder never guesses silently: every change it makes to the plan so that the
connected server can run it (another template, an installed checkpoint instead of a
missing one, a dropped LoRA, a smaller size after running out of memory) is written into
``notes`` for the person, and the result is validated against the server's
``/object_info`` before anyone may queue it.

This module decides what runs and records why; the plan changes themselves are
workflows/plan_fit.py and writing the values into the template is workflows/filling.py
(both re-exported here for the modules that import them from the builder).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from creative_studio.core.errors import InvalidInputError
from creative_studio.workflows.catalog import (
    Availability,
    Catalog,
    ServerInfo,
    Workflow,
    catalog,
    split_target,
)
from creative_studio.workflows.filling import (
    ALWAYS_FROM_PLAN,
    explicit_parameters,
    insert_loras,
    model_class,
    own_values,
    plan_values,
    set_input,
    snap_to_step,
)
from creative_studio.workflows.plan import TechnicalPlan
from creative_studio.workflows.plan_fit import (
    checkpoint_family,
    reduce_for_memory,
    switch_checkpoint,
)
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
        located = model_class(spec, "checkpoint")
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
    values = plan_values(plan, spec)
    if chosen is not None:
        values = {k: v for k, v in values.items() if k in chosen}
        if not plan.negative_prompt:  # no negative of the plan's own: keep the workflow's
            values.pop("negative_prompt", None)
        plan = own_values(plan, spec, set(spec.parameters) - set(values))
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
            value = snap_to_step(server, class_type, input_name, values[param])
            set_input(workflow, target, value)
            filled[param] = value
    if not spec.fixed_sampling:
        insert_loras(workflow, spec, plan.loras)
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

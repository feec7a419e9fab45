"""Which template a plan runs on: what the connected server can run, ours or ComfyUI's own.

Our templates (workflows/templates/) load one SD-style checkpoint; most people's ComfyUI
today holds Flux, SD3.5, Qwen-Image, Wan ... files loaded with UNET / CLIP / VAE
loaders, for which ComfyUI's official library (workflows/official_library.py) has a
template. So, for the plan's kind (image, edit, video, upscale):

1. our template, when the server runs it and has a checkpoint of its family;
2. else the most used official template of that kind the server runs (its model files
   read from the loaders' lists in ``/object_info``, i.e. what is installed);
3. else the next kind of our fallback chain (a video becomes a still key frame), by the
   same two rules; and when even that fails, our own chain as before (an SD template on
   a Flux checkpoint runs rather than nothing).

Whenever the best template of the kind cannot run, the person is told exactly which file
goes in which ComfyUI folder, and what runs instead. Pure: no I/O, testable with a
recorded ``object_info``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from creative_studio.core.errors import InvalidInputError, NotFoundError
from creative_studio.workflows.catalog import (
    Availability,
    Catalog,
    ServerInfo,
    TemplateUnavailableError,
    split_target,
)
from creative_studio.workflows.official_library import (
    OfficialAvailability,
    OfficialLibrary,
    OfficialTemplate,
    library,
)
from creative_studio.workflows.plan import TechnicalPlan
from creative_studio.workflows.server_info import rules
from creative_studio.workflows.spec import TemplateSpec

__all__ = [
    "OFFICIAL_PREFIX",
    "OUR_KINDS",
    "NothingRunsError",
    "TemplateChoice",
    "choose_template",
    "our_family",
    "our_kind",
]

OFFICIAL_PREFIX = "official:"
# What each of our templates makes, in the official library's words.
OUR_KINDS = {
    "txt2img": "image",
    "img2img": "edit",
    "upscale": "upscale",
    "upscale_latent": "upscale",
    "video_animatediff": "video",
    "video_native": "video",
}
# Our template for a kind, when the plan names an official one that cannot run.
_OURS_FOR_KIND = {
    "image": "txt2img",
    "edit": "img2img",
    "upscale": "upscale",
    "video": "video_animatediff",
}
# Checkpoint families our one-checkpoint templates are written for (None: the name does
# not say, which is most SD fine-tunes). A Flux checkpoint belongs to Flux's templates.
_OUR_FAMILIES = frozenset({"sdxl", "sd15", None})
_INPUT_NODES = frozenset({"LoadImage", "LoadImageMask", "LoadVideo"})
_MODEL_FOLDERS = frozenset({"diffusion_models", "checkpoints", "unet"})


class NothingRunsError(TemplateUnavailableError):
    """Nothing runs: our chain's reasons, and the official template that is files away."""

    def __init__(self, tried: list[Availability], official: str) -> None:
        super().__init__(tried)
        self.message = f"{self.message} {official}"
        self.args = (self.message,)


@dataclass
class TemplateChoice:
    """The template a plan runs on, the catalog that holds it, and what to tell the person.

    ``fills`` names parameters the plan sets although an official template keeps its own
    values otherwise (the size: the plan's shape at the model's trained area).
    """

    template: str
    templates: Catalog
    plan: TechnicalPlan
    notes: list[str] = field(default_factory=list)
    fills: frozenset[str] = frozenset()
    official: OfficialTemplate | None = None


def our_kind(name: str) -> str:
    return OUR_KINDS.get(name, "image")


def template_kind(name: str) -> str:
    """image, edit, video or upscale for any template name (ours, official:, custom:)."""
    if name.startswith("official:"):
        try:
            return library().get(name.removeprefix("official:")).kind
        except NotFoundError:
            return "image"
    return our_kind(name)


def our_family(spec: TemplateSpec) -> str:
    """The model family one of our templates runs (for listings)."""
    if spec.checkpoint_family:
        return spec.checkpoint_family
    if "checkpoint" in spec.parameters:
        return "sd"  # whichever SD-style checkpoint is installed
    for node in spec.workflow.values():
        if node.get("class_type") == "UNETLoader":
            name = str(node["inputs"].get("unet_name", "")).lower()
            return "wan2-1" if "wan2.1" in name else "other"
    return "none" if OUR_KINDS.get(spec.name) == "upscale" else "other"


def _checkpoint_family(name: str) -> str | None:
    lowered = name.lower()
    for family, rule in rules()["families"].items():
        if any(word in lowered for word in rule["words"]):
            return str(family)
    return None


def _ours_suits(spec: TemplateSpec, server: ServerInfo, availability: Availability) -> bool:
    """Our template runs, and the server has a checkpoint of the family it is written for."""
    if not availability.runnable:
        return False
    targets = spec.parameters.get("checkpoint") or []
    if not targets:
        return True
    node_id, input_name = split_target(targets[0])
    installed = server.options(spec.workflow[node_id]["class_type"], input_name)
    families = {_checkpoint_family(str(name)) for name in installed}
    if spec.checkpoint_family:
        return spec.checkpoint_family in families
    return bool(families & _OUR_FAMILIES)


def _chain(templates: Catalog, name: str) -> list[str]:
    """Our template and its fallbacks, in the order the catalog tries them."""
    order: list[str] = []
    queue = [name]
    while queue:
        current = queue.pop(0)
        if current in order or current not in templates.templates:
            continue
        order.append(current)
        queue.extend(templates.templates[current].fallbacks)
    return order


def _fits(spec: TemplateSpec, kind: str, init_image: str | None) -> bool:
    """The template can be filled for this plan: a prompt to set, and the images it loads."""
    inputs = sum(node["class_type"] in _INPUT_NODES for node in spec.workflow.values())
    if "positive_prompt" not in spec.parameters and kind != "upscale":
        return False
    if kind in ("edit", "upscale"):
        return init_image is not None and inputs == 1
    return inputs <= (1 if init_image else 0)


def _missing_files(availability: OfficialAvailability) -> str:
    parts = [
        f"{', '.join(files)} in ComfyUI/models/{folder}"
        for folder, files in availability.missing_models.items()
    ]
    return "; ".join(parts)


def _closeness(template: OfficialTemplate, availability: OfficialAvailability) -> tuple[Any, ...]:
    """How near the server is to a template: its model installed, share of files, usage.

    The diffusion model (or checkpoint) tells the family; encoders such as t5xxl are
    shared by several families and alone say little.
    """
    missing = {(f, n) for f, names in availability.missing_models.items() for n in names}
    main = [m for m in template.files if m.folder in _MODEL_FOLDERS]
    has_model = any((m.folder, m.name) not in missing for m in main)
    total = max(1, len(template.files))
    share = (total - len(missing)) / total if has_model else 0.0
    return (has_model, share, template.usage)


@dataclass
class _Candidates:
    runnable: list[tuple[OfficialTemplate, TemplateSpec]]
    closest: tuple[OfficialTemplate, OfficialAvailability] | None  # best one files away


def _officials(
    official: OfficialLibrary,
    kind: str,
    server: ServerInfo,
    init_image: str | None,
    comfyui_version: str | None,
    installed: Mapping[str, Sequence[str]] | None,
) -> _Candidates:
    runnable: list[tuple[OfficialTemplate, TemplateSpec]] = []
    closest: tuple[OfficialTemplate, OfficialAvailability] | None = None
    for template, availability in official.available(
        server, kind=kind, comfyui_version=comfyui_version, installed=installed
    ):
        only_files = not (
            availability.missing_nodes or availability.needs_version or availability.problems
        )
        if not only_files:
            continue  # a newer ComfyUI or other nodes: not a matter of copying files
        spec = official.spec(template.name, server)
        if not _fits(spec, kind, init_image):
            continue
        if availability.runnable:
            runnable.append((template, spec))
        elif closest is None or _closeness(template, availability) > _closeness(*closest):
            closest = (template, availability)
    return _Candidates(runnable, closest)


def _official_choice(
    plan: TechnicalPlan,
    templates: Catalog,
    template: OfficialTemplate,
    spec: TemplateSpec,
    explicit: Collection[str],
    notes: list[str],
) -> TemplateChoice:
    """Run an official template: the plan's shape at the size the template is made for."""
    fills: frozenset[str] = frozenset()
    widths, heights = spec.parameters.get("width"), spec.parameters.get("height")
    if widths and heights and not ({"width", "height"} & set(explicit)):
        area = _value(spec, widths[0]) * _value(spec, heights[0])
        if area > 0:
            ratio = plan.width / plan.height
            height = math.sqrt(area / ratio)
            width, height = _snap(height * ratio), _snap(height)
            if (width, height) != (plan.width, plan.height):
                notes.append(
                    f"Size set to {width}x{height}: the plan's shape at the size "
                    f"{template.title} is made for."
                )
            plan = plan.model_copy(update={"width": width, "height": height})
        fills = frozenset({"width", "height"})
    elif widths and heights:
        fills = frozenset({"width", "height"})
    catalog = Catalog({**templates.templates, spec.name: spec})
    return TemplateChoice(spec.name, catalog, plan, notes, fills, template)


def _value(spec: TemplateSpec, target: str) -> int:
    node_id, input_name = split_target(target)
    value = spec.workflow[node_id]["inputs"].get(input_name)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _snap(value: float, multiple: int = 16) -> int:
    return max(64, min(4096, round(value / multiple) * multiple))


def _title(template: OfficialTemplate) -> str:
    return f"ComfyUI's template {template.title!r} ({OFFICIAL_PREFIX}{template.name})"


def choose_template(
    plan: TechnicalPlan,
    server: ServerInfo,
    templates: Catalog,
    *,
    requested: str | None = None,
    init_image: str | None = None,
    explicit: Collection[str] = (),
    allow_fallback: bool = True,
    comfyui_version: str | None = None,
    installed: Mapping[str, Sequence[str]] | None = None,
    official: OfficialLibrary | None = None,
) -> TemplateChoice:
    """The template ``plan`` runs on ``server`` (see the module's docstring for the order).

    ``requested`` is the template the plan names (default ``plan.template``): one of ours,
    ``custom:<name>`` (a person's own workflow: never replaced) or
    ``official:<name>`` (the person's preferred official template: used when it runs).
    ``explicit`` names the parameters the person set on purpose (a size they asked for
    is kept as is). ``installed`` (``GET /models/{folder}``) and ``comfyui_version``
    (``/system_stats``) sharpen the answer; without them the loaders' lists decide.
    Raises NothingRunsError (a TemplateUnavailableError) naming every missing file when
    nothing can run.
    """
    name = requested or plan.template
    official = official or library()
    notes: list[str] = []
    explicit = set(explicit)

    def keep() -> TemplateChoice:
        """Our catalog's own choice for ``name`` (its notes say what it skipped)."""
        return TemplateChoice(name, templates, plan, notes)

    def officials(kind: str) -> _Candidates:
        return _officials(official, kind, server, init_image, comfyui_version, installed)

    if name.startswith(OFFICIAL_PREFIX):
        key = name.removeprefix(OFFICIAL_PREFIX)
        try:
            template = official.get(key)
        except NotFoundError as error:
            raise InvalidInputError(error.message) from None
        spec = official.spec(key, server)
        if not allow_fallback:
            return _official_choice(plan, templates, template, spec, explicit, notes)
        preferred = official.check(
            key, server, comfyui_version=comfyui_version, installed=installed
        )
        images = init_image is not None or not spec.needs_init_image
        if preferred.runnable and images:
            return _official_choice(plan, templates, template, spec, explicit, notes)
        lacks = preferred.describe() if not preferred.runnable else "a starting image"
        notes.append(
            f"Your preferred template {template.title!r} ({name}) needs {lacks}, "
            "so Pixel chose another."
        )
        kind = template.kind if template.kind != "edit" or init_image else "image"
        name = _OURS_FOR_KIND[kind]
    elif not allow_fallback or name not in templates.templates:
        return keep()  # unknown names are the builder's to refuse
    elif templates.templates[name].user_supplied:
        return keep()

    first = templates.templates[name]
    if first.needs_init_image and not init_image and "txt2img" in first.fallbacks:
        chain = _chain(templates, "txt2img")  # the builder says why (no starting image)
    else:
        chain = _chain(templates, name)
    runnable_ours: str | None = None
    explained: list[str] = []
    first_kind = our_kind(chain[0])
    for kind in dict.fromkeys(our_kind(n) for n in chain):
        ours = [n for n in chain if our_kind(n) == kind]
        for our_name in ours:
            spec = templates.templates[our_name]
            availability = templates.availability(spec, server)
            if _ours_suits(spec, server, availability):
                notes.extend(explained)
                return keep()
            if availability.runnable and runnable_ours is None:
                runnable_ours = our_name
        found = officials(kind)
        if found.runnable:
            template, spec = found.runnable[0]
            wanted = templates.templates[chain[0]]
            lacking = templates.availability(wanted, server)
            reason = (
                f"it lacks {lacking.describe()}"
                if not lacking.runnable
                else "it has no checkpoint that template is made for"
            )
            still = kind != first_kind and first_kind == "video"
            notes.extend(explained)
            notes.append(
                f"The ComfyUI server cannot run {wanted.title} ({reason}); Pixel is "
                + ("making a still key frame with " if still else "using ")
                + f"{_title(template)} with the installed models"
                + (" instead of a video." if still else ".")
            )
            return _official_choice(plan, templates, template, spec, explicit, notes)
        if found.closest is not None:
            closest, lacking_files = found.closest
            explained.append(
                f"{_title(closest)} would make this {kind}; put "
                f"{_missing_files(lacking_files)} to use it."
            )
    if runnable_ours is not None:
        notes.extend(explained)
        return keep()
    if explained:
        try:
            templates.choose(chain[0], server)
        except TemplateUnavailableError as error:
            # Our chain's reasons, then the official template that is files away.
            raise NothingRunsError(error.tried, " ".join(explained)) from None
    return keep()

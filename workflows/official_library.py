"""ComfyUI's official template library as a second source of templates, beside ours.

Comfy-Org publishes the templates its frontend's browser shows as PyPI packages; the
studio pins ``comfyui-workflow-templates-json`` (the index: titles, descriptions, tags,
model names, ``minComfyUIVersion``; and each template's UI-format JSON, whose loader nodes
list the model files they need with their folders) and ``comfyui-workflow-templates-core``
(the bundle manifest, which tells the paid API-node templates apart). Everything is read
from the installed packages — never from the network — once per process.

People run Flux, SD3.5, Qwen-Image, Z-Image, HiDream, Chroma or Wan models loaded with
UNET / CLIP / VAE loaders; our own templates only cover one-checkpoint workflows. So for
the connected server this module tells, per official template, whether it runs and, when
not, exactly what is missing: node types, a newer ComfyUI, model files (by name and the
models folder they go in), or a value the server's nodes do not offer.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata, resources
from typing import Any

from creative_studio.core.errors import NotFoundError
from creative_studio.workflows.detection import detect_parameters
from creative_studio.workflows.server_info import ServerInfo, Workflow, is_link
from creative_studio.workflows.spec import TemplateSpec
from creative_studio.workflows.ui_format import ui_to_api
from creative_studio.workflows.ui_subgraphs import VIRTUAL_TYPES, UIConversionError
from creative_studio.workflows.validation import validate

__all__ = [
    "KINDS",
    "ModelFile",
    "OfficialAvailability",
    "OfficialLibrary",
    "OfficialTemplate",
    "library",
    "version_tuple",
]

JSON_PACKAGE = "comfyui_workflow_templates_json"
CORE_PACKAGE = "comfyui_workflow_templates_core"
KINDS = ("image", "edit", "video", "upscale")  # what the studio makes
# Inputs that name a file the person supplies (uploaded before a run), not a model.
_INPUT_FILES = {"LoadImage": "image", "LoadImageMask": "image", "LoadVideo": "file"}
# Categories that teach the node editor rather than make a picture.
_TUTORIALS = frozenset({"Node Basics"})
# Index model names that are one family under another spelling.
_FAMILY_ALIASES = {"flux-1": "flux", "flux": "flux", "stability": "sd", "wan": "wan"}


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"0.3.64"`` -> (0, 3, 64); anything unreadable -> () (unknown)."""
    parts = re.findall(r"\d+", version or "")[:3]
    return tuple(int(p) for p in parts)


@dataclass(frozen=True)
class ModelFile:
    """A file a template needs: its name and the ComfyUI models folder it goes in."""

    name: str
    folder: str
    url: str | None = None


@dataclass(frozen=True)
class OfficialTemplate:
    """One entry of the official index, with what its workflow needs."""

    name: str
    title: str
    description: str
    category: str
    kind: str  # image | edit | video | upscale
    family: str  # e.g. flux, qwen-image, wan2-2, sd3-5, z-image-turbo
    models: tuple[str, ...]  # the index's model names ("FLUX.1", "Wan2.2", ...)
    tags: tuple[str, ...]
    min_version: str | None
    files: tuple[ModelFile, ...]
    node_types: frozenset[str]
    usage: int = 0

    def graph(self) -> dict[str, Any]:
        """The template as saved (UI format), read from the installed package."""
        return _read_template(self.name)


@dataclass
class OfficialAvailability:
    """Can the connected server run an official template? If not, what exactly is missing."""

    template: str
    missing_nodes: list[str] = field(default_factory=list)
    needs_version: str | None = None  # the minimum ComfyUI version, when the server is older
    missing_models: dict[str, list[str]] = field(default_factory=dict)  # folder -> files
    problems: list[str] = field(default_factory=list)  # what validation refused besides

    @property
    def runnable(self) -> bool:
        return not (
            self.missing_nodes or self.needs_version or self.missing_models or self.problems
        )

    def describe(self) -> str:
        """What is missing, in words a person can act on."""
        parts: list[str] = []
        if self.needs_version:
            parts.append(f"ComfyUI {self.needs_version} or newer")
        if self.missing_nodes:
            parts.append("node types " + ", ".join(self.missing_nodes))
        for folder, files in self.missing_models.items():
            parts.append(f"{', '.join(files)} in ComfyUI/models/{folder}")
        parts.extend(self.problems)
        return "; ".join(parts) if parts else "nothing"


def _read_template(name: str) -> dict[str, Any]:
    path = resources.files(JSON_PACKAGE).joinpath("templates", f"{name}.json")
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _kind(category_type: str | None, tags: Sequence[str], name: str) -> str | None:
    words = " ".join(tags).lower()
    if category_type in ("3d", "audio", "llm"):
        return None
    if "upscale" in words:
        return "upscale"
    if category_type == "video" or "video" in words:
        return "video"
    if any(w in words for w in ("edit", "inpaint", "outpaint")) or "kontext" in name:
        return "edit"
    return "image"


def _family(models: Sequence[str]) -> str:
    if not models:
        return "other"
    slug = _slug(models[0])
    return _FAMILY_ALIASES.get(slug, slug) or "other"


def _all_nodes(graph: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield from graph.get("nodes") or []
    for definition in (graph.get("definitions") or {}).get("subgraphs") or []:
        yield from definition.get("nodes") or []


def _needs(graph: dict[str, Any]) -> tuple[frozenset[str], tuple[ModelFile, ...]]:
    """The node types a template runs and the model files its loaders list."""
    subgraphs = {str(d.get("id")) for d in (graph.get("definitions") or {}).get("subgraphs") or []}
    types: set[str] = set()
    files: dict[tuple[str, str], ModelFile] = {}
    for node in _all_nodes(graph):
        kind = str(node.get("type"))
        if kind not in subgraphs and kind not in VIRTUAL_TYPES:
            types.add(kind)
        for model in (node.get("properties") or {}).get("models") or []:
            if isinstance(model, dict) and model.get("name") and model.get("directory"):
                key = (str(model["directory"]), str(model["name"]))
                files.setdefault(key, ModelFile(key[1], key[0], model.get("url")))
    return frozenset(types), tuple(files.values())


def _api_bundle() -> frozenset[str]:
    """Template ids the core manifest files under the paid API-node bundle."""
    manifest = resources.files(CORE_PACKAGE).joinpath("manifest.json").read_text("utf-8")
    entries = json.loads(manifest).get("templates") or []
    return frozenset(str(e["id"]) for e in entries if e.get("bundle") == "media-api")


class OfficialLibrary:
    """The pinned official templates the studio can use (API-node ones left out)."""

    def __init__(self, templates: dict[str, OfficialTemplate], version: str) -> None:
        self.templates = templates
        self.version = version

    @classmethod
    def load(cls) -> OfficialLibrary:
        index = json.loads(
            resources.files(JSON_PACKAGE).joinpath("templates", "index.json").read_text("utf-8")
        )
        api = _api_bundle()
        templates: dict[str, OfficialTemplate] = {}
        for category in index:
            for entry in category.get("templates") or []:
                name = str(entry.get("name"))
                tags = tuple(str(t) for t in entry.get("tags") or [])
                kind = _kind(category.get("type"), tags, name)
                if (
                    name.startswith("api_")
                    or name in api
                    or kind is None
                    or name in templates
                    or category.get("title") in _TUTORIALS
                ):
                    continue
                node_types, files = _needs(_read_template(name))
                models = tuple(str(m) for m in entry.get("models") or [])
                templates[name] = OfficialTemplate(
                    name=name,
                    title=str(entry.get("title") or name),
                    description=str(entry.get("description") or ""),
                    category=str(category.get("title") or ""),
                    kind=kind,
                    family=_family(models),
                    models=models,
                    tags=tags,
                    min_version=entry.get("minComfyUIVersion"),
                    files=files,
                    node_types=node_types,
                    usage=int(entry.get("usage") or 0),
                )
        return cls(templates, metadata.version("comfyui-workflow-templates-json"))

    def get(self, name: str) -> OfficialTemplate:
        try:
            return self.templates[name]
        except KeyError:
            raise NotFoundError(f"No official template is named {name!r}.") from None

    # ----------------------------------------------------------------------- on a server

    def workflow(self, name: str, server: ServerInfo) -> Workflow:
        """The template in API format for ``server``, with plain output file names.

        The conversion is exactly the frontend's; only ``filename_prefix`` loses its
        folder ("video/ComfyUI" -> "ComfyUI"): the studio's rules allow plain names, and
        the builder sets its own prefix anyway.
        """
        api = ui_to_api(self.get(name).graph(), server)
        for node in api.values():
            prefix = node["inputs"].get("filename_prefix")
            if isinstance(prefix, str) and "/" in prefix:
                node["inputs"]["filename_prefix"] = prefix.rsplit("/", 1)[-1] or "ComfyUI"
        return api

    def check(
        self,
        name: str,
        server: ServerInfo,
        *,
        comfyui_version: str | None = None,
        installed: Mapping[str, Sequence[str]] | None = None,
    ) -> OfficialAvailability:
        """Whether ``server`` runs the template, and if not, everything it lacks.

        ``installed`` is what ``GET /models/{folder}`` lists (folder -> files); without
        it a file counts as installed when a combo input of the server offers it, which
        is how the loaders list their folders. ``comfyui_version`` (``/system_stats``)
        is compared with the template's ``minComfyUIVersion`` when both are known.
        """
        template = self.get(name)
        result = OfficialAvailability(template=name)
        result.missing_nodes = sorted(t for t in template.node_types if not server.has(t))
        needed = version_tuple(template.min_version)
        have = version_tuple(comfyui_version)
        if needed and have and have < needed:
            result.needs_version = template.min_version
        offered = _offered(server)
        for model in template.files:
            present = (
                model.name in installed.get(model.folder, ())
                if installed is not None and model.folder in installed
                else model.name in offered
            )
            if not present:
                result.missing_models.setdefault(model.folder, []).append(model.name)
        if result.missing_nodes:
            return result
        try:
            api = self.workflow(name, server)
        except UIConversionError as error:
            result.problems.append(error.message)
            return result
        files = {m.name for m in template.files}
        issues = validate(api, _assuming(api, server, files))
        result.problems.extend(issue.message for issue in issues)
        return result

    def spec(self, name: str, server: ServerInfo) -> TemplateSpec:
        """The template as the builder fills it: its parameters found by detection.

        The same detection as a person's uploaded workflow (prompt, negative prompt,
        seed, size, steps, cfg, denoise, frames), filled the same way (see build()):
        what the person did not set stays the template's.
        """
        template = self.get(name)
        api = self.workflow(name, server)
        return TemplateSpec(
            name=f"official:{name}",
            title=template.title,
            kind="video" if template.kind == "video" else "image",
            workflow=api,
            parameters=detect_parameters(api),
            needs_init_image=any(n["class_type"] in _INPUT_FILES for n in api.values()),
            fixed_sampling=True,  # no LoRA chain is spliced in: it wires its own loaders
            # Filled like a person's own workflow: the prompts, the seed and what the
            # person asked for come from the plan; the model's tuned steps, CFG,
            # sampler and frames stay the template's (an SDXL plan's CFG 7 would ruin
            # Flux at 1.0).
            user_supplied=True,
        )

    def available(
        self,
        server: ServerInfo,
        *,
        kind: str | None = None,
        comfyui_version: str | None = None,
        installed: Mapping[str, Sequence[str]] | None = None,
    ) -> list[tuple[OfficialTemplate, OfficialAvailability]]:
        """Every template (of ``kind``), most used first, with whether ``server`` runs it."""
        chosen = [t for t in self.templates.values() if kind is None or t.kind == kind]
        chosen.sort(key=lambda t: (-t.usage, t.name))
        return [
            (t, self.check(t.name, server, comfyui_version=comfyui_version, installed=installed))
            for t in chosen
        ]


_OFFERED: weakref.WeakKeyDictionary[ServerInfo, frozenset[str]] = weakref.WeakKeyDictionary()


def _offered(server: ServerInfo) -> frozenset[str]:
    """Every value some combo input of the server offers (the loaders' file lists)."""
    cached = _OFFERED.get(server)
    if cached is None:
        found: set[str] = set()
        for class_type in server.raw:
            node = server.node(class_type)
            for spec in node.inputs.values() if node else ():
                if spec.type == "COMBO":
                    found.update(str(o) for o in spec.options or ())
        cached = _OFFERED[server] = frozenset(found)
    return cached


def _assuming(api: Workflow, server: ServerInfo, files: set[str]) -> ServerInfo:
    """``server`` as if the template's model files and input images were installed.

    Missing files are reported by name and folder already; what validation still finds
    is everything else (a value the server's nodes do not offer, a node not allowed).
    """
    additions: dict[str, list[Any]] = {}
    for node in api.values():
        class_type = str(node.get("class_type"))
        for input_name, value in node.get("inputs", {}).items():
            if not isinstance(value, str) or is_link(value):
                continue
            if value in files or _INPUT_FILES.get(class_type) == input_name:
                additions.setdefault(f"{class_type}.{input_name}", []).append(value)
    return server.with_options(additions) if additions else server


@cache
def library() -> OfficialLibrary:
    """The pinned official library (read once per process)."""
    return OfficialLibrary.load()

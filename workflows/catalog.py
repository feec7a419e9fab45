"""What the templates are and what the connected ComfyUI server can run.

Three things live here, all read from data rather than code:

* ``ServerInfo`` wraps a server's ``GET /object_info`` (every node type, its inputs, enum
  options and numeric bounds). ComfyUI answers combo inputs in two shapes —
  ``[[options...], {...}]`` and ``["COMFY", {"options": [...]}]`` — and this is the one
  place that knows both.
* ``rules()`` loads ``rules.toml``: the node whitelist, which inputs name model files, the
  plan -> parameter mapping, recovery settings.
* ``Catalog`` loads ``templates/manifest.toml`` and the API-format templates, tells which
  template the server can run (and, when it cannot, exactly which node types or model
  files are missing and which template it can run instead), and turns a workflow a person
  exported from ComfyUI into a template by detecting its prompt, sampler, size and seed.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from creative_studio.tools.errors import InvalidInputError

Workflow = dict[str, dict[str, Any]]

__all__ = [
    "Availability",
    "Catalog",
    "InputSpec",
    "NodeSpec",
    "ServerInfo",
    "TemplateSpec",
    "Workflow",
    "catalog",
    "detect_parameters",
    "is_link",
    "rules",
    "split_target",
]


# --------------------------------------------------------------------------- object_info


@dataclass(frozen=True)
class InputSpec:
    """One input of a node type as the server declares it."""

    name: str
    type: str  # INT, FLOAT, STRING, BOOLEAN, COMBO, or a link type such as MODEL / IMAGE
    required: bool
    options: tuple[Any, ...] | None = None  # COMBO only
    min: float | None = None
    max: float | None = None
    step: float | None = None
    default: Any = None
    raw: Any = None  # the server's exact declaration (echoed in error details)

    @property
    def is_widget(self) -> bool:
        """A value typed into the node (as opposed to a link from another node)."""
        return self.type in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    inputs: dict[str, InputSpec]
    outputs: tuple[str, ...]
    output_node: bool

    def required_inputs(self) -> list[str]:
        return [name for name, spec in self.inputs.items() if spec.required]


def _parse_input(name: str, raw: Any, required: bool) -> InputSpec:
    if not isinstance(raw, list | tuple) or not raw:
        return InputSpec(name=name, type=str(raw), required=required, raw=raw)
    head = raw[0]
    config: dict[str, Any] = raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {}
    if isinstance(head, list | tuple):
        return InputSpec(
            name, "COMBO", required, tuple(head), default=config.get("default"), raw=raw
        )
    if head == "COMBO":
        options = tuple(config.get("options") or ())
        return InputSpec(name, "COMBO", required, options, default=config.get("default"), raw=raw)
    return InputSpec(
        name=name,
        type=str(head),
        required=required,
        min=config.get("min"),
        max=config.get("max"),
        step=config.get("step"),
        default=config.get("default"),
        raw=raw,
    )


def _parse_node(name: str, raw: dict[str, Any]) -> NodeSpec:
    inputs: dict[str, InputSpec] = {}
    declared = raw.get("input") or {}
    for section, required in (("required", True), ("optional", False)):
        for input_name, spec in (declared.get(section) or {}).items():
            inputs[input_name] = _parse_input(input_name, spec, required)
    return NodeSpec(
        name=name,
        inputs=inputs,
        outputs=tuple(raw.get("output") or ()),
        output_node=bool(raw.get("output_node")),
    )


class ServerInfo:
    """A ComfyUI server's node catalogue (``GET /object_info``), parsed on demand."""

    def __init__(self, object_info: dict[str, Any]) -> None:
        self.raw = object_info
        self._nodes: dict[str, NodeSpec] = {}

    def has(self, class_type: str) -> bool:
        return class_type in self.raw

    def node(self, class_type: str) -> NodeSpec | None:
        spec = self._nodes.get(class_type)
        if spec is None and class_type in self.raw:
            spec = self._nodes[class_type] = _parse_node(class_type, self.raw[class_type])
        return spec

    def options(self, class_type: str, input_name: str) -> list[Any]:
        """A combo input's choices (e.g. installed checkpoints); [] when unknown."""
        node = self.node(class_type)
        spec = node.inputs.get(input_name) if node else None
        return list(spec.options or ()) if spec else []

    def models(self, folder: str) -> list[str]:
        """Installed model files of a folder, read from the loader nodes' enum lists."""
        found: list[str] = []
        for target, rule in rules()["model_inputs"].items():
            if rule["folder"] != folder:
                continue
            class_type, input_name = target.split(".", 1)
            for option in self.options(class_type, input_name):
                if option not in found:
                    found.append(str(option))
        return found

    def with_options(self, additions: dict[str, list[Any]]) -> ServerInfo:
        """A copy whose combo inputs also offer ``additions`` ("Node.input" -> values).

        Used to ask "would this validate once these models are installed?" and by tests.
        """
        raw = dict(self.raw)  # copy only the node types that change (object_info is ~500 KB)
        for target, values in additions.items():
            class_type, input_name = target.split(".", 1)
            if class_type not in raw:
                continue
            node = raw[class_type] = copy.deepcopy(raw[class_type])
            for section in ("required", "optional"):
                spec = (node.get("input") or {}).get(section, {}).get(input_name)
                if spec is None:
                    continue
                if isinstance(spec[0], list):
                    spec[0] = [*spec[0], *[v for v in values if v not in spec[0]]]
                elif spec[0] == "COMBO":
                    options = spec[1].setdefault("options", [])
                    options.extend(v for v in values if v not in options)
        info = ServerInfo(raw)
        info._nodes = {
            k: v for k, v in self._nodes.items() if k not in {t.split(".", 1)[0] for t in additions}
        }
        return info

    def with_nodes(self, nodes: dict[str, Any]) -> ServerInfo:
        """A copy that also has the given node definitions (a custom node pack)."""
        return ServerInfo({**self.raw, **copy.deepcopy(nodes)})


# --------------------------------------------------------------------------- data files


def _read_data(*parts: str) -> str:
    return (resources.files("creative_studio.workflows").joinpath(*parts)).read_text("utf-8")


@cache
def rules() -> dict[str, Any]:
    """``rules.toml``: whitelist, model inputs, plan mapping, recovery, detection."""
    return tomllib.loads(_read_data("rules.toml"))


@cache
def whitelist() -> frozenset[str]:
    lists = rules()["whitelist"]
    return frozenset(name for names in lists.values() for name in names)


def node_pack(class_type: str) -> str | None:
    """The custom node pack a node type belongs to, when the rules know it."""
    for prefix, pack in rules()["node_packs"].items():
        if class_type.startswith(prefix):
            return str(pack)
    return None


def is_link(value: Any) -> bool:
    """``["node_id", output_index]`` is how API-format workflows connect nodes."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def split_target(target: str) -> tuple[str, str]:
    node_id, _, input_name = target.partition(".")
    if not node_id or not input_name:
        raise ValueError(f"a parameter target is 'node_id.input_name', got {target!r}")
    return node_id, input_name


# --------------------------------------------------------------------------- templates


@dataclass
class TemplateSpec:
    """One template: its workflow and what the builder may change in it."""

    name: str
    title: str
    kind: str  # image | video
    workflow: Workflow
    parameters: dict[str, list[str]]
    fallbacks: list[str] = field(default_factory=list)
    lora: dict[str, str] = field(default_factory=dict)  # {"model": "4.0", "clip": "4.1"}
    needs_init_image: bool = False
    fixed_sampling: bool = False
    checkpoint_family: str | None = None
    user_supplied: bool = False

    def fresh(self) -> Workflow:
        """A deep copy of the workflow, safe to fill."""
        return copy.deepcopy(self.workflow)


@dataclass
class Availability:
    """Can the server run a template? If not, what exactly is missing."""

    template: str
    missing_nodes: list[str] = field(default_factory=list)
    missing_models: dict[str, list[str]] = field(default_factory=dict)  # folder -> files
    substitutes: dict[str, str] = field(default_factory=dict)  # "node.input" -> installed file

    @property
    def runnable(self) -> bool:
        return not self.missing_nodes and not self.missing_models

    def describe(self) -> str:
        """What is missing, in words a person can act on."""
        parts: list[str] = []
        if self.missing_nodes:
            packs = sorted({node_pack(n) or "" for n in self.missing_nodes} - {""})
            text = "node types " + ", ".join(self.missing_nodes)
            if packs:
                text += " (install the custom nodes " + "; ".join(packs) + ")"
            parts.append(text)
        for folder, files in self.missing_models.items():
            parts.append(f"{', '.join(files)} in models/{folder}")
        return "; ".join(parts) if parts else "nothing"


class Catalog:
    """The templates, loaded once, plus any workflows people added."""

    def __init__(self, templates: dict[str, TemplateSpec]) -> None:
        self.templates = templates

    @classmethod
    def load(cls) -> Catalog:
        manifest = tomllib.loads(_read_data("templates", "manifest.toml"))
        templates: dict[str, TemplateSpec] = {}
        for name, entry in manifest.items():
            workflow = json.loads(_read_data("templates", entry["file"]))
            templates[name] = TemplateSpec(
                name=name,
                title=entry.get("title", name),
                kind=entry.get("kind", "image"),
                workflow=workflow,
                parameters={k: list(v) for k, v in entry.get("parameters", {}).items()},
                fallbacks=list(entry.get("fallbacks", [])),
                lora=dict(entry.get("lora", {})),
                needs_init_image=bool(entry.get("needs_init_image", False)),
                fixed_sampling=bool(entry.get("fixed_sampling", False)),
                checkpoint_family=entry.get("checkpoint_family"),
            )
        catalog = cls(templates)
        for spec in templates.values():
            catalog.check_spec(spec)
        return catalog

    def get(self, name: str) -> TemplateSpec:
        try:
            return self.templates[name]
        except KeyError:
            known = ", ".join(sorted(self.templates))
            raise InvalidInputError(f"Unknown template {name!r}; known: {known}.") from None

    @staticmethod
    def check_spec(spec: TemplateSpec) -> None:
        """A manifest that points at nodes or inputs the workflow lacks is a bug: fail early."""
        for param, targets in spec.parameters.items():
            for target in targets:
                node_id, input_name = split_target(target)
                node = spec.workflow.get(node_id)
                if node is None or input_name not in node.get("inputs", {}):
                    raise ValueError(f"template {spec.name}: parameter {param} -> {target} missing")

    def availability(self, spec: TemplateSpec, server: ServerInfo) -> Availability:
        """Which node types and model files the template needs that the server lacks."""
        result = Availability(template=spec.name)
        model_inputs = rules()["model_inputs"]
        for node_id in sorted(spec.workflow, key=_node_order):
            node = spec.workflow[node_id]
            class_type = node.get("class_type", "")
            if not server.has(class_type):
                if class_type not in result.missing_nodes:
                    result.missing_nodes.append(class_type)
                continue
            for input_name, value in node.get("inputs", {}).items():
                rule = model_inputs.get(f"{class_type}.{input_name}")
                if rule is None or is_link(value):
                    continue
                if class_type in ("LoraLoader", "LoraLoaderModelOnly"):
                    continue  # LoRAs come from the plan and are dropped when missing
                installed = server.options(class_type, input_name)
                if value in installed:
                    continue
                if _is_parameter(spec, node_id, input_name):
                    continue  # the plan decides (e.g. the checkpoint); checked when filled
                if rule.get("substitute") and installed:
                    result.substitutes[f"{node_id}.{input_name}"] = str(installed[0])
                    continue
                result.missing_models.setdefault(rule["folder"], []).append(str(value))
        checkpoint_targets = spec.parameters.get("checkpoint", [])
        for target in checkpoint_targets:
            node_id, input_name = split_target(target)
            class_type = spec.workflow[node_id]["class_type"]
            if server.has(class_type) and not server.options(class_type, input_name):
                result.missing_models.setdefault("checkpoints", []).append("any checkpoint")
        return result

    def choose(self, name: str, server: ServerInfo) -> tuple[TemplateSpec, list[Availability]]:
        """The template to run: ``name`` if the server can, else its first runnable fallback.

        Returns the chosen template and the availability of every template tried before it
        (empty when ``name`` itself runs), so the caller can tell the person what is missing.
        When nothing in the chain runs, raises a TemplateUnavailableError naming it all.
        """
        tried: list[Availability] = []
        queue = [name]
        seen: set[str] = set()
        while queue:
            current = queue.pop(0)
            if current in seen:
                continue
            seen.add(current)
            spec = self.get(current)
            availability = self.availability(spec, server)
            if availability.runnable:
                return spec, tried
            tried.append(availability)
            queue.extend(spec.fallbacks)
        raise TemplateUnavailableError(tried)

    def add_user_workflow(self, name: str, workflow: Any) -> TemplateSpec:
        """Register a workflow exported from ComfyUI (API format) as a template."""
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,60}", name or ""):
            raise InvalidInputError(
                "A workflow name is 1-60 letters, digits, '-' or '_' (it names the template)."
            )
        if name in self.templates and not self.templates[name].user_supplied:
            raise InvalidInputError(f"{name!r} is a built-in template; choose another name.")
        spec = template_from_workflow(name, workflow)
        self.templates[name] = spec
        return spec


class TemplateUnavailableError(InvalidInputError):
    """No template in the chain can run on the connected server."""

    def __init__(self, tried: list[Availability]) -> None:
        self.tried = tried
        details = "; ".join(f"{a.template} needs {a.describe()}" for a in tried)
        super().__init__(f"The ComfyUI server cannot run this: {details}.")


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 30, node_id)


def _is_parameter(spec: TemplateSpec, node_id: str, input_name: str) -> bool:
    target = f"{node_id}.{input_name}"
    return any(target in targets for targets in spec.parameters.values())


@cache
def catalog() -> Catalog:
    """The built-in templates (loaded once per process)."""
    return Catalog.load()


# --------------------------------------------------------------------------- user workflows


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

    Follows the sampler's ``positive`` / ``negative`` links back to the text encoders, so
    the result does not depend on node titles; falls back to wording ("blurry, low
    quality" is a negative prompt) when the links do not tell.
    """
    detect = rules()["detect"]
    sampler_nodes = set(rules()["progress"]["sampler_nodes"])
    params: dict[str, list[str]] = {}

    def add(name: str, target: str) -> None:
        targets = params.setdefault(name, [])
        if target not in targets:
            targets.append(target)

    prompt_nodes = set(detect["prompt_nodes"])

    def text_encoder(value: Any, depth: int = 0) -> str | None:
        """Walk conditioning links back to the text encoder that feeds them."""
        if not is_link(value) or depth > 6:
            return None
        node = workflow.get(value[0])
        if node is None:
            return None
        if node.get("class_type") in prompt_nodes:
            return value[0]
        for key in ("conditioning", "positive", "negative", "conditioning_to", "conditioning_1"):
            found = text_encoder(node.get("inputs", {}).get(key), depth + 1)
            if found:
                return found
        return None

    for node_id in sorted(workflow, key=_node_order):
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
            for key, param in (("positive", "positive_prompt"), ("negative", "negative_prompt")):
                encoder = text_encoder(inputs.get(key))
                if encoder and "text" in workflow[encoder].get("inputs", {}):
                    add(param, f"{encoder}.text")
        elif class_type == "RandomNoise" and "noise_seed" in inputs:
            add("seed", f"{node_id}.noise_seed")
        elif class_type in detect["size_nodes"]:
            for key in ("width", "height", "batch_size"):
                if key in inputs and not is_link(inputs[key]):
                    add(key, f"{node_id}.{key}")
            if "length" in inputs:
                add("frames", f"{node_id}.length")
        elif class_type == "CheckpointLoaderSimple":
            add("checkpoint", f"{node_id}.ckpt_name")
        elif class_type in ("SaveImage", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveWEBM"):
            add("filename_prefix", f"{node_id}.filename_prefix")
            if "fps" in inputs:
                add("fps", f"{node_id}.fps")
        elif class_type == "SaveVideo":
            add("filename_prefix", f"{node_id}.filename_prefix")
        elif class_type == "LoadImage":
            add("init_image", f"{node_id}.image")

    if "positive_prompt" not in params:
        # No sampler links to follow: tell positive from negative by their words.
        negatives = [w.lower() for w in detect["negative_words"]]
        for node_id in sorted(workflow, key=_node_order):
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
    Catalog.check_spec(spec)
    return spec

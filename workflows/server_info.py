"""What the connected ComfyUI server has: ``GET /object_info`` read once, asked many times.

Every node type, its inputs, enum options and numeric bounds. ComfyUI answers combo
inputs in two shapes — ``[[options...], {...}]`` and ``["COMFY", {"options": [...]}]`` —
and this is the one place that knows both. The rules (rules.toml: whitelist, model
inputs, plan mapping) are read here too, since validation needs both.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

Workflow = dict[str, dict[str, Any]]


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


def read_data(*parts: str) -> str:
    return (resources.files("creative_studio.workflows").joinpath(*parts)).read_text("utf-8")


@cache
def rules() -> dict[str, Any]:
    """``rules.toml``: whitelist, model inputs, plan mapping, recovery, detection."""
    return tomllib.loads(read_data("rules.toml"))


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

"""A template: its API-format workflow, which inputs the builder may set, and what it needs.

Shared by the catalog (built-in templates), the detection of a person's own workflow and
the builder.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from creative_studio.workflows.server_info import Workflow, node_pack, split_target


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


def node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 30, node_id)


def check_spec(spec: TemplateSpec) -> None:
    """A manifest that points at nodes or inputs the workflow lacks is a bug: fail early."""
    for param, targets in spec.parameters.items():
        for target in targets:
            node_id, input_name = split_target(target)
            node = spec.workflow.get(node_id)
            if node is None or input_name not in node.get("inputs", {}):
                raise ValueError(f"template {spec.name}: parameter {param} -> {target} missing")

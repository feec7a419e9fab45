"""What the templates are and what the connected ComfyUI server can run.

What the server has is ``ServerInfo`` (workflows/server_info.py); the parameters of a
person's own workflow are found by workflows/detection.py.

* ``Catalog`` loads ``templates/manifest.toml`` and the API-format templates, tells which
  template the server can run (and, when it cannot, exactly which node types or model
  files are missing and which template it can run instead), and turns a workflow a person
  exported from ComfyUI into a template by detecting its prompt, sampler, size and seed.
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import cache
from typing import Any

from creative_studio.core.errors import InvalidInputError
from creative_studio.workflows.detection import detect_parameters, template_from_workflow
from creative_studio.workflows.server_info import (
    InputSpec,
    NodeSpec,
    ServerInfo,
    Workflow,
    is_link,
    read_data,
    rules,
    split_target,
)
from creative_studio.workflows.spec import Availability, TemplateSpec, check_spec, node_order

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


# --------------------------------------------------------------------------- templates


class Catalog:
    """The templates, loaded once, plus any workflows people added."""

    def __init__(self, templates: dict[str, TemplateSpec]) -> None:
        self.templates = templates

    @classmethod
    def load(cls) -> Catalog:
        manifest = tomllib.loads(read_data("templates", "manifest.toml"))
        templates: dict[str, TemplateSpec] = {}
        for name, entry in manifest.items():
            workflow = json.loads(read_data("templates", entry["file"]))
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
        check_spec(spec)

    def availability(self, spec: TemplateSpec, server: ServerInfo) -> Availability:
        """Which node types and model files the template needs that the server lacks."""
        result = Availability(template=spec.name)
        model_inputs = rules()["model_inputs"]
        for node_id in sorted(spec.workflow, key=node_order):
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


def _is_parameter(spec: TemplateSpec, node_id: str, input_name: str) -> bool:
    target = f"{node_id}.{input_name}"
    return any(target in targets for targets in spec.parameters.values())


@cache
def catalog() -> Catalog:
    """The built-in templates (loaded once per process)."""
    return Catalog.load()

"""Validate a workflow against the connected server before anything is queued.

ComfyUI validates too, but only once the prompt is posted, and what it answers is meant
for developers (``value_not_in_list``, a KeyError for a bad link). Checking first, against
the same ``/object_info`` the server uses, means a bad plan is refused with a sentence a
person understands, nothing half-valid is ever queued, and the studio's own rules (the
node whitelist, plain file names) apply, which ComfyUI does not know about.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from creative_studio.core.errors import InvalidInputError
from creative_studio.workflows.server_info import (
    InputSpec,
    ServerInfo,
    Workflow,
    is_link,
    node_pack,
    rules,
    whitelist,
)

__all__ = ["ValidationIssue", "WorkflowValidationError", "check", "validate"]

_MAX_LISTED_OPTIONS = 12


@dataclass(frozen=True)
class ValidationIssue:
    code: str  # unknown_node, not_whitelisted, required_input_missing, value_not_in_list, ...
    node_id: str
    class_type: str
    input_name: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "node_id": self.node_id,
            "class_type": self.class_type,
            "input_name": self.input_name,
            "message": self.message,
        }


class WorkflowValidationError(InvalidInputError):
    """The workflow cannot be queued; ``issues`` says exactly why, node by node."""

    def __init__(self, issues: list[ValidationIssue]) -> None:
        self.issues = issues
        shown = "; ".join(issue.message for issue in issues[:5])
        more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"The workflow was refused before queueing: {shown}{more}.")


def _listed(options: list[Any] | tuple[Any, ...]) -> str:
    if not options:
        return "none installed"
    shown = ", ".join(str(o) for o in options[:_MAX_LISTED_OPTIONS])
    extra = len(options) - _MAX_LISTED_OPTIONS
    return shown + (f", … ({extra} more)" if extra > 0 else "")


def _bad_file_name(value: str) -> bool:
    """A plain file name: no folders, no parent references, not absolute, no drive."""
    return (
        not value
        or "/" in value
        or "\\" in value
        or ".." in value
        or value.startswith(("~", "."))
        or re.match(r"^[A-Za-z]:", value) is not None
        or "\x00" in value
    )


def _check_value(
    node_id: str, class_type: str, spec: InputSpec, value: Any
) -> ValidationIssue | None:
    where = f"node {node_id} ({class_type})"

    def issue(code: str, text: str) -> ValidationIssue:
        return ValidationIssue(code, node_id, class_type, spec.name, f"{where}: {text}")

    if spec.type == "COMBO":
        options = list(spec.options or ())
        if value not in options:
            what = f"{spec.name} {value!r} is not available on the server"
            close = difflib.get_close_matches(str(value), [str(o) for o in options], n=3)
            hint = f"closest: {', '.join(close)}; " if close else ""
            return issue("value_not_in_list", f"{what} ({hint}choices: {_listed(options)})")
        return None
    if spec.type in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return issue("invalid_input_type", f"{spec.name} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            return issue("invalid_input_type", f"{spec.name} must be a finite number")
        if spec.type == "INT" and isinstance(value, float) and not value.is_integer():
            return issue("invalid_input_type", f"{spec.name} must be a whole number, got {value}")
        if spec.min is not None and value < spec.min:
            return issue(
                "value_smaller_than_min", f"{spec.name} {value:g} is below the minimum {spec.min:g}"
            )
        if spec.max is not None and value > spec.max:
            return issue(
                "value_bigger_than_max", f"{spec.name} {value:g} is above the maximum {spec.max:g}"
            )
        return None
    if spec.type == "BOOLEAN" and not isinstance(value, bool):
        return issue("invalid_input_type", f"{spec.name} must be true or false, got {value!r}")
    if spec.type == "STRING" and not isinstance(value, str):
        return issue("invalid_input_type", f"{spec.name} must be text, got {value!r}")
    return None


def validate(workflow: Workflow, server: ServerInfo) -> list[ValidationIssue]:
    """Every reason the server (or the studio's rules) would refuse ``workflow``."""
    issues: list[ValidationIssue] = []
    allowed = whitelist()
    file_inputs = set(rules()["file_inputs"]["names"])
    if not isinstance(workflow, dict) or not workflow:
        return [ValidationIssue("invalid_prompt", "", "", None, "the workflow has no nodes")]
    has_output = False
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            issues.append(
                ValidationIssue(
                    "invalid_prompt", str(node_id), "", None, f"node {node_id} has no class_type"
                )
            )
            continue
        class_type = node["class_type"]
        inputs = node.get("inputs") or {}
        spec = server.node(class_type)
        if spec is None:
            pack = node_pack(class_type)
            hint = f" (it comes from the custom nodes {pack})" if pack else ""
            issues.append(
                ValidationIssue(
                    "unknown_node",
                    node_id,
                    class_type,
                    None,
                    f"node {node_id}: the server has no node type {class_type}{hint}",
                )
            )
            continue
        if class_type not in allowed:
            issues.append(
                ValidationIssue(
                    "not_whitelisted",
                    node_id,
                    class_type,
                    None,
                    f"node {node_id}: {class_type} is not on the studio's list of allowed nodes",
                )
            )
            continue
        has_output = has_output or spec.output_node
        for name in spec.required_inputs():
            if name not in inputs:
                issues.append(
                    ValidationIssue(
                        "required_input_missing",
                        node_id,
                        class_type,
                        name,
                        f"node {node_id} ({class_type}): required input {name} is missing",
                    )
                )
        for name, value in inputs.items():
            input_spec = spec.inputs.get(name)
            if is_link(value):
                source = workflow.get(value[0])
                if not isinstance(source, dict) or not isinstance(source.get("class_type"), str):
                    issues.append(
                        ValidationIssue(
                            "bad_link",
                            node_id,
                            class_type,
                            name,
                            f"node {node_id} ({class_type}): {name} is linked to node "
                            f"{value[0]}, which does not exist",
                        )
                    )
                    continue
                source_spec = server.node(source["class_type"])
                if source_spec is None:
                    continue  # reported on the source node itself
                if not 0 <= value[1] < len(source_spec.outputs):
                    issues.append(
                        ValidationIssue(
                            "bad_link",
                            node_id,
                            class_type,
                            name,
                            f"node {node_id} ({class_type}): {name} takes output {value[1]} of "
                            f"node {value[0]} ({source['class_type']}), which has "
                            f"{len(source_spec.outputs)} outputs",
                        )
                    )
                    continue
                produced = source_spec.outputs[value[1]]
                if (
                    input_spec is not None
                    and not input_spec.is_widget
                    and "*" not in (produced, input_spec.type)
                    and produced not in input_spec.type.split(",")
                ):
                    issues.append(
                        ValidationIssue(
                            "return_type_mismatch",
                            node_id,
                            class_type,
                            name,
                            f"node {node_id} ({class_type}): {name} needs {input_spec.type} but "
                            f"node {value[0]} gives {produced}",
                        )
                    )
                continue
            if input_spec is None:
                continue  # ComfyUI ignores inputs a node does not declare
            if name in file_inputs and isinstance(value, str) and _bad_file_name(value):
                issues.append(
                    ValidationIssue(
                        "path_in_filename",
                        node_id,
                        class_type,
                        name,
                        f"node {node_id} ({class_type}): {name} {value!r} must be a plain file "
                        "name, without folders or '..'",
                    )
                )
                continue
            if not input_spec.is_widget:
                issues.append(
                    ValidationIssue(
                        "invalid_input_type",
                        node_id,
                        class_type,
                        name,
                        f"node {node_id} ({class_type}): {name} must be linked to a "
                        f"{input_spec.type} output, got the value {value!r}",
                    )
                )
                continue
            problem = _check_value(node_id, class_type, input_spec, value)
            if problem is not None:
                issues.append(problem)
    if not has_output and not any(i.code in ("unknown_node", "not_whitelisted") for i in issues):
        issues.append(
            ValidationIssue(
                "prompt_no_outputs",
                "",
                "",
                None,
                "the workflow has no output node (SaveImage, SaveAnimatedWEBP, ...)",
            )
        )
    return issues


def check(workflow: Workflow, server: ServerInfo) -> Workflow:
    """Return ``workflow`` if it validates, else raise WorkflowValidationError."""
    issues = validate(workflow, server)
    if issues:
        raise WorkflowValidationError(issues)
    return workflow

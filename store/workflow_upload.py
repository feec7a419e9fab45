"""What a person uploaded, as a template or a refusal they can act on (``prepare``).

A UI-format graph that cannot be converted (a broken link, or no server to read the node
list from), node types the studio's whitelist does not allow (named), no prompt to fill:
each gets its own sentence. Kept apart from the server check (``workflow_check``) and the
table (``workflow_store``): this needs neither a ComfyUI server nor the database, and
``check_whitelist`` is also what a stored workflow passes again each time it is used.
"""

from __future__ import annotations

import math
import re
from typing import Any

from creative_studio.core.errors import InvalidInputError
from creative_studio.store.workflow_names import check_name, template_name
from creative_studio.workflows.detection import template_from_workflow
from creative_studio.workflows.server_info import ServerInfo, Workflow, whitelist
from creative_studio.workflows.spec import TemplateSpec
from creative_studio.workflows.ui_format import from_ui_format

__all__ = ["check_whitelist", "parse_workflow", "prepare"]

# Node ids as ComfyUI writes them: "12", or "12:3" for a node inside a subgraph. Anything
# else (a "." would break "node.input" targets) is refused before detection reads it.
_NODE_ID = re.compile(r"[0-9A-Za-z_-]{1,32}(:[0-9A-Za-z_-]{1,32}){0,8}")


def parse_workflow(workflow: Any) -> Workflow:
    """The uploaded JSON as an API-format workflow, or a refusal that says what to do.

    ComfyUI has two exports: "Save" writes the UI format (``nodes`` and ``links`` with
    canvas positions), "Export (API)" writes what the server runs (``{id: {class_type,
    inputs}}``). People pick the wrong one all the time, so that case gets its own answer.
    ``{"prompt": {...}}`` (the body of a ``POST /prompt``) is accepted too.
    """
    if isinstance(workflow, dict) and isinstance(workflow.get("prompt"), dict):
        workflow = workflow["prompt"]
    if isinstance(workflow, dict) and (
        isinstance(workflow.get("nodes"), list) or "last_node_id" in workflow
    ):
        raise InvalidInputError(
            "This is ComfyUI's UI format (the file 'Save' writes, with \"nodes\" and "
            '"links"). The studio needs the API format: in ComfyUI choose Workflow > Export '
            "(API) (or 'Save (API)' with dev mode on) and upload that file instead."
        )
    if not isinstance(workflow, dict) or not workflow:
        raise InvalidInputError(
            "A workflow is a JSON object of nodes in ComfyUI's API format "
            '({"3": {"class_type": "KSampler", "inputs": {...}}, ...}).'
        )
    for node_id, node in workflow.items():
        if not _NODE_ID.fullmatch(node_id):
            raise InvalidInputError(
                f"Node id {node_id!r} is not one ComfyUI writes (digits, or digits joined "
                "by ':' inside subgraphs)."
            )
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise InvalidInputError(
                f"Node {node_id!r} has no class_type: is this ComfyUI's API format?"
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise InvalidInputError(f"Node {node_id!r}: inputs must be an object.")
        if not isinstance(node.get("_meta", {}), dict):
            raise InvalidInputError(f"Node {node_id!r}: _meta must be an object.")
        for input_name, value in node.get("inputs", {}).items():
            if not _plain_numbers(value):
                raise InvalidInputError(
                    f"Node {node_id!r} input {input_name!r}: numbers must be finite and "
                    "within 64 bits, as ComfyUI's inputs are."
                )
    return workflow


def _plain_numbers(value: Any, depth: int = 0) -> bool:
    """No NaN, infinity or integer beyond 64 bits anywhere in an input value.

    JSON parsers accept them, but no ComfyUI input does, and they would only fail later
    in less readable places (formatting a bound, storing the JSON).
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return -(2**64) < value < 2**64
    if isinstance(value, float):
        return math.isfinite(value)
    if depth > 20:
        return False
    if isinstance(value, list):
        return all(_plain_numbers(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(_plain_numbers(item, depth + 1) for item in value.values())
    return True


def check_whitelist(workflow: Workflow) -> None:
    """Refuse node types the studio does not run, naming each one and where it is.

    The whitelist is data (``workflows/rules.toml``) and is never extended here: a
    person's workflow is exactly where a model-writing or paid-API node would come from.
    """
    allowed = whitelist()
    refused: dict[str, list[str]] = {}
    for node_id, node in workflow.items():
        class_type = str(node.get("class_type"))
        if class_type not in allowed:
            refused.setdefault(class_type, []).append(str(node_id))
    if not refused:
        return
    listed = ", ".join(
        f"{class_type} (node{'s' if len(ids) > 1 else ''} {', '.join(ids)})"
        for class_type, ids in refused.items()
    )
    one = len(refused) == 1
    raise InvalidInputError(
        f"This workflow uses {'a node type' if one else 'node types'} the studio does not "
        f"allow: {listed}. Only the node types listed in workflows/rules.toml [whitelist] "
        "run (no nodes that write models or files to arbitrary places, load files by path, "
        "or call paid cloud APIs); remove or replace "
        f"{'it' if one else 'them'} in ComfyUI and export again."
    )


def prepare(name: str, workflow: Any, server: ServerInfo | None = None) -> TemplateSpec:
    """An uploaded workflow as a template named ``custom:<name>``, parameters detected.

    ``server`` (the connected ComfyUI) is needed only for a UI-format upload.
    """
    cleaned = check_name(name)
    api = parse_workflow(from_ui_format(workflow, server))
    check_whitelist(api)
    spec = template_from_workflow(template_name(cleaned), api)
    spec.title = f"your workflow {cleaned}"
    return spec

"""ComfyUI's UI format (what "Save" writes) turned into the API format the server runs.

The frontend does this itself before every queue (``graphToPrompt``); the studio has to
do it without a browser, for ComfyUI's official templates (saved in the UI format, many
with subgraphs) and for workflows people upload as they saved them. The result is what
the frontend would queue:

* subgraphs expanded (nested too), inner nodes as ``"<instance>:<inner>"``;
* notes, reroutes and primitive nodes dropped (reroutes followed through, a primitive's
  value written into the inputs it feeds);
* muted nodes (mode 2) left out, bypassed nodes (mode 4) left out with each output
  passed the input of the same slot, or else of the same type;
* ``widgets_values`` mapped to input names in the order the server declares them
  (``/object_info``: required then optional, widgets only), skipping the values the
  frontend keeps for its own widgets: the ``control_after_generate`` choice after a seed
  ("randomize") and the upload button after an image or video picker;
* links as ``[node_id, output_index]``; inputs linked to nodes that were left out removed.

Node types the server does not have keep their class_type and links (their widget values
cannot be named without the server's declaration): the validator then names them.
"""

from __future__ import annotations

from typing import Any

from creative_studio.workflows.server_info import ServerInfo, Workflow
from creative_studio.workflows.ui_subgraphs import (
    BYPASS,
    MUTED,
    VIRTUAL_TYPES,
    Link,
    UIConversionError,
    Value,
    flatten,
    resolve_input,
)

__all__ = ["UIConversionError", "from_ui_format", "is_ui_format", "ui_to_api", "widget_names"]

_WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
_UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
_SEED_NAMES = ("seed", "noise_seed")


def is_ui_format(data: Any) -> bool:
    """A saved canvas (``nodes`` as a list), as opposed to ``{id: {class_type, inputs}}``."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def _declared(raw: dict[str, Any]) -> list[tuple[str, Any]]:
    """A node type's required then optional inputs, in the order the server declares them."""
    sections = raw.get("input") or {}
    order = raw.get("input_order") or {}
    found: list[tuple[str, Any]] = []
    for section in ("required", "optional"):
        specs = sections.get(section) or {}
        names = [n for n in order.get(section) or [] if n in specs]
        names += [n for n in specs if n not in names]
        found.extend((name, specs[name]) for name in names)
    return found


def widget_names(raw: dict[str, Any]) -> list[tuple[str, int]]:
    """The widgets the frontend creates for a node type: (input name, extra values after it).

    An input is a widget when its type is a primitive or a combo and it is not
    ``forceInput``. The extra count is the frontend-only widgets that follow it in
    ``widgets_values``: the ``control_after_generate`` combo (flagged by the server, or
    an INT named seed / noise_seed when the flag is absent) and upload buttons.
    """
    widgets: list[tuple[str, int]] = []
    for name, spec in _declared(raw):
        head = spec[0] if isinstance(spec, list | tuple) and spec else spec
        config = spec[1] if isinstance(spec, list | tuple) and len(spec) > 1 else {}
        config = config if isinstance(config, dict) else {}
        kind = "COMBO" if isinstance(head, list | tuple) else str(head)
        if kind not in _WIDGET_TYPES or config.get("forceInput"):
            continue
        extra = 0
        control = config.get("control_after_generate")
        if control is None:
            control = kind == "INT" and name in _SEED_NAMES
        if control:
            extra += 1
        if any(config.get(flag) for flag in _UPLOAD_FLAGS):
            extra += 1
        widgets.append((name, extra))
    return widgets


def _wrap(value: Any) -> Any:
    """A list value would read as a link: the frontend boxes it, the server unboxes it."""
    return {"__value__": value} if isinstance(value, list) else value


def _widget_inputs(node: dict[str, Any], raw: dict[str, Any] | None) -> dict[str, Any]:
    values = node.get("widgets_values")
    if raw is None or values is None:
        return {}
    names = widget_names(raw)
    if isinstance(values, dict):  # some node packs save their widgets by name
        return {name: _wrap(values[name]) for name, _ in names if name in values}
    if not isinstance(values, list):
        return {}
    inputs: dict[str, Any] = {}
    index = 0
    for name, extra in names:
        if index >= len(values):
            break
        inputs[name] = _wrap(values[index])
        index += 1 + extra
    return inputs


def _title(node: dict[str, Any], raw: dict[str, Any] | None) -> str:
    title = node.get("title")
    if isinstance(title, str) and title:
        return title
    if raw and isinstance(raw.get("display_name"), str):
        return str(raw["display_name"])
    return str(node.get("type"))


def ui_to_api(workflow: dict[str, Any], server: ServerInfo) -> Workflow:
    """The API-format workflow the frontend would queue for this UI-format ``workflow``.

    Raises ``UIConversionError`` (a 422 for the person) when the graph is broken: a link
    to a node that is not there, a subgraph that contains itself, a malformed node.
    Group nodes (the frontend's pre-subgraph feature) are refused with what to do.
    """
    if not is_ui_format(workflow):
        raise UIConversionError("This is not ComfyUI's UI format (it has no list of nodes).")
    if (workflow.get("extra") or {}).get("groupNodes"):
        raise UIConversionError(
            "This workflow uses group nodes, which the studio cannot expand: in ComfyUI "
            "convert them to subgraphs (or export with Workflow > Export (API)) first."
        )
    nodes = flatten(workflow)
    output: Workflow = {}
    for ex in nodes.values():
        if ex.definition is not None or ex.type in VIRTUAL_TYPES:
            continue
        if ex.mode in (MUTED, BYPASS):
            continue
        raw = server.raw.get(ex.type)
        inputs = _widget_inputs(ex.node, raw if isinstance(raw, dict) else None)
        for slot, declared in enumerate(ex.inputs):
            resolved = resolve_input(nodes, ex, slot)
            name = str(declared.get("name"))
            if isinstance(resolved, Value):
                inputs[name] = _wrap(resolved.value)
            elif isinstance(resolved, Link):
                inputs[name] = [resolved.node_id, resolved.slot]
        output[ex.id] = {
            "inputs": inputs,
            "class_type": ex.type,
            "_meta": {"title": _title(ex.node, raw if isinstance(raw, dict) else None)},
        }
    for node in output.values():
        for name, value in list(node["inputs"].items()):
            if (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], str)
                and value[0] not in output
            ):
                del node["inputs"][name]
    if not output:
        raise UIConversionError("The workflow has no node that ComfyUI would run.")
    return output


def from_ui_format(workflow: Any, server: ServerInfo | None) -> Any:
    """An uploaded workflow: UI format converted to the API format, anything else as it came.

    The conversion needs the server's node declarations (they give the order of each
    node's widget values), so without a server answering it is refused with what to do.
    """
    if not is_ui_format(workflow):
        return workflow
    if server is None:
        raise UIConversionError(
            "This is ComfyUI's UI format (the file 'Save' writes). Converting it needs the "
            "connected ComfyUI's node list, and ComfyUI did not answer: try again once it "
            "runs, or upload what Workflow > Export (API) writes instead."
        )
    try:
        return ui_to_api(workflow, server)
    except UIConversionError as error:
        raise UIConversionError(
            f"This workflow in ComfyUI's UI format cannot be converted: {error.message} "
            "Fix it in ComfyUI, or upload what Workflow > Export (API) writes instead."
        ) from None

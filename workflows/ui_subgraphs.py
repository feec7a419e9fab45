"""The shape of a UI-format workflow: its nodes flattened through subgraphs, links followed.

ComfyUI's frontend saves the canvas ("Save"), not what the server runs: nodes with
positions, links kept apart, subgraph definitions under ``definitions.subgraphs`` whose
instances appear as nodes of the definition's id. Before a prompt is queued the frontend
flattens that (``graphToPrompt`` with its ``ExecutableNodeDTO``): every node inside a
subgraph instance gets the id ``"<instance>:<inner>"`` (nested: ``"a:b:c"``), and each
input is followed back through reroutes, bypassed nodes and subgraph borders to the node
that really produces it — or to a value (a primitive node, a widget promoted onto a
subgraph instance). This module is that part; workflows/ui_format.py adds the widget
values and writes the API format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from creative_studio.core.errors import InvalidInputError

__all__ = [
    "BYPASS",
    "MUTED",
    "VIRTUAL_TYPES",
    "Executable",
    "Link",
    "UIConversionError",
    "Value",
    "flatten",
    "resolve_input",
]

MUTED = 2  # LGraphEventMode.NEVER: left out of the prompt
BYPASS = 4  # LGraphEventMode.BYPASS: left out, its inputs passed through to its outputs
SUBGRAPH_INPUT = -10  # the id of a subgraph's input node inside its definition
SUBGRAPH_OUTPUT = -20
# Frontend-only nodes: never sent to the server.
VIRTUAL_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
_MAX_DEPTH = 16


class UIConversionError(InvalidInputError):
    """The UI-format workflow cannot be turned into what ComfyUI runs (a broken graph)."""


@dataclass(frozen=True)
class Value:
    """An input resolved to a value rather than a link (primitive node, promoted widget)."""

    value: Any


@dataclass(frozen=True)
class Link:
    """An input resolved to output ``slot`` of the executable node ``node_id``."""

    node_id: str
    slot: int


@dataclass
class _Scope:
    """One graph: the root workflow, or one subgraph definition."""

    nodes: dict[str, dict[str, Any]]
    links: dict[int, tuple[str, int, str, int, str]]  # id -> origin, slot, target, slot, type
    definition: dict[str, Any] | None = None


@dataclass
class Executable:
    """One node as the flattened graph sees it (a node inside an instance has a path)."""

    id: str
    node: dict[str, Any]
    scope: _Scope
    path: tuple[str, ...]
    instance: Executable | None  # the subgraph instance node this one sits in
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    definition: dict[str, Any] | None = None  # set when this node is a subgraph instance
    inner: _Scope | None = None  # the definition's graph, for an instance

    @property
    def type(self) -> str:
        return str(self.node.get("type") or "")

    @property
    def mode(self) -> int:
        """The node's own mode, or that of a muted / bypassed instance around it."""
        own = self.node.get("mode") or 0
        if own in (MUTED, BYPASS) or self.instance is None:
            return int(own)
        outer = self.instance.mode
        return outer if outer in (MUTED, BYPASS) else int(own)


def _key(node_id: Any) -> str:
    return str(node_id)


def _links(raw: Any) -> dict[int, tuple[str, int, str, int, str]]:
    """Links as the root graph writes them (lists) or as subgraphs do (objects)."""
    links: dict[int, tuple[str, int, str, int, str]] = {}
    for link in raw or []:
        try:
            if isinstance(link, list):
                link_id, origin, origin_slot, target, target_slot, kind = link[:6]
            else:
                link_id, origin, origin_slot = link["id"], link["origin_id"], link["origin_slot"]
                target, target_slot, kind = link["target_id"], link["target_slot"], link["type"]
            links[int(link_id)] = (
                _key(origin),
                int(origin_slot),
                _key(target),
                int(target_slot),
                str(kind),
            )
        except (KeyError, ValueError, TypeError):
            raise UIConversionError(f"A link of the workflow is malformed: {link!r}.") from None
    return links


def _scope(graph: dict[str, Any], definition: dict[str, Any] | None = None) -> _Scope:
    nodes: dict[str, dict[str, Any]] = {}
    for node in graph.get("nodes") or []:
        if not isinstance(node, dict) or "id" not in node or not isinstance(node.get("type"), str):
            raise UIConversionError(f"A node of the workflow has no id or type: {node!r:.120}.")
        nodes[_key(node["id"])] = node
    return _Scope(nodes, _links(graph.get("links")), definition)


def _instance_inputs(node: dict[str, Any], definition: dict[str, Any]) -> list[dict[str, Any]]:
    """An instance's inputs as the definition declares them, links matched by name.

    The saved instance may list fewer inputs than its definition (the frontend rebuilds
    them from the definition when it loads the workflow), so the definition is the truth.
    """
    saved = {str(i.get("name")): i for i in node.get("inputs") or [] if isinstance(i, dict)}
    inputs = []
    for declared in definition.get("inputs") or []:
        name = str(declared.get("name"))
        own = saved.get(name, {})
        inputs.append(
            {"name": name, "type": declared.get("type", "*"), "link": own.get("link"), **own}
        )
    return inputs


def flatten(workflow: dict[str, Any]) -> dict[str, Executable]:
    """Every node of the workflow, subgraph instances expanded (nested too), by execution id."""
    definitions = {
        str(d.get("id")): d
        for d in (workflow.get("definitions") or {}).get("subgraphs") or []
        if isinstance(d, dict)
    }
    scopes = {name: _scope(d, d) for name, d in definitions.items()}
    found: dict[str, Executable] = {}

    def add(scope: _Scope, path: tuple[str, ...], instance: Executable | None) -> None:
        if len(path) > _MAX_DEPTH:
            raise UIConversionError("Subgraphs are nested too deep (or contain themselves).")
        for node_id, node in scope.nodes.items():
            exec_id = ":".join((*path, node_id))
            ex = Executable(exec_id, node, scope, path, instance)
            definition = definitions.get(ex.type)
            if definition is not None:
                ex.definition = definition
                ex.inner = scopes[ex.type]
                ex.inputs = _instance_inputs(node, definition)
                ex.outputs = [dict(o) for o in definition.get("outputs") or []]
            else:
                ex.inputs = [i for i in node.get("inputs") or [] if isinstance(i, dict)]
                ex.outputs = [o for o in node.get("outputs") or [] if isinstance(o, dict)]
            found[exec_id] = ex
            if definition is not None:
                add(scopes[ex.type], (*path, node_id), ex)

    add(_scope(workflow), (), None)
    return found


# --------------------------------------------------------------------------- resolving links


def _compatible(a: str, b: str) -> bool:
    if a in ("*", "") or b in ("*", ""):
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


def _bypass_slot(ex: Executable, slot: int, wanted: str) -> int | None:
    """Which input a bypassed node passes to output ``slot``: same slot, else same type."""
    if not ex.inputs:
        return None
    if wanted in ("*", ""):
        return slot if slot < len(ex.inputs) else 0
    produced = str(ex.outputs[slot].get("type", "*")) if slot < len(ex.outputs) else "*"
    if slot < len(ex.inputs):
        own = str(ex.inputs[slot].get("type", "*"))
        if _compatible(own, produced) and _compatible(own, wanted):
            return slot
    for index, candidate in enumerate(ex.inputs):
        if str(candidate.get("type")) == wanted:
            return index
    for index, candidate in enumerate(ex.inputs):
        kind = str(candidate.get("type", "*"))
        if _compatible(kind, produced) and _compatible(kind, wanted):
            return index
    return None


def _promoted_value(instance: Executable, def_slot: int) -> Value | None:
    """The value a subgraph instance holds for an unlinked widget input, if it saved one.

    Older frontends saved one value per definition input that feeds a widget inside, in
    the definition's order; newer ones (``proxyWidgets``) save none and the inner node's
    own widget value applies — which the caller keeps when this returns None.
    """
    saved = instance.node.get("widgets_values")
    definition = instance.definition or {}
    if not isinstance(saved, list) or not saved or instance.inner is None:
        return None
    scope_links = instance.inner.links
    inner_nodes = instance.inner.nodes
    index = 0
    for position, declared in enumerate(definition.get("inputs") or []):
        feeds_widget = False
        for link_id in declared.get("linkIds") or []:
            link = scope_links.get(int(link_id))
            target = inner_nodes.get(link[2]) if link else None
            if target is None or link is None:
                continue
            target_inputs = target.get("inputs") or []
            if link[3] < len(target_inputs) and target_inputs[link[3]].get("widget"):
                feeds_widget = True
            break
        if not feeds_widget:
            continue
        if position == def_slot:
            return Value(saved[index]) if index < len(saved) else None
        index += 1
    return None


def resolve_input(
    nodes: dict[str, Executable], ex: Executable, slot: int, seen: set[str] | None = None
) -> Value | Link | None:
    """Where input ``slot`` of ``ex`` really comes from; None when nothing is connected."""
    seen = set() if seen is None else seen
    marker = f"{ex.id}[I]{slot}"
    if marker in seen:
        raise UIConversionError(f"Node {ex.id}: its input {slot} loops back on itself.")
    seen.add(marker)
    if slot >= len(ex.inputs):
        return None
    link_id = ex.inputs[slot].get("link")
    if link_id is None:
        return None
    link = ex.scope.links.get(int(link_id))
    if link is None:
        raise UIConversionError(
            f"Node {ex.id} ({ex.type}): input {ex.inputs[slot].get('name')!r} names link "
            f"{link_id}, which the workflow does not have."
        )
    origin, origin_slot = link[0], link[1]
    if origin == str(SUBGRAPH_INPUT) and ex.instance is not None:
        instance = ex.instance
        if origin_slot >= len(instance.inputs):
            raise UIConversionError(f"Subgraph instance {instance.id} has no input {origin_slot}.")
        if instance.inputs[origin_slot].get("link") is None:
            return _promoted_value(instance, origin_slot)
        return resolve_input(nodes, instance, origin_slot, seen)
    source = nodes.get(":".join((*ex.path, origin)))
    if source is None:
        raise UIConversionError(
            f"Node {ex.id} ({ex.type}): input {ex.inputs[slot].get('name')!r} is linked to "
            f"node {origin}, which is not in the workflow."
        )
    return _resolve_output(nodes, source, origin_slot, str(ex.inputs[slot].get("type", "*")), seen)


def _resolve_output(
    nodes: dict[str, Executable], ex: Executable, slot: int, wanted: str, seen: set[str]
) -> Value | Link | None:
    marker = f"{ex.id}[O]{slot}"
    if marker in seen:
        raise UIConversionError(f"Node {ex.id}: its output {slot} loops back on itself.")
    seen.add(marker)
    if ex.node.get("mode") == BYPASS:
        index = _bypass_slot(ex, slot, wanted)
        return None if index is None else resolve_input(nodes, ex, index, seen)
    if ex.definition is not None and ex.inner is not None:
        outputs = ex.definition.get("outputs") or []
        if slot >= len(outputs) or not outputs[slot].get("linkIds"):
            return None
        inner = ex.inner.links.get(int(outputs[slot]["linkIds"][0]))
        if inner is None:
            return None
        if inner[0] == str(SUBGRAPH_INPUT):  # an input wired straight to an output
            return resolve_input(nodes, ex, inner[1], seen)
        source = nodes.get(":".join((*ex.path, _key(ex.node["id"]), inner[0])))
        return None if source is None else _resolve_output(nodes, source, inner[1], wanted, seen)
    if ex.type == "PrimitiveNode":
        values = ex.node.get("widgets_values")
        return Value(values[0]) if isinstance(values, list) and values else None
    if ex.type in VIRTUAL_TYPES:
        return resolve_input(nodes, ex, slot, seen) if slot < len(ex.inputs) else None
    return Link(ex.id, slot)

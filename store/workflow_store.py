"""Workflows people exported from ComfyUI, kept in Postgres and used as templates.

A person drops in a workflow saved with ComfyUI's "Export (API)" — or with plain "Save"
(the UI format), converted with the connected server's node list as ComfyUI's frontend
would (``workflows.ui_format``) — the studio finds its prompt, sampler, size and seed
inputs (``workflows.catalog.detect_parameters``), stores it in ``user_workflows`` and
from then on a plan whose template is ``custom:<name>`` is built from it, filled from the
plan and validated like every built-in template.

Three things live here:

* ``prepare`` turns what a person uploaded into a template, or refuses it with a sentence
  they can act on: a UI-format graph that cannot be converted (a broken link, or no
  server to read the node list from), node types the studio's whitelist does not allow
  (named), no prompt to fill.
* ``check_on_server`` builds the workflow once for the connected server, the same way a
  generation will, so problems are reported per node at upload time instead of at the
  first generation; what the builder would change (a missing checkpoint swapped for an
  installed one) comes back as warnings.
* ``UserWorkflowStore``: typed records over the table, ``NotFoundError`` for unknown ids
  and names, ``InvalidInputError`` for what the schema refuses, a 409 for a name in use,
  and ``catalog_for`` which the generation service uses to resolve ``custom:<name>``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, ValidationError

from creative_studio.core.errors import InvalidInputError, InvalidStateError, NotFoundError
from creative_studio.workflows.builder import build
from creative_studio.workflows.catalog import Catalog
from creative_studio.workflows.detection import template_from_workflow
from creative_studio.workflows.plan import TechnicalPlan
from creative_studio.workflows.server_info import (
    ServerInfo,
    Workflow,
    is_link,
    rules,
    split_target,
    whitelist,
)
from creative_studio.workflows.spec import TemplateSpec
from creative_studio.workflows.ui_format import from_ui_format

__all__ = [
    "CUSTOM_PREFIX",
    "NAME_PATTERN",
    "UserWorkflowRecord",
    "UserWorkflowStore",
    "WorkflowNameTakenError",
    "check_name",
    "check_on_server",
    "check_whitelist",
    "parse_workflow",
    "prepare",
    "template_name",
    "workflow_name",
]

CUSTOM_PREFIX = "custom:"
# The same characters graph.state.CUSTOM_TEMPLATE_PATTERN allows after "custom:", and the
# migration's check constraint: a name that is stored can always be named by a plan.
NAME_PATTERN = r"[A-Za-z0-9 _.-]{1,80}"
_NAME = re.compile(NAME_PATTERN)
# Node ids as ComfyUI writes them: "12", or "12:3" for a node inside a subgraph. Anything
# else (a "." would break "node.input" targets) is refused before detection reads it.
_NODE_ID = re.compile(r"[0-9A-Za-z_-]{1,32}(:[0-9A-Za-z_-]{1,32}){0,8}")
_MAX_PAGE = 200
# Plan fields whose value the upload check takes from the workflow itself (so the check
# builds the workflow as exported, not with the plan defaults).
_NOT_FROM_WORKFLOW = frozenset({"filename_prefix", "init_image"})


class WorkflowNameTakenError(InvalidStateError):
    """Another uploaded workflow already has this name (plans refer to workflows by name)."""

    code = "name_taken"


# --------------------------------------------------------------------------- names


def template_name(name: str) -> str:
    """The plan template that runs the uploaded workflow ``name``."""
    return f"{CUSTOM_PREFIX}{name}"


def workflow_name(template: str) -> str | None:
    """``custom:<name>`` -> ``name``; None for a built-in template."""
    return template[len(CUSTOM_PREFIX) :] if template.startswith(CUSTOM_PREFIX) else None


def check_name(name: Any) -> str:
    """A workflow name as plans will write it; surrounding spaces are not part of it."""
    cleaned = name.strip() if isinstance(name, str) else ""
    if not _NAME.fullmatch(cleaned):
        raise InvalidInputError(
            "A workflow name is 1-80 letters, digits, spaces, '.', '_' or '-' "
            f"(plans use it as 'custom:<name>'), got {name!r}."
        )
    return cleaned


# --------------------------------------------------------------------------- the upload


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


def _current_values(spec: TemplateSpec) -> dict[str, Any]:
    """Each parameter's value as the workflow was exported (its first target)."""
    values: dict[str, Any] = {}
    for param, targets in spec.parameters.items():
        if not targets or param in _NOT_FROM_WORKFLOW:
            continue
        node_id, input_name = split_target(targets[0])
        value = spec.workflow[node_id].get("inputs", {}).get(input_name)
        if value is not None and not is_link(value):
            values[param] = value
    return values


def _trial_plan(spec: TemplateSpec) -> tuple[TechnicalPlan, dict[str, Any]]:
    """A plan that reproduces the exported workflow, plus overrides for what a plan cannot hold.

    The plan's own bounds are narrower than ComfyUI's (steps <= 150, batch <= 8, ...):
    a value outside them still belongs to the workflow, so it is set directly as a
    template parameter instead of being refused by the plan's validation.
    """
    current = _current_values(spec)
    fields: dict[str, Any] = {}
    for field_name, param in rules()["plan"].items():
        if isinstance(param, str) and param in current:
            fields[field_name] = current[param]
    overrides: dict[str, Any] = {}
    placeholder = "workflow check"
    fields["positive_prompt"] = fields.get("positive_prompt") or placeholder
    for _ in range(len(fields) + 1):
        try:
            return TechnicalPlan.model_validate(fields), overrides
        except ValidationError as error:
            bad = {str(e["loc"][0]) for e in error.errors() if e["loc"]} & fields.keys()
            if not bad:
                raise
            for field_name in bad:
                value = fields.pop(field_name)
                if field_name != "checkpoint":  # a plan needs some checkpoint name
                    overrides[rules()["plan"][field_name]] = value
            fields.setdefault("positive_prompt", placeholder)
    raise InvalidInputError("The workflow's values cannot be read as a plan.")


def check_on_server(spec: TemplateSpec, server: ServerInfo) -> list[str]:
    """Build the workflow for ``server`` as a generation would; return what would change.

    Raises ``WorkflowValidationError`` with one sentence per problem node (missing node
    types with the pack to install, unknown model files with the closest installed ones,
    values out of range, broken links) — the builder's own validation, so the upload and
    the generation never disagree.
    """
    plan, overrides = _trial_plan(spec)
    built = build(
        plan,
        server,
        template=spec.name,
        templates=Catalog({spec.name: spec}),
        overrides=overrides,
        allow_fallback=False,
    )
    return list(built.notes)


# --------------------------------------------------------------------------- the store


class UserWorkflowRecord(BaseModel):
    """One stored workflow (a row of ``user_workflows``)."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    name: str
    workflow: dict[str, Any]
    parameters: dict[str, list[str]]
    created_at: datetime

    @property
    def template(self) -> str:
        return template_name(self.name)

    def spec(self) -> TemplateSpec:
        """The template, filled with the parameters detected at upload.

        The whitelist is checked again: ``rules.toml`` may have become stricter since the
        upload, and the store must never be a way around it.
        """
        check_whitelist(self.workflow)
        spec = template_from_workflow(self.template, self.workflow)
        spec.title = f"your workflow {self.name}"
        spec.parameters = {k: list(v) for k, v in self.parameters.items()}
        Catalog.check_spec(spec)
        return spec


def _uuid(value: Any) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value).strip())
    except (ValueError, AttributeError, TypeError):
        raise NotFoundError(f"No uploaded workflow with id {value!r} (not a valid id).") from None


class UserWorkflowStore:
    """CRUD over ``user_workflows`` on the studio's pool (one short statement per call)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def _fetch(self, query: str, params: Mapping[str, Any]) -> list[DictRow]:
        try:
            async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query, params)
                if cur.description is None:
                    return []
                return await cur.fetchall()
        except pg_errors.UniqueViolation:
            raise WorkflowNameTakenError(
                f"A workflow named {params.get('name')!r} already exists: delete it first "
                "(DELETE /api/workflows/{id}) or upload this one under another name."
            ) from None
        except pg_errors.CheckViolation as error:
            raise InvalidInputError(
                f"The workflow was refused by the database ({error.diag.constraint_name})."
            ) from None
        except psycopg.DataError as error:
            # e.g. a NUL character, which Postgres text and jsonb cannot hold.
            raise InvalidInputError(
                f"The workflow cannot be stored: {error.diag.message_primary}."
            ) from None

    async def create(
        self, name: str, workflow: Workflow, parameters: Mapping[str, list[str]]
    ) -> UserWorkflowRecord:
        rows = await self._fetch(
            "insert into user_workflows (name, workflow, parameters)"
            " values (%(name)s, %(workflow)s, %(parameters)s) returning *",
            {
                "name": check_name(name),
                "workflow": Jsonb(workflow),
                "parameters": Jsonb(dict(parameters)),
            },
        )
        return UserWorkflowRecord.model_validate(rows[0])

    async def get(self, workflow_id: UUID | str) -> UserWorkflowRecord:
        wid = _uuid(workflow_id)
        rows = await self._fetch("select * from user_workflows where id = %(id)s", {"id": wid})
        if not rows:
            raise NotFoundError(f"No uploaded workflow with id {wid}.")
        return UserWorkflowRecord.model_validate(rows[0])

    async def get_by_name(self, name: str) -> UserWorkflowRecord:
        rows = await self._fetch(
            "select * from user_workflows where name = %(name)s", {"name": name}
        )
        if not rows:
            raise NotFoundError(
                f"No uploaded workflow is named {name!r} (template {template_name(name)}): "
                "upload it (POST /api/workflows) or choose another template."
            )
        return UserWorkflowRecord.model_validate(rows[0])

    async def list_workflows(self, limit: int = 50, offset: int = 0) -> list[UserWorkflowRecord]:
        """Newest first; ``id`` breaks ties so pages never overlap."""
        if not 1 <= limit <= _MAX_PAGE or offset < 0:
            raise InvalidInputError(
                f"limit must be 1-{_MAX_PAGE} and offset not negative, got {limit}, {offset}."
            )
        rows = await self._fetch(
            "select * from user_workflows order by created_at desc, id desc"
            " limit %(limit)s offset %(offset)s",
            {"limit": limit, "offset": offset},
        )
        return [UserWorkflowRecord.model_validate(row) for row in rows]

    async def delete(self, workflow_id: UUID | str) -> None:
        wid = _uuid(workflow_id)
        rows = await self._fetch(
            "delete from user_workflows where id = %(id)s returning id", {"id": wid}
        )
        if not rows:
            raise NotFoundError(f"No uploaded workflow with id {wid}.")

    async def catalog_for(self, template: str, base: Catalog) -> Catalog:
        """``base`` plus the uploaded workflow a ``custom:<name>`` template names.

        Built-in templates need no database round trip: ``base`` itself is returned.
        """
        name = workflow_name(template)
        if name is None:
            return base
        spec = (await self.get_by_name(name)).spec()
        return Catalog({**base.templates, spec.name: spec})

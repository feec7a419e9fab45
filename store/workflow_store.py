"""Workflows people exported from ComfyUI, kept in Postgres and used as templates.

A person drops in a workflow saved with ComfyUI's "Export (API)" — or with plain "Save"
(the UI format), converted with the connected server's node list as ComfyUI's frontend
would (``workflows.ui_format``) — the studio finds its prompt, sampler, size and seed
inputs (``workflows.catalog.detect_parameters``), stores it in ``user_workflows`` and
from then on a plan whose template is ``custom:<name>`` is built from it, filled from the
plan and validated like every built-in template.

Three things, each in its own module, re-exported here:

* ``prepare`` (``workflow_upload``) turns what a person uploaded into a template, or
  refuses it with a sentence they can act on: a UI-format graph that cannot be converted
  (a broken link, or no server to read the node list from), node types the studio's
  whitelist does not allow (named), no prompt to fill.
* ``check_on_server`` (``workflow_check``) builds the workflow once for the connected
  server, the same way a generation will, so problems are reported per node at upload
  time instead of at the first generation; what the builder would change (a missing
  checkpoint swapped for an installed one) comes back as warnings.
* ``UserWorkflowStore`` (this module): typed records over the table, ``NotFoundError`` for
  unknown ids and names, ``InvalidInputError`` for what the schema refuses, a 409 for a
  name in use, and ``catalog_for`` which the generation service uses to resolve
  ``custom:<name>``. How a plan names a workflow is ``workflow_names``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict

from creative_studio.core.errors import InvalidInputError, InvalidStateError, NotFoundError
from creative_studio.store.workflow_check import check_on_server
from creative_studio.store.workflow_names import (
    CUSTOM_PREFIX,
    NAME_PATTERN,
    check_name,
    template_name,
    workflow_name,
)
from creative_studio.store.workflow_upload import check_whitelist, parse_workflow, prepare
from creative_studio.workflows.catalog import Catalog
from creative_studio.workflows.detection import template_from_workflow
from creative_studio.workflows.server_info import Workflow
from creative_studio.workflows.spec import TemplateSpec

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

_MAX_PAGE = 200


class WorkflowNameTakenError(InvalidStateError):
    """Another uploaded workflow already has this name (plans refer to workflows by name)."""

    code = "name_taken"


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

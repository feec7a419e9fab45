"""Workflows a person exported from ComfyUI: upload (detected and checked), list, read, delete.

An uploaded workflow becomes the template ``custom:<name>``. The upload answers with what
the studio found in it (which input is the prompt, the seed, the size...) so the person
can see at once whether detection understood their workflow, and it is checked against
the connected ComfyUI server right away rather than at the first generation.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from creative_studio.api.deps import StudioDep
from creative_studio.core.errors import InvalidInputError
from creative_studio.store.workflow_store import (
    NAME_PATTERN,
    UserWorkflowRecord,
    UserWorkflowStore,
    check_name,
    check_on_server,
    prepare,
)
from creative_studio.tools.comfyui import ComfyUIError
from creative_studio.workflows.server_info import ServerInfo
from creative_studio.workflows.ui_format import is_ui_format
from creative_studio.workflows.validation import WorkflowValidationError

router = APIRouter(prefix="/workflows", tags=["workflows"])

_MAX_PAGE = 200
_MAX_LISTED_ISSUES = 10


class WorkflowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The pattern is checked in code (store.workflow_names.check_name) so a wrong name gets
    # a sentence instead of a regular expression; it is documented here.
    name: str = Field(
        min_length=1,
        max_length=100,
        description=f"{NAME_PATTERN}; plans use the workflow as template 'custom:<name>'.",
        examples=["my portrait flow"],
    )
    workflow: dict[str, Any] = Field(
        description="The workflow as ComfyUI's Workflow > Export (API) writes it "
        '({"3": {"class_type": "KSampler", "inputs": {...}}, ...}), or as "Save" writes '
        "it (the UI format: nodes, links, subgraphs), converted with the connected "
        "server's node list and stored in the API format."
    )


class WorkflowOut(BaseModel):
    id: UUID
    name: str
    template: str = Field(description="What a plan's template field says to use it.")
    parameters: dict[str, str] = Field(
        description="Parameter -> the input it fills ('node_id.input'), e.g. "
        '{"positive_prompt": "12.text", "seed": "20.seed", "width": "31.width"}.'
    )
    targets: dict[str, list[str]] = Field(
        description="Every input each parameter fills (a workflow with two samplers gets "
        "the seed in both)."
    )
    created_at: datetime


class WorkflowCreated(WorkflowOut):
    warnings: list[str] = Field(
        description="What the studio will change to run it on the connected server "
        "(e.g. a missing checkpoint replaced), or that the server could not be asked."
    )
    checked_on_server: bool


class WorkflowDetail(WorkflowOut):
    workflow: dict[str, Any]


class WorkflowPage(BaseModel):
    items: list[WorkflowOut]
    limit: int
    offset: int


def _out(record: UserWorkflowRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "template": record.template,
        "parameters": {k: v[0] for k, v in record.parameters.items() if v},
        "targets": record.parameters,
        "created_at": record.created_at,
    }


def _store(studio: StudioDep) -> UserWorkflowStore:
    return UserWorkflowStore(studio.repository.pool)


@router.post("", status_code=status.HTTP_201_CREATED)
async def upload_workflow(body: WorkflowIn, studio: StudioDep) -> WorkflowCreated:
    """Store a workflow (API format, or UI format converted), with its parameters detected.

    Refused (422) when it is a UI-format graph that cannot be converted (or ComfyUI does
    not answer, which the conversion needs), uses a node type the studio does not
    allow, has no prompt to fill, or — when ComfyUI answers — cannot run on that server
    (one sentence per problem node). 409 when the name is taken.
    """
    name = check_name(body.name)
    ui_server: ServerInfo | None = None
    if is_ui_format(body.workflow):  # converting it needs the server's node list first
        with contextlib.suppress(ComfyUIError):
            ui_server = await studio.comfyui.object_info()
    spec = prepare(name, body.workflow, ui_server)
    warnings: list[str] = []
    checked = False
    try:
        server = ui_server or await studio.comfyui.object_info()
    except ComfyUIError as error:
        warnings.append(
            f"ComfyUI did not answer ({error.message}), so the workflow was stored without "
            "checking it against the server's nodes and models; it is checked before every "
            "generation."
        )
    else:
        try:
            warnings.extend(check_on_server(spec, server))
        except WorkflowValidationError as error:
            shown = [issue.message for issue in error.issues[:_MAX_LISTED_ISSUES]]
            more = len(error.issues) - len(shown)
            raise InvalidInputError(
                "The connected ComfyUI server cannot run this workflow: "
                + "; ".join(shown)
                + (f" (and {more} more)" if more > 0 else "")
                + "."
            ) from None
        checked = True
    record = await _store(studio).create(name, spec.workflow, spec.parameters)
    return WorkflowCreated.model_validate(
        {**_out(record), "warnings": warnings, "checked_on_server": checked}
    )


@router.get("")
async def list_workflows(
    studio: StudioDep,
    limit: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> WorkflowPage:
    """Newest first."""
    records = await _store(studio).list_workflows(limit=limit, offset=offset)
    return WorkflowPage(
        items=[WorkflowOut.model_validate(_out(r)) for r in records], limit=limit, offset=offset
    )


@router.get("/{workflow_id}")
async def get_workflow(workflow_id: str, studio: StudioDep) -> WorkflowDetail:
    """One workflow, with the JSON as stored."""
    record = await _store(studio).get(workflow_id)
    return WorkflowDetail.model_validate({**_out(record), "workflow": record.workflow})


@router.delete("/{workflow_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_workflow(workflow_id: str, studio: StudioDep) -> None:
    """Plans that still name it fail with a clear message; past generations keep their JSON."""
    await _store(studio).delete(workflow_id)

"""Every template the studio can generate with, ours and ComfyUI's official ones.

``GET /api/templates`` tells, for the connected ComfyUI, which of them run and exactly what
each of the others lacks (model files by name and folder, node types, a newer ComfyUI), so
the person can pick a preferred one per session (preferences.preferred_template) or
install what is missing. When ComfyUI does not answer, the list is still there with
``runnable: null``. The terminal's ``creative-studio templates`` prints the same list.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from creative_studio.api.deps import StudioDep
from creative_studio.tools.comfyui import ComfyUIClient, ComfyUIError
from creative_studio.workflows.catalog import catalog
from creative_studio.workflows.official_library import library
from creative_studio.workflows.server_info import ServerInfo
from creative_studio.workflows.template_choice import OFFICIAL_PREFIX, our_family, our_kind

router = APIRouter(prefix="/templates", tags=["templates"])

Kind = Literal["image", "edit", "video", "upscale"]


class TemplateInfo(BaseModel):
    name: str = Field(
        description="What a plan's template (or preferences.preferred_template) says to use "
        "it: 'txt2img' for ours, 'official:<name>' for ComfyUI's."
    )
    title: str
    description: str = ""
    source: Literal["studio", "official"]
    kind: Kind
    family: str = Field(description="Model family, e.g. sd, flux, sd3-5, qwen-image, wan2-2.")
    runnable: bool | None = Field(description="On the connected ComfyUI; null when it is down.")
    missing: str | None = Field(
        default=None, description="What it lacks, in words (null when it runs or is unknown)."
    )
    missing_models: dict[str, list[str]] = Field(
        default_factory=dict, description="ComfyUI models folder -> files to put there."
    )
    missing_nodes: list[str] = Field(default_factory=list)
    needs_comfyui: str | None = Field(
        default=None, description="The ComfyUI version it needs, when the server is older."
    )


class TemplateList(BaseModel):
    comfyui: Literal["connected", "unreachable"]
    comfyui_detail: str | None = Field(
        default=None, description="Why the runnable column is unknown."
    )
    comfyui_version: str | None = None
    library_version: str = Field(description="The pinned comfyui-workflow-templates-json.")
    items: list[TemplateInfo]


async def gather(client: ComfyUIClient) -> TemplateList:
    """Every template, checked against ``client``'s server when it answers."""
    server: ServerInfo | None = None
    version: str | None = None
    installed: dict[str, list[str]] | None = None
    detail: str | None = None
    try:
        server = await client.object_info()
        stats = await client.system_stats()
        version = str((stats.get("system") or {}).get("comfyui_version") or "") or None
        installed = await client.installed_models()
    except ComfyUIError as error:
        if server is None:
            detail = f"{error.message} Whether each template runs is unknown until it answers."
    items: list[TemplateInfo] = []
    ours = catalog()
    for name, spec in ours.templates.items():
        entry = TemplateInfo(
            name=name,
            title=spec.title,
            source="studio",
            kind=our_kind(name),  # type: ignore[arg-type]
            family=our_family(spec),
            runnable=None,
        )
        if server is not None:
            availability = ours.availability(spec, server)
            entry.runnable = availability.runnable
            if not availability.runnable:
                entry.missing = availability.describe()
                entry.missing_models = availability.missing_models
                entry.missing_nodes = availability.missing_nodes
        items.append(entry)
    official = library()
    for template in sorted(official.templates.values(), key=lambda t: (-t.usage, t.name)):
        entry = TemplateInfo(
            name=f"{OFFICIAL_PREFIX}{template.name}",
            title=template.title,
            description=template.description,
            source="official",
            kind=template.kind,  # type: ignore[arg-type]
            family=template.family,
            runnable=None,
        )
        if server is not None:
            check = official.check(
                template.name, server, comfyui_version=version, installed=installed
            )
            entry.runnable = check.runnable
            if not check.runnable:
                entry.missing = check.describe()
                entry.missing_models = check.missing_models
                entry.missing_nodes = check.missing_nodes
                entry.needs_comfyui = check.needs_version
        items.append(entry)
    return TemplateList(
        comfyui="connected" if server is not None else "unreachable",
        comfyui_detail=detail,
        comfyui_version=version,
        library_version=official.version,
        items=items,
    )


@router.get("")
async def list_templates(
    studio: StudioDep,
    kind: Annotated[Kind | None, Query(description="Only this kind.")] = None,
    runnable: Annotated[
        bool | None, Query(description="Only those that run (true) or do not (false).")
    ] = None,
) -> TemplateList:
    """Ours first, then the official ones most used first; each runnable or not, and why.

    Official templates that call paid API nodes are not listed (the studio never runs
    them). ``runnable`` filters only when ComfyUI answers.
    """
    result = await gather(studio.comfyui)
    result.items = [
        item
        for item in result.items
        if (kind is None or item.kind == kind)
        and (runnable is None or item.runnable is None or item.runnable == runnable)
    ]
    return result

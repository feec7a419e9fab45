"""An uploaded workflow built once for the connected server, as a generation would build it.

Problems are reported per node at upload time instead of at the first generation; what
the builder would change (a missing checkpoint swapped for an installed one) comes back
as warnings. Kept apart from ``workflow_upload`` because this needs the server's node
list and the builder, and from the store because nothing here touches the database.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from creative_studio.core.errors import InvalidInputError
from creative_studio.workflows.builder import build
from creative_studio.workflows.catalog import Catalog
from creative_studio.workflows.plan import TechnicalPlan
from creative_studio.workflows.server_info import ServerInfo, is_link, rules, split_target
from creative_studio.workflows.spec import TemplateSpec

__all__ = ["check_on_server"]

# Plan fields whose value the upload check takes from the workflow itself (so the check
# builds the workflow as exported, not with the plan defaults).
_NOT_FROM_WORKFLOW = frozenset({"filename_prefix", "init_image"})


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

"""How plans name an uploaded workflow: ``custom:<name>``, and which names are allowed.

Kept apart because the upload checks, the store and the generation service all need the
same rule, and none of them should pull in the others to get it.
"""

from __future__ import annotations

import re
from typing import Any

from creative_studio.core.errors import InvalidInputError

__all__ = ["CUSTOM_PREFIX", "NAME_PATTERN", "check_name", "template_name", "workflow_name"]

CUSTOM_PREFIX = "custom:"
# The same characters graph.state.CUSTOM_TEMPLATE_PATTERN allows after "custom:", and the
# migration's check constraint: a name that is stored can always be named by a plan.
NAME_PATTERN = r"[A-Za-z0-9 _.-]{1,80}"
_NAME = re.compile(NAME_PATTERN)


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

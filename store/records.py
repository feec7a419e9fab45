"""The rows of the studio's tables as frozen records, and the checks every value passes.

Kept apart from the queries (store/repository.py) so that callers can name a record
type without pulling in the query code, and so each file holds one job.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, get_args
from uuid import UUID

import psycopg
from psycopg import errors as pg_errors
from pydantic import BaseModel, ConfigDict

from creative_studio.core.errors import InvalidInputError, NotFoundError

ConversationStatus = Literal["idle", "running", "waiting", "complete"]
MessageRole = Literal["user", "style", "composition", "story", "technical", "critic", "system"]
GenerationStatus = Literal["queued", "running", "complete", "failed", "cancelled"]

_CONVERSATION_STATUSES: tuple[str, ...] = get_args(ConversationStatus)
_MESSAGE_ROLES: tuple[str, ...] = get_args(MessageRole)
_GENERATION_STATUSES: tuple[str, ...] = get_args(GenerationStatus)
_FINISHED_GENERATION: tuple[str, ...] = ("complete", "failed", "cancelled")

# Above this a page is no longer a page; also protects the server from a typo like 10**9.
_MAX_PAGE = 1000

IdLike = UUID | str


class _Record(BaseModel):
    # Records are snapshots of a row: frozen so nobody mistakes mutating one for saving it.
    # protected_namespaces=() because ``model_assignments`` is a real column name.
    model_config = ConfigDict(frozen=True, protected_namespaces=())


class SessionRecord(_Record):
    id: UUID
    name: str
    model_assignments: dict[str, str]
    preferences: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ConversationRecord(_Record):
    id: UUID
    session_id: UUID
    title: str | None
    parent_id: UUID | None
    forked_from_checkpoint: str | None
    status: ConversationStatus
    created_at: datetime
    updated_at: datetime


class MessageRecord(_Record):
    id: UUID
    seq: int
    conversation_id: UUID
    message_id: str
    role: MessageRole
    speaker: str
    content: str
    phase: str | None
    kind: str | None
    interrupted: bool
    metadata: dict[str, Any]
    created_at: datetime


class GenerationRecord(_Record):
    id: UUID
    session_id: UUID
    conversation_id: UUID | None
    status: GenerationStatus
    progress: float
    prompt_id: str | None
    template: str | None
    workflow_json: dict[str, Any] | None
    parameters: dict[str, Any]
    outputs: list[Any]
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    server_url: str | None = None  # the ComfyUI server that runs it (several: COMFYUI_URL)


class _Unset(enum.Enum):
    """Marks "leave this column alone", so ``None`` can still mean "set it to NULL"."""

    UNSET = enum.auto()


UNSET = _Unset.UNSET


def _uuid(value: IdLike | None, what: str) -> UUID:
    """Parse an id from a URL or a client; a malformed one names nothing, hence NotFound."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value).strip())
    except (ValueError, AttributeError, TypeError):
        raise NotFoundError(f"No {what} with id {value!r} (not a valid id).") from None


def _choice(value: str, allowed: Iterable[str], what: str) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise InvalidInputError(f"Invalid {what} {value!r}: expected one of {', '.join(allowed)}.")
    return value


def _page(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= _MAX_PAGE:
        raise InvalidInputError(f"limit must be between 1 and {_MAX_PAGE}, got {limit}.")
    if offset < 0:
        raise InvalidInputError(f"offset must not be negative, got {offset}.")
    return limit, offset


def _json_object(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} must be a JSON object, got {type(value).__name__}.")
    return dict(value)


def _assignments(value: Mapping[str, str] | None) -> dict[str, str]:
    """Role -> model strings (``ollama:<model>``, ``embedded``...); anything else is refused."""
    assignments = _json_object(value, "model_assignments")
    for role, model in assignments.items():
        if not isinstance(model, str):
            raise InvalidInputError(
                f"model_assignments[{role!r}] must be a model name string, got {model!r}."
            )
    return assignments


def _translate(exc: psycopg.Error) -> Exception:
    """Turn what the schema refused into a StudioError a person can act on."""
    diag = exc.diag
    if isinstance(exc, pg_errors.CheckViolation):
        return InvalidInputError(
            f"Value refused by the database ({diag.constraint_name}): {diag.message_primary}."
        )
    if isinstance(exc, pg_errors.ForeignKeyViolation):
        return NotFoundError(f"Referenced record does not exist: {diag.message_detail}")
    if isinstance(exc, pg_errors.NotNullViolation):
        return InvalidInputError(f"Missing value for {diag.column_name}.")
    if isinstance(exc, psycopg.DataError):
        return InvalidInputError(f"Invalid value: {diag.message_primary}.")
    return exc

"""Request and response models of the HTTP API (pydantic: validated in, documented out)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from creative_studio.core.roles import SPECIALISTS
from creative_studio.services.runner import MAX_MESSAGE_CHARS
from creative_studio.tools.models import validate_assignment
from creative_studio.workflows.official_library import library

MAX_PAGE = 200


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


# ---------------------------------------------------------------------------- settings


class Preferences(BaseModel):
    """What a person can tune per session. Unknown keys are refused, not silently kept."""

    model_config = ConfigDict(extra="forbid")

    approve_plans: bool = Field(default=False, description="Ask before generating a plan.")
    max_rounds: int = Field(
        default=3, ge=1, le=10, description="Refinement rounds without consensus before asking."
    )
    default_size: Literal["square", "landscape", "portrait"] = "landscape"
    quality: Literal["draft", "standard", "high"] = "standard"
    pause_after_idle_seconds: int | None = Field(
        default=None,
        ge=30,
        le=86_400,
        description="Pause the discussion when the person has been away this long.",
    )
    model_timeout: float = Field(default=180.0, gt=0, le=3600)
    role_timeouts: dict[str, float] = Field(default_factory=dict)
    ollama_keep_alive: str = Field(default="10m", max_length=20)
    ollama_num_ctx: int = Field(default=8192, ge=512, le=131_072)
    unload_ollama_before_generation: bool = Field(
        default=False, description="Free the team's models before ComfyUI runs (shared GPU)."
    )
    preferred_template: str | None = Field(
        default=None,
        pattern=r"^(custom:[A-Za-z0-9 _.-]{1,80}|official:[A-Za-z0-9_.-]{1,100})$",
        description="Generate with your own uploaded workflow ('custom:<name>') or one of "
        "ComfyUI's official templates ('official:<name>', see GET /api/templates).",
    )
    max_generation_retries: int = Field(
        default=2, ge=0, le=5, description="Retries after ComfyUI runs out of memory or fails."
    )
    generation_timeout: float = Field(
        default=3600.0, gt=0, le=86_400, description="Seconds one generation may take."
    )
    free_comfyui_after_generation: bool = Field(
        default=False, description="Ask ComfyUI to free its memory (/free) after a generation."
    )

    @field_validator("preferred_template")
    @classmethod
    def _official(cls, value: str | None) -> str | None:
        official = value.removeprefix("official:") if value else None
        if official is not None and official != value and official not in library().templates:
            raise ValueError(f"no official template is named {value!r} (GET /api/templates)")
        return value

    @field_validator("role_timeouts")
    @classmethod
    def _roles(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(SPECIALISTS)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; roles are {', '.join(SPECIALISTS)}")
        if any(not 0 < v <= 3600 for v in value.values()):
            raise ValueError("timeouts must be between 0 and 3600 seconds")
        return value


def check_assignments(value: dict[str, str]) -> dict[str, str]:
    unknown = set(value) - set(SPECIALISTS)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {', '.join(SPECIALISTS)}")
    return {role: validate_assignment(model) for role, model in value.items()}


class SettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_assignments: dict[str, str] | None = Field(
        default=None, description="Role -> 'ollama:<name>' | 'embedded' | 'scripted' | 'auto'."
    )
    preferences: Preferences | None = None

    _assignments = field_validator("model_assignments")(
        lambda cls, v: None if v is None else check_assignments(v)
    )


class SettingsOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_assignments: dict[str, str]
    resolved_models: dict[str, str] = Field(description="What each role uses right now.")
    preferences: Preferences
    notes: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------- sessions


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(default="New session", min_length=1, max_length=200)
    model_assignments: dict[str, str] = Field(default_factory=dict)
    preferences: Preferences = Field(default_factory=Preferences)

    _assignments = field_validator("model_assignments")(lambda cls, v: check_assignments(v))


class SessionRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class SessionOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: UUID
    name: str
    model_assignments: dict[str, str]
    preferences: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SessionPage(BaseModel):
    items: list[SessionOut]
    limit: int
    offset: int


# ---------------------------------------------------------------------------- conversations


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=200)
    message: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MESSAGE_CHARS,
        description="Optional first request: the team starts at once.",
    )


class ConversationOut(BaseModel):
    id: UUID
    session_id: UUID
    title: str | None
    parent_id: UUID | None
    forked_from_checkpoint: str | None
    status: str
    created_at: datetime
    updated_at: datetime


class ConversationDetail(ConversationOut):
    phase: str | None = None
    running: bool = False
    question: dict[str, Any] | None = Field(
        default=None, description="The team's open question for the person, if any."
    )
    plan: dict[str, Any] | None = None
    generation: dict[str, Any] | None = None
    brief: dict[str, Any] | None = None
    last_event_id: int = 0


MAX_MESSAGE_IMAGES = 4
_IMAGE_REF = r"^[A-Za-z0-9][A-Za-z0-9._ ()\-]{0,199}/[A-Za-z0-9][A-Za-z0-9._ ()\-]{0,199}/[A-Za-z0-9][A-Za-z0-9._ ()\-]{0,199}$"


class ImageOut(BaseModel):
    """An image the studio keeps for a session: an upload, or one of its generations' outputs.

    ``ref`` is what a message carries (``MessageIn.images``) to give the team this image.
    """

    ref: str = Field(description="Storage path {session_id}/uploads/{file} or an output's path.")
    filename: str
    content_type: str
    width: int
    height: int
    size: int
    source: Literal["upload", "output"]
    url: str = Field(description="Where a client fetches it through the API.")
    name: str | None = Field(default=None, description="The uploaded file's own name.")


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    images: list[Annotated[str, StringConstraints(pattern=_IMAGE_REF)]] = Field(
        default_factory=list,
        max_length=MAX_MESSAGE_IMAGES,
        description="Image refs (from POST /sessions/{id}/images, or a result's output path) "
        "given with this message: Pixel starts from the first (img2img).",
    )


class MessageOut(BaseModel):
    id: UUID
    seq: int
    message_id: str
    role: str
    speaker: str
    content: str
    phase: str | None
    kind: str | None
    interrupted: bool
    metadata: dict[str, Any]
    created_at: datetime


class Accepted(BaseModel):
    message: dict[str, Any]
    queued: bool = Field(description="True when the team was busy and the message waits its turn.")


class Answer(BaseModel):
    """The person's answer to the team's question (no consensus, or plan approval)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    approved: bool | None = None
    choice: str | None = Field(default=None, max_length=2000)


class EventOut(BaseModel):
    id: int
    kind: str
    data: dict[str, Any]
    created_at: datetime | None = None


class RunState(BaseModel):
    conversation_id: UUID
    running: bool
    cancelled: bool = False


# ---------------------------------------------------------------------------- history


class CheckpointState(BaseModel):
    checkpoint_id: str
    values: dict[str, Any]
    next: list[str]


class ForkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint_id: str = Field(min_length=1, max_length=100)
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


# ---------------------------------------------------------------------------- generations


class GenerationOut(BaseModel):
    id: UUID
    session_id: UUID
    conversation_id: UUID | None
    status: str
    progress: float
    prompt_id: str | None
    template: str | None
    parameters: dict[str, Any]
    outputs: list[Any]
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class GenerationPage(BaseModel):
    items: list[GenerationOut]
    limit: int
    offset: int


# ---------------------------------------------------------------------------- models & health


class InstalledModelOut(BaseModel):
    assignment: str
    name: str
    parameter_size: str | None = None
    quantization: str | None = None
    size: int | None = None


class ModelsOut(BaseModel):
    ollama_host: str
    ollama_reachable: bool
    ollama_error: str | None = None
    installed: list[InstalledModelOut]
    embedded_available: bool
    embedded_note: str
    auto: str


class PullIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/-]+$")


class ComponentHealth(BaseModel):
    ok: bool
    detail: str | None = None


class Health(BaseModel):
    database: ComponentHealth
    ollama: ComponentHealth
    comfyui: ComponentHealth


class Liveness(BaseModel):
    """A worker's answer to a load balancer: it serves, and its database is up."""

    ok: bool
    database: str

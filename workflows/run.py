"""What a generation is asked to do and how it ended: the data the graph and the service share.

The ComfyUI node hands a plan and these settings to whatever runs generations (the
studio's generation service, or a plain client), and gets a GenerationOutcome back;
neither side imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field

from creative_studio.workflows.plan import TechnicalPlan

OutcomeStatus = Literal["complete", "failed", "cancelled", "queued"]


class GenerationSettings(BaseModel):
    """Per-conversation generation knobs, read from ``configurable`` (session settings)."""

    max_generation_retries: int = Field(default=2, ge=0, le=5)
    unload_ollama_before_generation: bool = False
    free_comfyui_after_generation: bool = False
    generation_timeout: float = Field(default=3600.0, gt=0, le=86400)
    comfyui_reconnect_grace: float = Field(default=60.0, gt=0, le=3600)

    @classmethod
    def from_config(cls, config: RunnableConfig | None) -> GenerationSettings:
        configurable: dict[str, Any] = (config or {}).get("configurable") or {}
        return cls.model_validate(
            {k: configurable[k] for k in cls.model_fields if k in configurable}
        )


@dataclass
class GenerationOutcome:
    """How a generation ended (or that it waits for ComfyUI: status "queued")."""

    generation_id: str
    status: OutcomeStatus
    plan: TechnicalPlan
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # what the team did and why, in order
    template: str | None = None
    waiting_for_server: bool = False


__all__ = ["GenerationOutcome", "GenerationSettings", "OutcomeStatus"]

"""Typed configuration of one conversation's run.

Read from ``config["configurable"]`` (so LangGraph Studio can edit it and a parent
graph can pass it down), with defaults from the environment. Session settings that
the API stores per session are turned into exactly these fields.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field, PrivateAttr

from creative_studio.core.roles import SPECIALISTS


def _env_default_model() -> str:
    return os.environ.get("CREATIVE_STUDIO_MODEL", "auto")


def _env_comfyui_url() -> str:
    return os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188")


class Configuration(BaseModel):
    """Knobs of the discussion; every field has a sensible default."""

    default_model: str = Field(
        default_factory=_env_default_model,
        description="Model for roles without an assignment: 'ollama:<name>', 'embedded' "
        "(the offline default), 'embedded:qwen2.5-0.5b', 'embedded:gemma3-270m', 'scripted' "
        "or 'auto' (Ollama when it answers, else the embedded model).",
    )
    model_assignments: dict[str, str] = Field(
        default_factory=dict, description="Per-role model, e.g. {'style': 'ollama:llama3.1:8b'}."
    )
    approve_plans: bool = Field(
        default=False, description="Ask the person to approve the plan before generating."
    )
    ideation_rounds: int = Field(default=1, ge=1, le=5)
    max_rounds: int = Field(
        default=3, ge=1, le=10, description="Refinement rounds without consensus before asking."
    )
    max_send_backs: int = Field(default=2, ge=0, le=5)
    max_plan_revisions: int = Field(default=1, ge=0, le=5)
    recent_turns: int = Field(
        default=12,
        ge=3,
        le=60,
        description="Transcript window in each prompt (turns); it slides in thirds.",
    )
    max_turn_chars: int = Field(default=700, ge=100, le=4000)
    novelty_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    repeat_threshold: float = Field(default=0.8, ge=0.0, le=1.0)

    model_timeout: float = Field(
        default=180.0, gt=0, le=3600, description="Seconds a model may take for one turn."
    )
    role_timeouts: dict[str, float] = Field(
        default_factory=dict, description="Per-role timeouts, e.g. {'technical': 300}."
    )
    ollama_keep_alive: str = Field(
        default="10m", description="How long Ollama keeps a model loaded after a turn."
    )
    ollama_num_ctx: int = Field(default=8192, ge=512, le=131072)
    default_size: Literal["square", "landscape", "portrait"] = Field(
        default="landscape", description="The person's usual image shape (a hint to Pixel)."
    )
    quality: Literal["draft", "standard", "high"] = Field(
        default="standard", description="Speed or detail (a hint to Pixel: steps, resolution)."
    )
    preferred_template: str | None = Field(
        default=None,
        pattern=r"^custom:[A-Za-z0-9 _.-]{1,80}$",
        description="The person's own uploaded ComfyUI workflow to generate with.",
    )
    unload_ollama_before_generation: bool = Field(
        default=False,
        description="Ollama and ComfyUI share one GPU: unload the team's Ollama models "
        "(keep_alive 0) before a generation.",
    )
    comfyui_url: str = Field(
        default_factory=_env_comfyui_url,
        max_length=500,
        description="ComfyUI server the graph generates with when no studio server runs it "
        "(LangGraph Studio, an embedding app); empty: record the plan without generating.",
    )
    max_generation_retries: int = Field(default=2, ge=0, le=5)
    generation_timeout: float = Field(default=3600.0, gt=0, le=86400)
    free_comfyui_after_generation: bool = False
    comfyui_reconnect_grace: float = Field(default=60.0, gt=0, le=3600)
    model_seed: int | None = Field(
        default=None,
        ge=0,
        description="Fixed sampling seed (reproducible runs of the embedded model).",
    )

    # Set by the router for each decision (not a setting): the creatives asked to vote.
    _judging_roles: tuple[str, ...] = PrivateAttr(default=("style", "composition", "story"))

    @property
    def judging_roles(self) -> tuple[str, ...]:
        return self._judging_roles

    @judging_roles.setter
    def judging_roles(self, roles: Iterable[str]) -> None:
        self._judging_roles = tuple(roles)

    def plan_hint(self) -> str:
        """What Pixel should assume unless the team agreed otherwise."""
        steps = {
            "draft": "few steps (about 15)",
            "standard": "about 25-30 steps",
            "high": "about 40 steps",
        }
        return (
            f"Unless the team agreed otherwise: {self.default_size} format, "
            f"{self.quality} quality ({steps[self.quality]})."
        )

    def timeout_for(self, role: str) -> float:
        return float(self.role_timeouts.get(role) or self.model_timeout)

    def model_for(self, role: str) -> str:
        return self.model_assignments.get(role) or self.default_model

    @classmethod
    def from_runnable_config(cls, config: RunnableConfig | None = None) -> Configuration:
        """Pick our fields out of ``configurable``; unknown keys belong to others (a parent app)."""
        configurable: dict[str, Any] = (config or {}).get("configurable") or {}
        values = {name: configurable[name] for name in cls.model_fields if name in configurable}
        assignments = values.get("model_assignments") or {}
        values["model_assignments"] = {
            role: model for role, model in assignments.items() if role in SPECIALISTS and model
        }
        return cls.model_validate(values)

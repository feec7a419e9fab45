"""Typed configuration of one conversation's run: the graph's LangGraph context schema.

The graph is compiled with ``context_schema=Configuration``, so LangGraph Studio shows
and edits these fields (the assistant's context) and ``langgraph dev`` passes them to
every run as the runtime context. Nodes read them with ``from_runnable_config``, which
takes, in order: the run's runtime context (``Runtime.context``: a Configuration, or a
dict a parent app passes), then ``config["configurable"]`` (the studio's own runner and
older callers), then the environment (the default only). Session settings that the API
stores per session are turned into exactly these fields.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import get_runtime
from pydantic import AfterValidator, BaseModel, Field, PrivateAttr

from creative_studio.core.errors import InvalidInputError
from creative_studio.core.roles import SPECIALISTS, SpecialistRole
from creative_studio.tools.embedded_files import EMBEDDED_MODELS
from creative_studio.tools.models import validate_assignment

# Only dots need escaping in these names; re.escape would also escape "-", which the
# JSON schema's (ECMAScript, unicode-mode) regex dialect refuses outside a class.
_EMBEDDED_NAMES = "|".join(name.replace(".", r"\.") for name in EMBEDDED_MODELS)
MODEL_PATTERN = rf"^(auto|scripted|embedded(:({_EMBEDDED_NAMES}))?|ollama:\S{{1,200}})$"
"""The assignment forms tools/models.py resolves (shown to Studio as the field's pattern)."""
MODEL_FORMS = ["auto", "embedded", *(f"embedded:{n}" for n in EMBEDDED_MODELS), "scripted"]


def _valid_model(value: str) -> str:
    if not value.strip():
        return ""
    try:
        return validate_assignment(value)
    except InvalidInputError as error:  # pydantic reports a ValueError with our message
        raise ValueError(error.message) from None


ModelChoice = Annotated[
    str,
    Field(
        pattern=MODEL_PATTERN,
        max_length=207,
        json_schema_extra={"examples": [*MODEL_FORMS, "ollama:llama3.1:8b"]},
    ),
    AfterValidator(_valid_model),
]
RoleModel = Annotated[
    str,
    Field(
        pattern=f"^$|{MODEL_PATTERN}",
        max_length=207,
        json_schema_extra={"examples": ["", *MODEL_FORMS, "ollama:llama3.1:8b"]},
    ),
    AfterValidator(_valid_model),
]
_ROLE_MODEL_HELP = (
    "Model for {persona} ({role}): 'ollama:<name>', 'embedded', 'embedded:qwen2.5-0.5b', "
    "'embedded:gemma3-270m', 'scripted' or 'auto'; empty: model_assignments, else default_model."
)


def _env_default_model() -> str:
    return os.environ.get("CREATIVE_STUDIO_MODEL", "auto")


def _env_comfyui_url() -> str:
    return os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188")


class Configuration(BaseModel):
    """Knobs of the discussion; every field has a sensible default."""

    default_model: ModelChoice = Field(
        default_factory=_env_default_model,
        description="Model for roles without an assignment: 'ollama:<name>', 'embedded' "
        "(the offline default), 'embedded:qwen2.5-0.5b', 'embedded:gemma3-270m', 'scripted' "
        "or 'auto' (Ollama when it answers, else the embedded model).",
    )
    style_model: RoleModel = Field(
        default="", description=_ROLE_MODEL_HELP.format(persona="Luna", role="style")
    )
    composition_model: RoleModel = Field(
        default="", description=_ROLE_MODEL_HELP.format(persona="Frame", role="composition")
    )
    story_model: RoleModel = Field(
        default="", description=_ROLE_MODEL_HELP.format(persona="Saga", role="story")
    )
    technical_model: RoleModel = Field(
        default="",
        description=_ROLE_MODEL_HELP.format(persona="Pixel", role="technical director"),
    )
    critic_model: RoleModel = Field(
        default="", description=_ROLE_MODEL_HELP.format(persona="Lens", role="critic")
    )
    model_assignments: dict[SpecialistRole, ModelChoice] = Field(
        default_factory=dict,
        description="Per-role models as one mapping (what the studio's sessions store), e.g. "
        "{'style': 'ollama:llama3.1:8b'}; a <role>_model field wins over it.",
    )
    approve_plans: bool = Field(
        default=False, description="Ask the person to approve the plan before generating."
    )
    ideation_rounds: int = Field(
        default=1, ge=1, le=5, description="Rounds of free exploration before refinement."
    )
    max_rounds: int = Field(
        default=3, ge=1, le=10, description="Refinement rounds without consensus before asking."
    )
    max_send_backs: int = Field(
        default=2, ge=0, le=5, description="Times Lens may send the plan back before it goes on."
    )
    max_plan_revisions: int = Field(
        default=1, ge=0, le=5, description="Times Pixel redrafts the plan after objections."
    )
    recent_turns: int = Field(
        default=12,
        ge=3,
        le=60,
        description="Transcript window in each prompt (turns); it slides in thirds.",
    )
    max_turn_chars: int = Field(
        default=700, ge=100, le=4000, description="Longest turn kept (characters)."
    )
    novelty_threshold: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="Below this share of new words a turn counts as stale (consensus).",
    )
    repeat_threshold: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="Similarity above which a turn repeats an earlier one (loop detection).",
    )

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
        pattern=r"^(custom:[A-Za-z0-9 _.-]{1,80}|official:[A-Za-z0-9_.-]{1,100})$",
        description="The template to generate with: the person's own uploaded ComfyUI "
        "workflow ('custom:<name>') or one of ComfyUI's official templates "
        "('official:<name>', GET /api/templates).",
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
        "(LangGraph Studio, an embedding app); several, comma- or space-separated as in "
        "COMFYUI_URL: each generation goes to the least-loaded one that has the plan's models, "
        "and to another when its server dies. Empty: record the plan without generating.",
    )
    max_generation_retries: int = Field(
        default=2, ge=0, le=5, description="Automatic retries of a failed generation."
    )
    generation_timeout: float = Field(
        default=3600.0, gt=0, le=86400, description="Seconds one generation may take."
    )
    free_comfyui_after_generation: bool = Field(
        default=False, description="Ask ComfyUI to free its memory after each generation."
    )
    comfyui_reconnect_grace: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds to wait for ComfyUI to come back before a generation fails.",
    )
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
        own = str(getattr(self, f"{role}_model", "")) if role in SPECIALISTS else ""
        assigned = {str(k): v for k, v in self.model_assignments.items()}.get(role, "")
        return own or assigned or self.default_model

    @classmethod
    def pick(cls, values: Mapping[str, Any] | None) -> dict[str, Any]:
        """Our fields out of a mapping; unknown keys belong to others (a parent app)."""
        given = values or {}
        picked = {name: given[name] for name in cls.model_fields if name in given}
        if "model_assignments" in picked:
            assignments = picked["model_assignments"] or {}
            picked["model_assignments"] = {
                role: model for role, model in assignments.items() if role in SPECIALISTS and model
            }
        return picked

    @classmethod
    def explicit_values(cls, config: RunnableConfig | None = None) -> dict[str, Any]:
        """The fields this run sets: ``configurable``, overridden by the runtime context.

        Only what is set, so the environment's defaults of *this* process stay defaults
        (graph/remote.py passes these on to a server with an environment of its own).
        """
        values = cls.pick((config or {}).get("configurable"))
        context = _runtime_context()
        if isinstance(context, Configuration):
            values.update(context.model_dump(include=context.model_fields_set))
        elif isinstance(context, Mapping):  # a parent graph's dict context
            values.update(cls.pick(context))
        return values

    @classmethod
    def from_runnable_config(cls, config: RunnableConfig | None = None) -> Configuration:
        """The run's settings: runtime context, then ``configurable``, then the environment.

        A new instance every call: the router sets per-decision state on it.
        """
        return cls.model_validate(cls.explicit_values(config))


def _runtime_context() -> Any:
    """The current run's LangGraph runtime context (None outside a run or without one).

    A parent graph's context reaches an embedded studio too (LangGraph merges runtimes);
    one that is neither a Configuration nor a dict is the parent's own business.
    """
    try:
        return get_runtime().context
    except RuntimeError:  # not inside a graph run (a unit test, the API reading settings)
        return None

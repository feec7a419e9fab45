"""Model providers: turn a role's assignment string into a LangChain chat model.

Assignments are strings so they can live in session settings and environment
variables: ``ollama:<name>`` (an Ollama server), ``embedded`` (llama.cpp in process),
``scripted`` (deterministic offline stand-in for demos and tests) and ``auto``
(Ollama when it answers, otherwise the embedded model).
"""

from __future__ import annotations

import os
from typing import Protocol

from langchain_core.language_models import BaseChatModel

from creative_studio.graph.configuration import Configuration
from creative_studio.tools.errors import InvalidInputError
from creative_studio.tools.scripted import ScriptedChatModel

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_OLLAMA_MODEL = "llama3.2:3b"


class ModelProvider(Protocol):
    """Anything that can hand a node the chat model for a role."""

    def chat_model(self, role: str, config: Configuration) -> BaseChatModel: ...


def validate_assignment(assignment: str) -> str:
    """Refuse an assignment string we cannot resolve, with the accepted forms in the message."""
    value = assignment.strip()
    if value in ("auto", "embedded", "scripted"):
        return value
    if value.startswith("ollama:") and len(value) > len("ollama:") and len(value) <= 200:
        return value
    raise InvalidInputError(
        f"Unknown model assignment {assignment!r}: use 'ollama:<model>', 'embedded', "
        "'scripted' or 'auto'."
    )


class AssignmentProvider:
    """Resolves assignment strings; ``auto`` is decided once by whoever starts the studio."""

    def __init__(
        self,
        ollama_host: str | None = None,
        *,
        auto: str | None = None,
        scripted_delay: float | None = None,
    ) -> None:
        self.ollama_host = ollama_host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST
        if not self.ollama_host.startswith("http"):
            self.ollama_host = f"http://{self.ollama_host}"
        self.auto = (
            auto or f"ollama:{os.environ.get('CREATIVE_STUDIO_OLLAMA_MODEL', DEFAULT_OLLAMA_MODEL)}"
        )
        delay = scripted_delay
        if delay is None:
            delay = float(os.environ.get("CREATIVE_STUDIO_SCRIPTED_DELAY", "0") or 0)
        self.scripted_delay = delay
        self._cache: dict[tuple[str, str], BaseChatModel] = {}

    def chat_model(self, role: str, config: Configuration) -> BaseChatModel:
        assignment = validate_assignment(config.model_for(role))
        if assignment == "auto":
            assignment = self.auto
        key = (role, assignment)
        if key not in self._cache:
            self._cache[key] = self._build(role, assignment)
        return self._cache[key]

    def _build(self, role: str, assignment: str) -> BaseChatModel:
        if assignment == "scripted":
            return ScriptedChatModel(role=role, delay=self.scripted_delay)
        if assignment.startswith("ollama:"):
            from langchain_ollama import ChatOllama

            return ChatOllama(model=assignment.removeprefix("ollama:"), base_url=self.ollama_host)
        raise InvalidInputError(
            f"The model assignment {assignment!r} is not available in this build."
        )


class StaticProvider:
    """Fixed models per role (tests, embedding apps that bring their own models)."""

    def __init__(self, models: dict[str, BaseChatModel], default: BaseChatModel | None = None):
        self.models = models
        self.default = default

    def chat_model(self, role: str, config: Configuration) -> BaseChatModel:
        model = self.models.get(role, self.default)
        if model is None:
            raise InvalidInputError(f"No model configured for the {role} role.")
        return model

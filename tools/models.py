"""Model providers: turn a role's assignment string into a LangChain chat model.

Assignments are strings so they can live in session settings and environment
variables: ``ollama:<name>`` (an Ollama server), ``embedded`` (the default offline model,
Qwen2.5-Coder 0.5B Instruct, in process via llama.cpp), ``embedded:qwen2.5-0.5b`` or
``embedded:gemma3-270m`` (one embedded model by name; Gemma 3 270M is a base model driven by
few-shot completion), ``scripted`` (deterministic offline stand-in for demos and tests) and
``auto`` (the best installed Ollama model when Ollama answers, otherwise ``embedded``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

import httpx
from langchain_core.language_models import BaseChatModel

from creative_studio.core.errors import InvalidInputError
from creative_studio.tools.embedded_files import DEFAULT_EMBEDDED, EMBEDDED_MODELS
from creative_studio.tools.ollama import missing_message, resolve_auto, unreachable_message
from creative_studio.tools.scripted import ScriptedChatModel
from creative_studio.tools.tls import shared_tls, tls_context

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
EMBEDDED_PREFIX = "embedded:"
_ALTERNATIVES = ", ".join(
    f"`{EMBEDDED_PREFIX}{m.name}` picks {m.title}"
    for m in EMBEDDED_MODELS.values()
    if m.name != DEFAULT_EMBEDDED
)
EMBEDDED_NOTE = (
    f"the embedded {EMBEDDED_MODELS[DEFAULT_EMBEDDED].title} is a small offline fallback "
    f"({_ALTERNATIVES}); for the real experience run Ollama with a 3-8B instruct model, "
    "see README, Models"
)


def embedded_name(assignment: str) -> str | None:
    """The registered embedded model an assignment names (None: not an embedded one).

    ``embedded`` alone means DEFAULT_EMBEDDED; ``embedded:<name>`` picks one explicitly.
    """
    value = assignment.strip()
    if value == "embedded":
        return DEFAULT_EMBEDDED
    if value.startswith(EMBEDDED_PREFIX):
        return value.removeprefix(EMBEDDED_PREFIX)
    return None


class ModelOptions(Protocol):
    """What a provider needs to know of a conversation's configuration.

    The graph's Configuration has these fields; naming them here keeps this client layer
    free of the graph.
    """

    ollama_keep_alive: str
    ollama_num_ctx: int
    model_seed: int | None

    def model_for(self, role: str) -> str: ...

    def timeout_for(self, role: str) -> float: ...


class ModelProvider(Protocol):
    """Anything that can hand a node the chat model for a role."""

    def chat_model(self, role: str, config: ModelOptions) -> BaseChatModel: ...


def validate_assignment(assignment: str) -> str:
    """Refuse an assignment string we cannot resolve, with the accepted forms in the message."""
    value = assignment.strip()
    if value in ("auto", "embedded", "scripted"):
        return value
    if value.startswith(EMBEDDED_PREFIX):
        if value.removeprefix(EMBEDDED_PREFIX) in EMBEDDED_MODELS:
            return value
        known = ", ".join(f"'{EMBEDDED_PREFIX}{name}'" for name in EMBEDDED_MODELS)
        raise InvalidInputError(
            f"Unknown embedded model in {assignment!r}: use 'embedded' (the default, "
            f"{DEFAULT_EMBEDDED}) or one of {known}."
        )
    name = value.removeprefix("ollama:")
    if value.startswith("ollama:") and 0 < len(name) <= 200 and not any(c.isspace() for c in name):
        return value
    raise InvalidInputError(
        f"Unknown model assignment {assignment!r}: use 'ollama:<model>', 'embedded', "
        f"'{EMBEDDED_PREFIX}<name>' (one of {', '.join(EMBEDDED_MODELS)}), 'scripted' or 'auto'."
    )


def normalise_host(host: str) -> str:
    host = host.strip().rstrip("/")
    return host if host.startswith(("http://", "https://")) else f"http://{host}"


# A refused, reset or dropped connection (not a timeout: retrying a slow model only doubles
# the wait).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def describe_failure(error: BaseException, assignment: str, host: str, timeout: float) -> str:
    """What went wrong with a model, in words that say what to do about it."""
    import ollama

    if isinstance(error, ollama.ResponseError) and (
        error.status_code == 404 or "not found" in str(error.error).lower()
    ):
        return missing_message(assignment.removeprefix("ollama:"), host)
    if isinstance(error, CONNECTION_ERRORS) and assignment.startswith("ollama:"):
        return unreachable_message(host)
    if isinstance(error, (TimeoutError, httpx.TimeoutException)):
        return (
            f"{assignment} did not answer within {timeout:g} s; a smaller model answers faster "
            "(for example ollama:llama3.2:3b), or raise this role's timeout in settings"
        )
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:300]


class AssignmentProvider:
    """Resolves assignment strings. ``auto`` is decided once, asynchronously (ensure_ready)."""

    def __init__(
        self,
        ollama_host: str | None = None,
        *,
        data_dir: Path | None = None,
        auto: str | None = None,
        scripted_delay: float | None = None,
    ) -> None:
        self.ollama_host = normalise_host(
            ollama_host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST
        )
        self.data_dir = data_dir or Path(
            os.environ.get("CREATIVE_STUDIO_DATA_DIR")
            or Path.home() / ".local" / "share" / "creative-studio"
        )
        self.auto = auto
        self.auto_reason = "set by the caller" if auto else None
        delay = scripted_delay
        if delay is None:
            delay = float(os.environ.get("CREATIVE_STUDIO_SCRIPTED_DELAY", "0") or 0)
        self.scripted_delay = delay
        self._cache: dict[tuple[str, ...], BaseChatModel] = {}
        self._ready = asyncio.Lock()

    async def ensure_ready(self) -> None:
        """Decide what `auto` means here: ask Ollama once (it may simply not be running)."""
        await shared_tls()  # built off the event loop the first time; after that at once
        if self.auto is not None:
            return  # every turn asks: nothing to wait for
        async with self._ready:
            if self.auto is None:
                self.auto, self.auto_reason = await resolve_auto(self.ollama_host)

    def resolved(self, assignment: str) -> str:
        value = validate_assignment(assignment)
        if value == "auto":
            return self.auto or "embedded"
        return value

    def assignments(self, config: ModelOptions) -> dict[str, str]:
        """Role -> the concrete model it uses, for telling the person."""
        from creative_studio.core.roles import SPECIALISTS

        return {role: self.resolved(config.model_for(role)) for role in SPECIALISTS}

    def judges_readiness(self, role: str, config: ModelOptions) -> bool:
        """Whether the role's model can judge if the team is ready to generate.

        The embedded models (a 270M base model, a 0.5B instruct model) cannot: measured, their
        votes are the same sentence whatever the discussion said. The router does not ask
        them, and the consensus detector decides instead.
        """
        return embedded_name(self.resolved(config.model_for(role))) is None

    def chat_model(self, role: str, config: ModelOptions) -> BaseChatModel:
        assignment = self.resolved(config.model_for(role))
        timeout = config.timeout_for(role)
        key = (
            role,
            assignment,
            str(timeout),
            config.ollama_keep_alive,
            str(config.ollama_num_ctx),
            # Only an embedded model is built with the seed: keyed by it, an Ollama model
            # would be built (two httpx clients, SSL contexts) per conversation.
            str(config.model_seed) if embedded_name(assignment) is not None else "",
        )
        if key not in self._cache:
            self._cache[key] = self._build(role, assignment, config)
        return self._cache[key]

    def _build(self, role: str, assignment: str, config: ModelOptions) -> BaseChatModel:
        if assignment == "scripted":
            return ScriptedChatModel(role=role, delay=self.scripted_delay)
        embedded = embedded_name(assignment)
        if embedded is not None:
            from creative_studio.tools.embedded import ChatEmbedded

            return ChatEmbedded(data_dir=self.data_dir, model=embedded, seed=config.model_seed)
        from creative_studio.tools.ollama_stream import StreamingChatOllama

        return StreamingChatOllama(
            model=assignment.removeprefix("ollama:"),
            base_url=self.ollama_host,
            keep_alive=config.ollama_keep_alive,
            num_ctx=config.ollama_num_ctx,
            client_kwargs={"timeout": config.timeout_for(role), "verify": tls_context()},
        )


class StaticProvider:
    """Fixed models per role (tests, embedding apps that bring their own models)."""

    def __init__(self, models: dict[str, BaseChatModel], default: BaseChatModel | None = None):
        self.models = models
        self.default = default

    def chat_model(self, role: str, config: ModelOptions) -> BaseChatModel:
        model = self.models.get(role, self.default)
        if model is None:
            raise InvalidInputError(f"No model configured for the {role} role.")
        return model

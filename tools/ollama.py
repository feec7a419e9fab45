"""Talking to the Ollama server about models: is it there, what is installed, pull, unload.

Uses the official ``ollama`` client (the same one langchain-ollama streams chats through),
and turns its failures into messages a person can act on: which host, which model, which
command fixes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama
from pydantic import BaseModel

from creative_studio.core.errors import StudioError
from creative_studio.tools.tls import shared_tls

log = logging.getLogger(__name__)

# Preferred chat models for `auto`, best first, by the name Ollama lists them under
# (3-8B instruct models run on common hardware; see README "Models").
PREFERRED = (
    "llama3.1:8b",
    "qwen2.5:7b",
    "qwen3:8b",
    "gemma3:4b",
    "mistral:7b",
    "llama3.2:3b",
    "qwen2.5:3b",
    "phi4-mini",
    "llama3.2:1b",
)
NON_CHAT_FAMILIES = ("bert", "nomic-bert", "clip")


class OllamaUnreachableError(StudioError):
    status_code = 503
    code = "ollama_unreachable"


class OllamaModelMissingError(StudioError):
    status_code = 404
    code = "model_missing"


class InstalledModel(BaseModel):
    name: str
    size: int | None = None
    family: str | None = None
    parameter_size: str | None = None
    quantization: str | None = None


class OllamaStatus(BaseModel):
    host: str
    reachable: bool
    models: list[InstalledModel] = []
    error: str | None = None


class PullProgress(BaseModel):
    status: str
    completed: int | None = None
    total: int | None = None

    @property
    def fraction(self) -> float | None:
        if self.total:
            return min(1.0, (self.completed or 0) / self.total)
        return None


def unreachable_message(host: str) -> str:
    return (
        f"cannot reach Ollama at {host}. Start it with `ollama serve` (or set OLLAMA_HOST), "
        "see docs/ollama.md; the conversation is kept, send a message to retry"
    )


def missing_message(name: str, host: str) -> str:
    return (
        f"the model '{name}' is not installed on Ollama at {host}. "
        f"Run `ollama pull {name}`, or assign an installed model to this role in settings"
    )


def model_name(value: str) -> str:
    """'llama3.2' and 'llama3.2:latest' name the same model."""
    return value if ":" in value else f"{value}:latest"


class OllamaService:
    """Model management on one Ollama server."""

    def __init__(self, host: str, *, timeout: float = 5.0) -> None:
        self.host = host.rstrip("/")
        self.timeout = timeout

    async def _client(self, limit: float | None = None) -> ollama.AsyncClient:
        """A client for one call, ``limit`` seconds per request (the process's TLS context:
        tools/tls.py)."""
        return ollama.AsyncClient(
            host=self.host, timeout=limit or self.timeout, verify=await shared_tls()
        )

    async def status(self) -> OllamaStatus:
        """Reachable? Which models? Never raises: the answer is part of the status."""
        try:
            models = await self.installed()
        except OllamaUnreachableError as error:
            return OllamaStatus(host=self.host, reachable=False, error=error.message)
        return OllamaStatus(host=self.host, reachable=True, models=models)

    async def installed(self) -> list[InstalledModel]:
        try:
            listing = await (await self._client()).list()
        except (ConnectionError, httpx.HTTPError, OSError) as error:
            raise OllamaUnreachableError(unreachable_message(self.host)) from error
        models = []
        for item in listing.models:
            details = item.details
            models.append(
                InstalledModel(
                    name=item.model or "",
                    size=int(item.size) if item.size is not None else None,
                    family=details.family if details else None,
                    parameter_size=details.parameter_size if details else None,
                    quantization=details.quantization_level if details else None,
                )
            )
        return models

    async def show(self, name: str) -> dict[str, Any]:
        try:
            shown = await (await self._client()).show(name)
        except ollama.ResponseError as error:
            if error.status_code == 404:
                raise OllamaModelMissingError(missing_message(name, self.host)) from error
            raise
        except (ConnectionError, httpx.HTTPError, OSError) as error:
            raise OllamaUnreachableError(unreachable_message(self.host)) from error
        return shown.model_dump(by_alias=True, exclude_none=True)

    async def pull(self, name: str) -> AsyncIterator[PullProgress]:
        """Stream the pull's progress lines until Ollama says success."""
        try:
            stream = await (await self._client(limit=None)).pull(name, stream=True)
            async for line in stream:
                yield PullProgress(
                    status=line.status or "", completed=line.completed, total=line.total
                )
        except ollama.ResponseError as error:
            raise StudioError(f"Ollama could not pull '{name}': {error.error}") from error
        except (ConnectionError, httpx.HTTPError, OSError) as error:
            raise OllamaUnreachableError(unreachable_message(self.host)) from error

    async def unload(self, name: str) -> None:
        """Free the model's memory now (keep_alive 0), e.g. before ComfyUI needs the GPU."""
        with_timeout = await self._client(limit=30)
        try:
            await with_timeout.generate(model=name, prompt="", keep_alive=0)
        except (ollama.ResponseError, ConnectionError, httpx.HTTPError, OSError) as error:
            log.info("could not unload %s: %s", name, error)

    async def best_installed(self) -> str | None:
        """The installed chat model `auto` should use, or None when there is none."""
        models = await self.installed()
        names = [m.name for m in models if (m.family or "") not in NON_CHAT_FAMILIES]
        for preferred in PREFERRED:
            if model_name(preferred) in names:
                return model_name(preferred)
        return names[0] if names else None


async def resolve_auto(host: str, *, within: float = 2.0) -> tuple[str, str]:
    """(assignment, why) for `auto`: an installed Ollama model, else the embedded model."""
    service = OllamaService(host, timeout=within)
    try:
        best = await asyncio.wait_for(service.best_installed(), within + 1)
    except (OllamaUnreachableError, TimeoutError):
        return "embedded", f"no Ollama answers at {host}"
    if best is None:
        return "embedded", f"Ollama at {host} has no chat model installed"
    return f"ollama:{best}", f"Ollama at {host}"

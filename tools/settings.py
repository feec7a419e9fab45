"""Process-wide settings, from the environment (and CLI flags, which override them).

Per-session choices (model per role, approve plans, ...) live in the sessions table;
these are the things that belong to the machine: where data lives, which database,
which Ollama and ComfyUI servers, which address the server binds.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def server_urls(text: str) -> list[str]:
    """The ComfyUI servers a ``COMFYUI_URL`` lists: comma- or space-separated, each once, in
    order, without a trailing slash; empty: none. The studio server and the graph alone
    (nodes/comfyui_direct.py) read it alike. When it lists several, each must be an
    http(s):// URL (ValueError says which is not): a bare host there is a typo."""
    urls = [u.rstrip("/") for u in re.split(r"[\s,]+", text.strip())]
    urls = list(dict.fromkeys(u for u in urls if u))
    for url in urls if len(urls) > 1 else ():
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"COMFYUI_URL lists {url!r}: each server must be an http(s):// URL.")
    return urls


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "creative-studio"


class StudioSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREATIVE_STUDIO_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "CREATIVE_STUDIO_DATABASE_URL")
    )
    ollama_host: str = Field(
        default="http://127.0.0.1:11434",
        validation_alias=AliasChoices("OLLAMA_HOST", "CREATIVE_STUDIO_OLLAMA_HOST"),
    )
    comfyui_url: str = Field(
        default="http://127.0.0.1:8188",
        validation_alias=AliasChoices("COMFYUI_URL", "CREATIVE_STUDIO_COMFYUI_URL"),
    )
    # Every server COMFYUI_URL lists (``server_urls``), derived from it; ``comfyui_url`` is
    # then the first, so whatever talks to one server (health, the terminal) uses that.
    comfyui_urls: list[str] = Field(default_factory=list, exclude=True)
    model: str = "auto"
    # Role -> model (``serve --assign``): the server's default for that role, under a
    # session's own assignments (api/deps.py, services/runner.py ``settings``).
    model_assignments: dict[str, str] = Field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8420
    api_token: str | None = None

    @model_validator(mode="after")
    def _split_comfyui_urls(self) -> StudioSettings:
        """``COMFYUI_URL=http://a:8188,http://b:8188`` is a pool of two (tools/comfyui_pool.py)."""
        urls = server_urls(self.comfyui_url)
        if len(urls) > 1:
            self.comfyui_url = urls[0]
        # One server: exactly as it was given.
        self.comfyui_urls = urls if len(urls) > 1 else [self.comfyui_url]
        return self

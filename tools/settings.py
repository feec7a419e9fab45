"""Process-wide settings, from the environment (and CLI flags, which override them).

Per-session choices (model per role, approve plans, ...) live in the sessions table;
these are the things that belong to the machine: where data lives, which database,
which Ollama and ComfyUI servers, which address the server binds.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    model: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8420
    api_token: str | None = None

"""A real uvicorn server of the studio on 127.0.0.1:<ephemeral>, for API tests.

httpx's ASGI transport buffers whole responses (no SSE), so tests talk HTTP over a socket
to a server running in the test's event loop, and can stop and restart it on the same
database to test what survives a restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from creative_studio.api.app import create_app
from creative_studio.tools.models import ModelProvider
from creative_studio.tools.settings import StudioSettings
from tests.threaded_server import free_port


@dataclass
class ApiServer:
    database_url: str
    data_dir: Path
    provider: ModelProvider | None = None
    api_token: str | None = None
    comfyui_url: str = "http://127.0.0.1:9"  # nothing there unless a test starts a double
    ollama_host: str = "http://127.0.0.1:9"
    port: int = field(default_factory=free_port)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ApiServer:
        settings = StudioSettings(
            database_url=self.database_url,
            data_dir=self.data_dir,
            ollama_host=self.ollama_host,
            comfyui_url=self.comfyui_url,
            api_token=self.api_token,
        )
        app = create_app(settings, provider=self.provider, web_dir=None)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = None
        self._task = None

    @property
    def studio(self) -> Any:
        """The running studio's services (for tests that need to step around the clock)."""
        assert self._server is not None
        return self._server.config.app.state.studio

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kwargs)


@dataclass
class Sse:
    id: int
    event: str
    data: dict[str, Any]
    preview_id: str | None = None  # a live preview frame's own id (not stored)


async def sse_events(
    client: httpx.AsyncClient,
    path: str,
    *,
    last_event_id: int | None = None,
    previews: bool = False,
    **params: Any,
) -> AsyncIterator[Sse]:
    """Parse a text/event-stream response into events (comments and pings skipped).

    Live preview frames (never stored, ids like "12.000001") are skipped unless
    ``previews``; they then come with the id of the stored event they follow and
    ``preview_id`` set."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with client.stream("GET", path, headers=headers, params=params) as response:
        if response.status_code != 200:
            await response.aread()
            raise AssertionError(f"{response.status_code}: {response.text}")
        event: dict[str, str] = {}
        async for line in response.aiter_lines():
            if not line:
                if "data" in event and "id" in event and (previews or "." not in event["id"]):
                    stored, _, frame = event["id"].partition(".")
                    yield Sse(
                        int(stored),
                        event.get("event", "message"),
                        json.loads(event["data"]),
                        preview_id=event["id"] if frame else None,
                    )
                event = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            event[key] = value[1:] if value.startswith(" ") else value

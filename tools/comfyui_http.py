"""ComfyUI's HTTP API: one method per endpoint, each error in words the person can act on.

HTTP carries the commands (queue, cancel, upload, free) and the truth (``/history``,
``/queue``, ``/object_info``). Kept apart from the websocket feed (tools/comfyui_feed.py)
and from following a whole run (tools/comfyui.py): each request here stands alone, so
these methods are the plain, stateless part of the client (only ``/object_info`` is cached).
"""

from __future__ import annotations

import time
from typing import Any
from uuid import uuid4

import httpx

from creative_studio.tools.comfyui_wire import (
    ComfyUIError,
    ComfyUIRejectedError,
    ComfyUIServerError,
    ComfyUIUnreachableError,
)
from creative_studio.tools.tls import tls_context
from creative_studio.workflows.catalog import ServerInfo, Workflow

__all__ = ["ComfyUIHttp"]


class ComfyUIHttp:
    """The HTTP endpoints of one ComfyUI server; ``aclose()`` closes the connection pool."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        timeout: float = 30.0,
        object_info_ttl: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        # Sent with every prompt: ComfyUI routes a prompt's live feed to this id.
        self.client_id = client_id or str(uuid4())
        self.object_info_ttl = object_info_ttl
        # The process's TLS context (tools/tls.py): a client of its own loaded the CA bundle,
        # ~40 ms of CPU on the event loop for every generation run straight from the graph.
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, verify=tls_context())
        self._info: ServerInfo | None = None
        self._info_at = 0.0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as error:
            raise ComfyUIUnreachableError(
                f"ComfyUI is not reachable at {self.url} ({type(error).__name__}). Start it, "
                "or set COMFYUI_URL to where it runs."
            ) from error
        except httpx.ReadTimeout as error:
            raise ComfyUIUnreachableError(
                f"ComfyUI at {self.url} did not answer {method} {path} in time."
            ) from error
        except (httpx.ReadError, httpx.WriteError, httpx.PoolTimeout) as error:
            raise ComfyUIUnreachableError(
                f"The connection to ComfyUI at {self.url} broke ({type(error).__name__})."
            ) from error

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ComfyUIServerError(
                f"ComfyUI answered {response.status_code} to {method} {path}: "
                f"{response.text[:200] or '(empty)'}"
            )
        return response.json()

    async def system_stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/system_stats")
        return result

    async def reachable(self) -> bool:
        try:
            await self.system_stats()
        except ComfyUIError:
            return False
        return True

    async def object_info(self, *, refresh: bool = False) -> ServerInfo:
        """The server's node catalogue, cached for ``object_info_ttl`` seconds.

        A model installed a minute ago shows up at the next refresh; the generation
        service also refreshes after the server refuses a model it thought was there.
        """
        now = time.monotonic()
        if refresh or self._info is None or now - self._info_at > self.object_info_ttl:
            self._info = ServerInfo(await self._json("GET", "/object_info"))
            self._info_at = now
        return self._info

    async def models(self, folder: str) -> list[str]:
        """Installed files of one models folder (GET /models/{folder})."""
        result = await self._json("GET", f"/models/{folder}")
        return [str(x) for x in result] if isinstance(result, list) else []

    async def installed_models(self) -> dict[str, list[str]]:
        """Every models folder with its files (folders are GET /models)."""
        folders = await self._json("GET", "/models")
        found: dict[str, list[str]] = {}
        for folder in folders if isinstance(folders, list) else []:
            found[str(folder)] = await self.models(str(folder))
        return found

    async def queue_prompt(
        self,
        workflow: Workflow,
        prompt_id: str,
        *,
        front: bool = False,
        extra_data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST /prompt with our client_id and prompt_id. Never call it with an unvalidated
        workflow: the generation service validates against /object_info first."""
        body: dict[str, Any] = {
            "prompt": workflow,
            "client_id": self.client_id,
            "prompt_id": prompt_id,
        }
        if front:
            body["front"] = True
        if extra_data:
            body["extra_data"] = extra_data
        response = await self._request("POST", "/prompt", json=body)
        if response.status_code == 400:
            try:
                payload = response.json()
            except ValueError:
                payload = {"error": {"message": response.text[:300]}}
            raise ComfyUIRejectedError(payload if isinstance(payload, dict) else {})
        if response.status_code >= 400:
            raise ComfyUIServerError(
                f"ComfyUI answered {response.status_code} to POST /prompt: "
                f"{response.text[:200] or '(empty)'}"
            )
        result: dict[str, Any] = response.json()
        return result

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The prompt's /history entry, or None while it has not finished (or is unknown)."""
        body = await self._json("GET", f"/history/{prompt_id}")
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return entry if isinstance(entry, dict) else None

    async def queue(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/queue")
        return result

    async def where(self, prompt_id: str) -> tuple[str, dict[str, Any] | None]:
        """("done", entry) | ("running", None) | ("pending", None) | ("unknown", None)."""
        entry = await self.history(prompt_id)
        if entry is not None:
            return "done", entry
        queue = await self.queue()
        for state, key in (("running", "queue_running"), ("pending", "queue_pending")):
            if any(len(item) > 1 and item[1] == prompt_id for item in queue.get(key) or []):
                return state, None
        # It may have finished between the two requests.
        entry = await self.history(prompt_id)
        return ("done", entry) if entry is not None else ("unknown", None)

    async def view(
        self, filename: str, subfolder: str = "", type: str = "output"
    ) -> tuple[bytes, str]:
        """A produced file's bytes and content type (GET /view)."""
        response = await self._request(
            "GET", "/view", params={"filename": filename, "subfolder": subfolder, "type": type}
        )
        if response.status_code != 200:
            raise ComfyUIServerError(
                f"ComfyUI could not serve {filename} (HTTP {response.status_code})."
            )
        return response.content, response.headers.get("content-type", "application/octet-stream")

    async def upload_image(
        self,
        data: bytes,
        filename: str,
        *,
        subfolder: str = "",
        overwrite: bool = False,
        content_type: str = "image/png",
    ) -> dict[str, Any]:
        """POST /upload/image; returns {"name", "subfolder", "type"}. A clashing name gets
        " (1)" appended by the server unless ``overwrite``: always use the returned name."""
        form = {"type": "input", "overwrite": "true" if overwrite else "false"}
        if subfolder:
            form["subfolder"] = subfolder
        response = await self._request(
            "POST", "/upload/image", files={"image": (filename, data, content_type)}, data=form
        )
        if response.status_code != 200:
            raise ComfyUIServerError(f"ComfyUI refused the upload (HTTP {response.status_code}).")
        result: dict[str, Any] = response.json()
        return result

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt — only ``prompt_id`` if given (targeted), else whatever runs."""
        body = {"prompt_id": prompt_id} if prompt_id else {}
        response = await self._request("POST", "/interrupt", json=body)
        if response.status_code >= 400:
            raise ComfyUIServerError(
                f"ComfyUI refused the interrupt (HTTP {response.status_code})."
            )

    async def delete_queued(self, prompt_ids: list[str]) -> None:
        """Remove pending prompts (running ones are not affected: interrupt those)."""
        response = await self._request("POST", "/queue", json={"delete": prompt_ids})
        if response.status_code >= 400:
            raise ComfyUIServerError(
                f"ComfyUI refused the queue delete (HTTP {response.status_code})."
            )

    async def clear_queue(self) -> None:
        await self._request("POST", "/queue", json={"clear": True})

    async def free(self, *, unload_models: bool = True, free_memory: bool = True) -> None:
        """Ask ComfyUI to release GPU memory (e.g. so Ollama can load the team's models)."""
        await self._request(
            "POST", "/free", json={"unload_models": unload_models, "free_memory": free_memory}
        )

"""ComfyUI client: HTTP for commands and truth, one long-lived websocket for the live feed.

Matches what a real ComfyUI (0.3.64, recorded in ``../shared/comfyui/``) does:

* Every prompt is posted with our ``client_id`` and a ``prompt_id`` we choose. Without a
  client_id the server only broadcasts queue status, no progress; with our own prompt_id
  a resubmission after a lost connection or a server restart is idempotent — before
  posting again we ask ``/history`` and ``/queue`` whether the server already has it.
* ``/history/{id}`` is the truth (ComfyUI writes it after ``execution_success``, so we
  poll it briefly after the websocket says the run ended); the websocket is the live feed
  (``progress`` per sampler step, ``executing`` per node, binary preview frames). When
  the feed goes quiet or drops, the client checks the truth instead of waiting forever;
  a prompt that is in neither history nor queue was lost (restart) and is resubmitted.
* The client_id survives studio restarts (``persistent_client_id``): ComfyUI routes a
  prompt's progress to the client that queued it, so a studio that restarts mid-run gets
  the live feed of the run it resumes; a run found already executing is reported as such
  (a synthetic ``execution_start`` with ``resumed``), so its status reads "running".
* Cancel is targeted: ``/queue`` ``delete`` while the prompt is pending, ``/interrupt``
  with the prompt_id while it runs (a global interrupt would stop someone else's run).

Nothing here blocks the event loop: httpx and websockets are asyncio all the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from creative_studio.tools.comfyui_wire import (
    TERMINAL_EVENTS,
    ComfyEvent,
    ComfyUIError,
    ComfyUIRejectedError,
    ComfyUIServerError,
    ComfyUITimeoutError,
    ComfyUIUnreachableError,
    EventHandler,
    ExecutionFailure,
    OutputRef,
    RunResult,
    decode_preview,
    result_of,
)
from creative_studio.workflows.catalog import ServerInfo, Workflow

log = logging.getLogger(__name__)

__all__ = [
    "ComfyEvent",
    "ComfyUIClient",
    "ComfyUIError",
    "ComfyUIRejectedError",
    "ComfyUIServerError",
    "ComfyUITimeoutError",
    "ComfyUIUnreachableError",
    "ExecutionFailure",
    "OutputRef",
    "RunResult",
    "decode_preview",
    "persistent_client_id",
]


CLIENT_ID_FILE = "comfyui_client_id"


def persistent_client_id(data_dir: Path, process: str = "serve") -> str:
    """The studio's websocket client_id, the same after a restart (``data_dir/comfyui_client_id``).

    ComfyUI sends a prompt's progress only to the client_id that queued it. A new random id
    per process meant a studio restarted mid-generation got no live progress for the run it
    resumed (only the final result, from /history). Kept beside the database, the id survives
    restarts. ComfyUI keeps one socket per client_id (a second connection replaces the
    first), so each kind of studio process on a data directory (``serve``, the terminal's
    ``chat``) has its own id.
    """
    suffix = "" if process == "serve" else f".{process}"
    path = Path(data_dir) / f"{CLIENT_ID_FILE}{suffix}"
    with contextlib.suppress(OSError, ValueError):
        return str(UUID(path.read_text().strip()))
    client_id = str(uuid4())
    with contextlib.suppress(OSError):  # a read-only data dir still gets a working id
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(client_id + "\n")
        partial.replace(path)
    return client_id


def _ws_url(base: str, client_id: str) -> str:
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, f"clientId={client_id}", ""))


# --------------------------------------------------------------------------- client


class ComfyUIClient:
    """One ComfyUI server. Create once per process; ``aclose()`` at shutdown."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        timeout: float = 30.0,
        poll_interval: float = 2.0,
        reconnect_delay: float = 0.25,
        object_info_ttl: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id or str(uuid4())
        self.poll_interval = poll_interval
        self.reconnect_delay = reconnect_delay
        self.object_info_ttl = object_info_ttl
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout)
        self._subscribers: dict[str, list[asyncio.Queue[ComfyEvent]]] = {}
        self._listeners: list[Callable[[ComfyEvent], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._ever_connected = False
        self._closing = False
        self._running_prompt: str | None = None
        self._cancelled: set[str] = set()
        self._info: ServerInfo | None = None
        self._info_at = 0.0

    @property
    def ws_url(self) -> str:
        return _ws_url(self.url, self.client_id)

    @property
    def connected(self) -> bool:
        """Whether the live feed is up right now."""
        return self._connected.is_set()

    async def aclose(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._http.aclose()

    # ------------------------------------------------------------------ HTTP

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

    async def cancel(self, prompt_id: str) -> str:
        """Cancel one prompt: "deleted" (was pending), "interrupted" (was running),
        "done" (already finished) or "unknown" (the server does not know it)."""
        self._cancelled.add(prompt_id)
        self._push(prompt_id, ComfyEvent("cancel_requested", {}, prompt_id))
        state, _ = await self.where(prompt_id)
        if state == "pending":
            await self.delete_queued([prompt_id])
            # It may have started between the two calls: interrupt covers that.
            state_after, _ = await self.where(prompt_id)
            if state_after == "running":
                await self.interrupt(prompt_id)
                return "interrupted"
            self._push(prompt_id, ComfyEvent("cancel_requested", {}, prompt_id))
            return "deleted"
        if state == "running":
            await self.interrupt(prompt_id)
            return "interrupted"
        return state

    # ------------------------------------------------------------------ websocket

    def add_listener(self, handler: Callable[[ComfyEvent], None]) -> None:
        """Every event of the feed (connection changes included), synchronously: for status
        displays, which must not block the feed."""
        self._listeners.append(handler)

    def subscribe(self, prompt_id: str) -> asyncio.Queue[ComfyEvent]:
        queue: asyncio.Queue[ComfyEvent] = asyncio.Queue()
        self._subscribers.setdefault(prompt_id, []).append(queue)
        return queue

    def unsubscribe(self, prompt_id: str, queue: asyncio.Queue[ComfyEvent]) -> None:
        queues = self._subscribers.get(prompt_id, [])
        if queue in queues:
            queues.remove(queue)
        if not queues:
            self._subscribers.pop(prompt_id, None)

    async def connect(self, wait: float = 2.0) -> bool:
        """Start the live feed (once) and wait up to ``wait`` s for it; False if it is down."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="comfyui-websocket")
        if not self._connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), wait)
        return self._connected.is_set()

    def _push(self, prompt_id: str | None, event: ComfyEvent) -> None:
        if prompt_id is None:
            for queues in self._subscribers.values():
                for queue in queues:
                    queue.put_nowait(event)
        else:
            for queue in self._subscribers.get(prompt_id, []):
                queue.put_nowait(event)
        for handler in list(self._listeners):
            try:
                handler(event)
            except Exception:  # a display must never break the feed
                log.exception("comfyui listener failed")

    def _dispatch(self, raw: str | bytes) -> None:
        now = time.perf_counter()
        if isinstance(raw, bytes):
            decoded = decode_preview(raw)
            if decoded is None:
                return
            mime, image, meta = decoded
            prompt_id = meta.get("prompt_id") or self._running_prompt
            data = {"node": meta.get("node_id"), "prompt_id": prompt_id}
            self._push(prompt_id, ComfyEvent("preview", data, prompt_id, now, image, mime))
            return
        try:
            message = json.loads(raw)
        except ValueError:
            return
        kind = str(message.get("type", ""))
        data = message.get("data") or {}
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        if kind == "execution_start":
            self._running_prompt = prompt_id
        elif kind == "executing" and data.get("node") is None and prompt_id == self._running_prompt:
            self._running_prompt = None
        if kind in ("status", "feature_flags", "crystools.monitor"):
            for handler in list(self._listeners):
                with contextlib.suppress(Exception):
                    handler(ComfyEvent(kind, data, None, now))
            return
        if prompt_id is not None:
            self._push(prompt_id, ComfyEvent(kind, data, prompt_id, now))

    async def _listen(self) -> None:
        delay = self.reconnect_delay
        while not self._closing:
            try:
                ws: ClientConnection
                async with connect(
                    self.ws_url, max_size=None, open_timeout=5, ping_interval=20
                ) as ws:
                    # Like ComfyUI's own frontend: previews then carry their prompt_id.
                    await ws.send(
                        json.dumps(
                            {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
                        )
                    )
                    async for raw in ws:
                        if not self._connected.is_set():
                            # ComfyUI registers the socket, then greets it with "status"
                            # (and its sid): only from then on does it route our events.
                            self._connected.set()
                            delay = self.reconnect_delay
                            kind = "reconnected" if self._ever_connected else "connected"
                            self._ever_connected = True
                            self._push(None, ComfyEvent(kind, {}))
                        self._dispatch(raw)
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError) as error:
                log.debug("comfyui websocket: %s", error)
            if self._connected.is_set():
                self._connected.clear()
                self._running_prompt = None
                self._push(None, ComfyEvent("disconnected", {}))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # ------------------------------------------------------------------ a whole run

    async def _history_soon(self, prompt_id: str, within: float = 3.0) -> dict[str, Any] | None:
        """ComfyUI stores history just after ``execution_success``: poll briefly."""
        deadline = time.monotonic() + within
        while True:
            entry = await self.history(prompt_id)
            if entry is not None or time.monotonic() > deadline:
                return entry
            await asyncio.sleep(0.02)

    @staticmethod
    async def _drain(queue: asyncio.Queue[ComfyEvent], on_event: EventHandler | None) -> None:
        """Deliver events that arrived before the truth did, so no live update is lost."""
        while not queue.empty():
            event = queue.get_nowait()
            if on_event is not None:
                outcome = on_event(event)
                if inspect.isawaitable(outcome):
                    await outcome

    async def execute(
        self,
        workflow: Workflow,
        prompt_id: str,
        on_event: EventHandler | None = None,
        *,
        time_limit: float = 3600.0,
        reconnect_grace: float = 120.0,
        max_resubmits: int = 3,
    ) -> RunResult:
        """Queue (unless the server already has ``prompt_id``) and follow it to the end.

        ``on_event`` sees every live event. Returns the outcome read from /history; raises
        ComfyUIUnreachableError when the server stays away longer than
        ``reconnect_grace``, ComfyUITimeoutError after ``time_limit`` (the prompt is
        interrupted first), ComfyUIRejectedError when the server refuses the workflow.
        """
        queue = self.subscribe(prompt_id)
        self._cancelled.discard(prompt_id)
        loop = asyncio.get_running_loop()
        try:
            state, entry = await self.where(prompt_id)  # fails fast when ComfyUI is down
            # Up: give the live feed a moment, or progress would only come from /history.
            await self.connect(wait=5.0)
            if state == "done" and entry is not None:
                return result_of(prompt_id, entry)
            if state == "unknown":
                await self.queue_prompt(workflow, prompt_id)
            # Events of this run seen, or a start reported: a run found executing (after a
            # studio restart, or a feed that dropped) is then reported once as started.
            started = False

            async def report_running() -> None:
                nonlocal started
                if started:
                    return
                started = True
                resumed = ComfyEvent(
                    "execution_start", {"prompt_id": prompt_id, "resumed": True}, prompt_id
                )
                if on_event is not None:
                    outcome = on_event(resumed)
                    if inspect.isawaitable(outcome):
                        await outcome

            if state == "running":
                await report_running()
            deadline = loop.time() + time_limit
            outage_since: float | None = None
            resubmits = 0
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    with contextlib.suppress(ComfyUIError):
                        await self.cancel(prompt_id)
                    raise ComfyUITimeoutError(
                        f"The generation took longer than {time_limit:.0f} s and was stopped."
                    )
                event: ComfyEvent | None
                try:
                    wait = min(self.poll_interval, remaining)
                    event = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    event = None
                if event is not None and event.type in ("execution_start", "progress", "executing"):
                    started = True
                if event is not None and on_event is not None:
                    outcome = on_event(event)
                    if inspect.isawaitable(outcome):
                        await outcome
                if event is not None and event.type not in (
                    "connected",
                    "disconnected",
                    "reconnected",
                    "cancel_requested",
                ):
                    finished = event.type in TERMINAL_EVENTS or (
                        event.type == "executing" and event.data.get("node") is None
                    )
                    if finished:
                        try:
                            entry = await self._history_soon(prompt_id)
                        except ComfyUIUnreachableError:
                            entry = None
                        if entry is not None:
                            return result_of(prompt_id, entry, resubmits)
                    continue
                if event is not None and event.type in ("connected", "disconnected"):
                    continue  # nothing to check yet: wait for events, the reconnect or a poll
                # The feed is quiet, came back, or a cancel was asked: check the truth.
                try:
                    state, entry = await self.where(prompt_id)
                    outage_since = None
                except ComfyUIUnreachableError:
                    now = loop.time()
                    outage_since = outage_since or now
                    if now - outage_since > reconnect_grace:
                        raise
                    continue
                if state == "done" and entry is not None:
                    await self._drain(queue, on_event)
                    return result_of(prompt_id, entry, resubmits)
                if state == "running":
                    await report_running()
                if state == "unknown":
                    if prompt_id in self._cancelled:
                        return RunResult(prompt_id, "cancelled", resubmitted=resubmits)
                    if resubmits >= max_resubmits:
                        raise ComfyUIError(
                            "ComfyUI keeps losing this generation (restarted "
                            f"{resubmits} times); giving up."
                        )
                    resubmits += 1
                    log.warning("prompt %s was lost by ComfyUI; resubmitting", prompt_id)
                    lost = ComfyEvent("resubmitted", {"attempt": resubmits}, prompt_id)
                    if on_event is not None:
                        outcome = on_event(lost)
                        if inspect.isawaitable(outcome):
                            await outcome
                    await self.queue_prompt(workflow, prompt_id)
                    started = False
        finally:
            self.unsubscribe(prompt_id, queue)

"""ComfyUI's websocket: one long-lived connection per client_id, fanned out to subscribers.

The live feed (``progress`` per sampler step, ``executing`` per node, binary preview
frames) and nothing else: it reconnects by itself, routes each event to the queues
subscribed to its prompt_id and to the synchronous listeners (status displays), and reports
its own ups and downs as ``connected`` / ``reconnected`` / ``disconnected`` events. Separate
from the HTTP API because it is a background task with state of its own; what the events
mean for a run is decided by the client (tools/comfyui.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from creative_studio.tools.comfyui_wire import ComfyEvent, decode_preview

log = logging.getLogger(__name__)

__all__ = ["ComfyUIFeed", "ws_url"]


def ws_url(base: str, client_id: str) -> str:
    """The feed's address: the server's ``/ws`` with our client_id, ``wss`` behind https."""
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, f"clientId={client_id}", ""))


class ComfyUIFeed:
    """The live feed of one client_id; ``connect()`` starts it, ``aclose()`` stops it."""

    def __init__(self, ws_url: str, *, reconnect_delay: float = 0.25) -> None:
        self.ws_url = ws_url
        self.reconnect_delay = reconnect_delay
        self._subscribers: dict[str, list[asyncio.Queue[ComfyEvent]]] = {}
        self._listeners: list[Callable[[ComfyEvent], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._ever_connected = False
        self._closing = False
        self._running_prompt: str | None = None

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

    def push(self, prompt_id: str | None, event: ComfyEvent) -> None:
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
            self.push(prompt_id, ComfyEvent("preview", data, prompt_id, now, image, mime))
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
            self.push(prompt_id, ComfyEvent(kind, data, prompt_id, now))

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
                            self.push(None, ComfyEvent(kind, {}))
                        self._dispatch(raw)
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError) as error:
                log.debug("comfyui websocket: %s", error)
            if self._connected.is_set():
                self._connected.clear()
                self._running_prompt = None
                self.push(None, ComfyEvent("disconnected", {}))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

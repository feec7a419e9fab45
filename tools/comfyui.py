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

The parts live beside this module: tools/comfyui_http.py holds the HTTP endpoints,
tools/comfyui_feed.py the websocket, tools/comfyui_wire.py the shapes of what comes back,
tools/comfyui_client_id.py the persistent client_id. This module's one job is a whole run:
queue, follow, resume after an outage, cancel.

Nothing here blocks the event loop: httpx and websockets are asyncio all the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from creative_studio.tools.comfyui_client_id import persistent_client_id
from creative_studio.tools.comfyui_feed import ComfyUIFeed, ws_url
from creative_studio.tools.comfyui_http import ComfyUIHttp
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
from creative_studio.workflows.catalog import Workflow

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


# --------------------------------------------------------------------------- client


class ComfyUIClient(ComfyUIHttp):
    """One ComfyUI server. Create once per process; ``aclose()`` at shutdown.

    The HTTP endpoints are inherited (``ComfyUIHttp``); the live feed is a ``ComfyUIFeed``
    this client owns and exposes through ``connect`` / ``subscribe`` / ``add_listener``.
    """

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
        super().__init__(url, client_id=client_id, timeout=timeout, object_info_ttl=object_info_ttl)
        self.poll_interval = poll_interval
        self._feed = ComfyUIFeed(ws_url(self.url, self.client_id), reconnect_delay=reconnect_delay)
        self._cancelled: set[str] = set()

    @property
    def ws_url(self) -> str:
        return self._feed.ws_url

    @property
    def reconnect_delay(self) -> float:
        return self._feed.reconnect_delay

    @reconnect_delay.setter
    def reconnect_delay(self, value: float) -> None:
        self._feed.reconnect_delay = value

    @property
    def connected(self) -> bool:
        """Whether the live feed is up right now."""
        return self._feed.connected

    async def aclose(self) -> None:
        await self._feed.aclose()
        await super().aclose()

    # ------------------------------------------------------------------ websocket

    def add_listener(self, handler: Callable[[ComfyEvent], None]) -> None:
        """Every event of the feed (connection changes included), synchronously: for status
        displays, which must not block the feed."""
        self._feed.add_listener(handler)

    def subscribe(self, prompt_id: str) -> asyncio.Queue[ComfyEvent]:
        return self._feed.subscribe(prompt_id)

    def unsubscribe(self, prompt_id: str, queue: asyncio.Queue[ComfyEvent]) -> None:
        self._feed.unsubscribe(prompt_id, queue)

    async def connect(self, wait: float = 2.0) -> bool:
        """Start the live feed (once) and wait up to ``wait`` s for it; False if it is down."""
        return await self._feed.connect(wait)

    # ------------------------------------------------------------------ a whole run

    async def cancel(self, prompt_id: str) -> str:
        """Cancel one prompt: "deleted" (was pending), "interrupted" (was running),
        "done" (already finished) or "unknown" (the server does not know it)."""
        self._cancelled.add(prompt_id)
        self._feed.push(prompt_id, ComfyEvent("cancel_requested", {}, prompt_id))
        state, _ = await self.where(prompt_id)
        if state == "pending":
            await self.delete_queued([prompt_id])
            # It may have started between the two calls: interrupt covers that.
            state_after, _ = await self.where(prompt_id)
            if state_after == "running":
                await self.interrupt(prompt_id)
                return "interrupted"
            self._feed.push(prompt_id, ComfyEvent("cancel_requested", {}, prompt_id))
            return "deleted"
        if state == "running":
            await self.interrupt(prompt_id)
            return "interrupted"
        return state

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

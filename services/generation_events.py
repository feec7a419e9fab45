"""Where a generation's events and late results go, apart from running it.

Every part of a generation reports through these (the attempts loop, the progress
tracker, the retry loop), and none of them needs the job table to do so, which is why
this is its own module. The generation service (services/generation.py) inherits it:

* live events go to the graph node waiting for the generation (``job.listener``) and,
  when no node waits or its stream is gone, to the service sink ``on_event``;
* preview frames go to ``previews`` (services/generation_previews.py), never to the event
  sinks: they are live only, and a server that sends none is named once per conversation;
* a generation that ends while no node waits for it is handed to the result listeners
  (the conversation runner writes it into the conversation); those that end before a
  listener exists wait for it (at most ``_UNDELIVERED_MAX``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from creative_studio.services.generation_job import _Job
from creative_studio.services.generation_previews import PreviewHub
from creative_studio.workflows.run import GenerationOutcome

__all__ = ["NO_PREVIEWS", "EventSink", "GenerationEvents", "ResultListener"]

# conversation_id (None: not tied to one), event kind, data
EventSink = Callable[[str | None, str, dict[str, Any]], Awaitable[None]]
# conversation_id, how its generation ended (while no graph node waited for it)
ResultListener = Callable[[str, GenerationOutcome], Awaitable[None]]
_UNDELIVERED_MAX = 100
NO_PREVIEWS = (
    "ComfyUI sends no live previews, so the image shows only when it is done. To watch it "
    "form, start ComfyUI with --preview-method auto (or latent2rgb, or taesd)."
)


class GenerationEvents:
    """The generation service's outlets: node streams, the service sink, previews, listeners."""

    def __init__(self, on_event: EventSink | None = None) -> None:
        self.on_event = on_event
        self._background: set[asyncio.Task[Any]] = set()
        self.previews = PreviewHub()
        self._told_no_previews: set[str | None] = set()
        self._result_listeners: list[ResultListener] = []
        self._undelivered: list[tuple[str, GenerationOutcome]] = []

    def add_result_listener(self, listener: ResultListener) -> None:
        """Who writes late results into their conversation; gets what ended before it came."""
        self._result_listeners.append(listener)
        pending, self._undelivered = self._undelivered, []
        for conversation_id, outcome in pending:
            self._spawn(listener(conversation_id, outcome))

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _emit(self, job: _Job, kind: str, data: dict[str, Any]) -> None:
        if job.listener is not None:
            try:
                job.listener(kind, data)
                return
            except Exception:  # the node's stream is gone: fall back to the service sink
                job.listener = None
        if self.on_event is not None:
            self._spawn(self.on_event(job.conversation_id, kind, data))

    def _note(self, job: _Job, text: str, *, status: str = "queued", progress: float = 0.0) -> None:
        job.notes.append(text)
        self._emit(
            job,
            "generation_progress",
            {
                "generation_id": job.generation_id,
                "progress": progress,
                "status": status,
                "message": text,
            },
        )

    def _preview(self, job: _Job, payload: dict[str, Any]) -> None:
        """A frame for whoever watches now; never stored (services/generation_previews.py)."""
        if job.conversation_id is not None:
            self.previews.publish(job.conversation_id, payload)

    def _no_previews(self, job: _Job) -> None:
        """Steps but no frames: ComfyUI runs without --preview-method. Said once per chat."""
        if job.conversation_id in self._told_no_previews:
            return
        self._told_no_previews.add(job.conversation_id)
        progress = job.tracker.value if job.tracker is not None else 0.0
        self._note(job, NO_PREVIEWS, status="running", progress=progress)

    def _deliver(self, conversation_id: str, outcome: GenerationOutcome) -> None:
        """No node waits for this result: the listeners write it into the conversation."""
        if not self._result_listeners:
            self._undelivered = [*self._undelivered, (conversation_id, outcome)][-_UNDELIVERED_MAX:]
            return
        for listener in self._result_listeners:
            self._spawn(listener(conversation_id, outcome))

"""One generation in flight: its job record and the tracker that turns ComfyUI's feed into progress.

The tracker keeps progress monotonic within one run (a resubmitted run starts again from
0), emits every step to the chat, hands preview frames to the preview hub (never to the
event log) and coalesces writes to the generations table (at most one every 0.5 s).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from uuid import NAMESPACE_URL, uuid5

from creative_studio.core.errors import StudioError
from creative_studio.tools.comfyui import (
    ComfyEvent,
)
from creative_studio.workflows.catalog import Workflow, rules
from creative_studio.workflows.plan import TechnicalPlan
from creative_studio.workflows.run import GenerationOutcome, GenerationSettings

if TYPE_CHECKING:
    from creative_studio.services.generation import GenerationService

Emit = Callable[[str, dict[str, Any]], None]
_NAMESPACE = uuid5(NAMESPACE_URL, "creative-studio/comfyui")


def prompt_id_for(generation_id: str, attempt: int) -> str:
    """The idempotency key of one attempt: the same generation and attempt, the same id."""
    return str(uuid5(_NAMESPACE, f"{generation_id}:{attempt}"))


RESUMED = "ComfyUI is already running this generation; following it again."
_DB_PROGRESS_INTERVAL = 0.5  # seconds between progress writes to the generations table


@dataclass
class _Job:
    generation_id: str
    session_id: str
    conversation_id: str | None
    plan: TechnicalPlan
    settings: GenerationSettings
    init_image: str | None = None
    unload_models: tuple[str, ...] = ()
    ollama_host: str | None = None
    listener: Emit | None = None
    prompt_id: str | None = None
    server_url: str | None = None  # the ComfyUI server running it (tools/comfyui_pool.py)
    cancel_requested: bool = False
    waited: bool = False  # parked because ComfyUI was unreachable (not picked up at startup)
    # A previous process left it: its stored status ("queued" or "running") until ComfyUI
    # says otherwise (a run it still has reads "running", not "queued", after a restart).
    picked_up: Literal["queued", "running"] | None = None
    notes: list[str] = field(default_factory=list)
    task: asyncio.Task[GenerationOutcome] | None = None
    outcome: GenerationOutcome | None = None
    kind: str = "image"
    request_key: str | None = None
    # Template parameters the plan or the person set on purpose (an uploaded workflow
    # keeps its own value for every other one); None: whatever the plan object says.
    explicit: tuple[str, ...] | None = None
    tracker: _Progress | None = None
    db_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Progress:
    """Turns the live feed of one attempt into 0..1 progress, events and table updates."""

    def __init__(self, service: GenerationService, job: _Job, workflow: Workflow) -> None:
        self.service = service
        self.job = job
        self.workflow = workflow
        sampler_types = set(rules()["progress"]["sampler_nodes"]) | set(
            rules()["progress"]["upscale_nodes"]
        )
        self.samplers = [
            n for n, node in workflow.items() if node.get("class_type") in sampler_types
        ]
        self.fractions: dict[str, float] = {n: 0.0 for n in self.samplers}
        # Only a sampler sends previews: an upscale model reports steps but never a frame,
        # so its steps must not prompt the "start ComfyUI with --preview-method" notice.
        previewing = set(rules()["progress"]["sampler_nodes"])
        self.previewing = {n for n in self.samplers if workflow[n].get("class_type") in previewing}
        self.done_nodes: set[str] = set()
        self.value = 0.0
        self.status = "queued"
        self.node: str | None = None
        self.step: int | None = None
        self.max_steps: int | None = None
        self._last_write = 0.0
        self._write_pending = False
        self.closed = False
        self.previews = 0  # frames of this run: none after two steps -> tell the person once

    def _overall(self) -> float:
        if self.samplers:
            sampled = sum(self.fractions.values()) / len(self.samplers)
            overall = 0.05 + 0.9 * sampled
            if all(f >= 1.0 for f in self.fractions.values()) and self.node not in self.samplers:
                overall = max(overall, 0.97 if self.node else 0.95)
        else:
            overall = 0.05 + 0.9 * len(self.done_nodes) / max(1, len(self.workflow))
        self.value = max(self.value, min(overall, 0.99))
        return self.value

    def payload(self, **extra: Any) -> dict[str, Any]:
        node_type = self.workflow.get(self.node or "", {}).get("class_type") if self.node else None
        return {
            "generation_id": self.job.generation_id,
            "progress": round(self.value, 4),
            "status": self.status,
            "step": self.step,
            "max_steps": self.max_steps,
            "node": self.node,
            "node_type": node_type,
            **extra,
        }

    def handle(self, event: ComfyEvent) -> None:
        kind, data = event.type, event.data
        if kind == "execution_start":
            self.status = "running"
            self.value = max(self.value, 0.02)
            # Found already running (the studio restarted, or the feed dropped mid-run).
            extra = {"message": RESUMED} if data.get("resumed") else {}
            self.service._emit(self.job, "generation_progress", self.payload(**extra))
            self._schedule_write(force=True)
            return
        if kind == "execution_cached":
            self.done_nodes.update(str(n) for n in data.get("nodes") or [])
            return
        if kind == "executing":
            if self.node is not None:
                self.done_nodes.add(self.node)
                if self.node in self.fractions:
                    self.fractions[self.node] = 1.0
            self.node = data.get("node")
            self.step = self.max_steps = None
            self._overall()
            self._emit()
            return
        if kind == "progress":
            node = str(data.get("node"))
            value, maximum = float(data.get("value") or 0), float(data.get("max") or 1)
            self.node = node
            self.step, self.max_steps = int(value), int(maximum)
            if node in self.fractions:
                self.fractions[node] = max(self.fractions[node], value / max(maximum, 1.0))
            self._overall()
            self._emit()
            if self.step >= 2 and not self.previews and node in self.previewing:
                self.service._no_previews(self.job)
            return
        if kind == "preview" and event.image:
            self.previews += 1
            mime = event.mime or "image/jpeg"
            preview = f"data:{mime};base64,{base64.b64encode(event.image).decode()}"
            self.service._preview(self.job, self.payload(preview=preview))
            return
        if kind in ("disconnected", "reconnected", "resubmitted"):
            message = {
                "disconnected": "Lost the live connection to ComfyUI; checking on the generation...",
                "reconnected": "Connected to ComfyUI again.",
                "resubmitted": "ComfyUI restarted and lost the generation; Pixel queued it again.",
            }[kind]
            connection: Literal["connected", "unreachable"] = (
                "unreachable" if kind == "disconnected" else "connected"
            )
            self.service._set_connection(connection)
            if kind == "resubmitted":
                # A new run of the same workflow starts from its first step: progress is
                # monotonic within one run, not across runs.
                self.fractions = dict.fromkeys(self.samplers, 0.0)
                self.done_nodes.clear()
                self.value, self.node, self.step, self.max_steps = 0.0, None, None, None
                self.status = "queued"
                self.previews = 0
                self.job.notes.append(message)
            self._emit(message=message, connection=connection)

    def _emit(self, **extra: Any) -> None:
        self.service._emit(self.job, "generation_progress", self.payload(**extra))
        if self.status == "running":
            self._schedule_write()

    def _schedule_write(self, force: bool = False) -> None:
        """Coalesced table updates: the chat gets every step, the table at most every 0.5 s."""
        if self._write_pending:
            return
        self._write_pending = True
        wait = 0.0 if force else _DB_PROGRESS_INTERVAL - (time.monotonic() - self._last_write)
        self.service._spawn(self._write(max(0.0, wait)))

    async def _write(self, wait: float) -> None:
        if wait:
            await asyncio.sleep(wait)
        self._write_pending = False
        self._last_write = time.monotonic()
        async with self.job.db_lock:
            if self.closed:  # the generation ended: never overwrite its final row
                return
            with contextlib.suppress(StudioError):
                await self.service.repository.update_generation(
                    self.job.generation_id, status="running", progress=min(self.value, 0.99)
                )

"""ComfyUI's wire format: its errors, websocket events, preview frames and history entries.

Shapes follow what a real ComfyUI (0.3.64) sent, recorded in ``../shared/comfyui/``; the
client (tools/comfyui.py) speaks HTTP and the websocket, this module reads what comes back.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from creative_studio.core.errors import StudioError

# Binary websocket frame types (comfy/server.py BinaryEventTypes).
PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
PREVIEW_IMAGE_WITH_METADATA = 4
_IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}
TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


class ComfyUIError(StudioError):
    """Something about ComfyUI the person should know, in words they can act on."""

    status_code = 502
    code = "comfyui_error"


class ComfyUIUnreachableError(ComfyUIError):
    status_code = 503
    code = "comfyui_unreachable"


class ComfyUIServerError(ComfyUIError):
    """The server answered with an error that is not a validation verdict (e.g. HTTP 500)."""

    code = "comfyui_server_error"


class ComfyUITimeoutError(ComfyUIError):
    status_code = 504
    code = "comfyui_timeout"


class ComfyUIRejectedError(ComfyUIError):
    """POST /prompt answered 400: ``error`` and ``node_errors`` exactly as ComfyUI sent them."""

    status_code = 422
    code = "comfyui_rejected"

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.error: dict[str, Any] = body.get("error") or {}
        self.node_errors: dict[str, Any] = body.get("node_errors") or {}
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = []
        for node_id, entry in self.node_errors.items():
            for err in entry.get("errors", []):
                detail = err.get("details") or err.get("message", "")
                parts.append(f"node {node_id} ({entry.get('class_type', '?')}): {detail}")
        head = self.error.get("message") or "the workflow was refused"
        if not parts and self.error.get("details"):
            parts.append(str(self.error["details"]))
        return f"ComfyUI refused the workflow: {head}" + (f" - {'; '.join(parts)}" if parts else "")

    def missing_values(self) -> list[tuple[str, str, Any]]:
        """(node_id, input_name, value) of every ``value_not_in_list`` (missing models)."""
        found = []
        for node_id, entry in self.node_errors.items():
            for err in entry.get("errors", []):
                if err.get("type") == "value_not_in_list":
                    info = err.get("extra_info") or {}
                    found.append((node_id, info.get("input_name", ""), info.get("received_value")))
        return found


@dataclass
class ComfyEvent:
    """One message of the live feed (or a synthetic one: disconnected, reconnected, ...)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    prompt_id: str | None = None
    received_at: float = field(default_factory=time.perf_counter)
    image: bytes | None = None  # preview frames
    mime: str | None = None


@dataclass
class ExecutionFailure:
    """An ``execution_error``: which node failed, with what exception."""

    node_id: str | None
    node_type: str | None
    exception_type: str
    exception_message: str

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ExecutionFailure:
        return cls(
            node_id=data.get("node_id"),
            node_type=data.get("node_type"),
            exception_type=str(data.get("exception_type") or ""),
            exception_message=str(data.get("exception_message") or ""),
        )

    @property
    def is_out_of_memory(self) -> bool:
        message = self.exception_message.lower()
        return (
            self.exception_type.endswith("OutOfMemoryError")
            or "out of memory" in message
            or "allocation on device" in message
        )

    def summary(self) -> str:
        first = self.exception_message.strip().splitlines()[0] if self.exception_message else ""
        where = f"{self.node_type} (node {self.node_id})" if self.node_type else "a node"
        return f"{where} failed: {first or self.exception_type}"[:500]


@dataclass(frozen=True)
class OutputRef:
    """A file a run produced, as /history lists it (fetch it with /view)."""

    node_id: str
    filename: str
    subfolder: str
    type: str
    key: str  # images, gifs, audio, ...
    animated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "filename": self.filename,
            "subfolder": self.subfolder,
            "type": self.type,
            "key": self.key,
            "animated": self.animated,
        }


@dataclass
class RunResult:
    prompt_id: str
    status: Literal["success", "error", "interrupted", "cancelled"]
    outputs: list[OutputRef] = field(default_factory=list)
    failure: ExecutionFailure | None = None
    history: dict[str, Any] = field(default_factory=dict)
    resubmitted: int = 0


def decode_preview(frame: bytes) -> tuple[str | None, bytes, dict[str, Any]] | None:
    """(mime, image bytes, metadata) of a binary preview frame, None for other frames.

    Type 1: u32 event, u32 image type (1 JPEG, 2 PNG), image. Type 4: u32 event, u32
    metadata length, JSON metadata (node_id, prompt_id, image_type), image.
    """
    if len(frame) < 8:
        return None
    (event,) = struct.unpack(">I", frame[:4])
    if event == PREVIEW_IMAGE:
        (kind,) = struct.unpack(">I", frame[4:8])
        return _IMAGE_TYPES.get(kind), frame[8:], {}
    if event == PREVIEW_IMAGE_WITH_METADATA:
        (length,) = struct.unpack(">I", frame[4:8])
        try:
            meta = json.loads(frame[8 : 8 + length])
        except ValueError:
            return None
        return meta.get("image_type"), frame[8 + length :], meta
    return None


def outputs_of(entry: dict[str, Any]) -> list[OutputRef]:
    """Every saved file in a /history entry (previews of type 'temp' are not results)."""
    found: list[OutputRef] = []
    for node_id, output in (entry.get("outputs") or {}).items():
        animated_flags = output.get("animated") or []
        animated = bool(animated_flags and any(animated_flags))
        for key, items in output.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and "filename" in item and item.get("type") != "temp":
                    found.append(
                        OutputRef(
                            node_id=str(node_id),
                            filename=str(item["filename"]),
                            subfolder=str(item.get("subfolder") or ""),
                            type=str(item.get("type") or "output"),
                            key=key,
                            animated=animated,
                        )
                    )
    return found


def result_of(prompt_id: str, entry: dict[str, Any], resubmitted: int = 0) -> RunResult:
    status = entry.get("status") or {}
    messages = status.get("messages") or []
    if status.get("status_str") == "success" or (status.get("completed") and not messages):
        return RunResult(prompt_id, "success", outputs_of(entry), None, entry, resubmitted)
    for kind, data in messages:
        if kind == "execution_interrupted":
            return RunResult(prompt_id, "interrupted", [], None, entry, resubmitted)
        if kind == "execution_error":
            failure = ExecutionFailure.from_data(data)
            return RunResult(prompt_id, "error", [], failure, entry, resubmitted)
    failure = ExecutionFailure(None, None, "unknown", "ComfyUI reported an error without details")
    return RunResult(prompt_id, "error", [], failure, entry, resubmitted)


EventHandler = Callable[[ComfyEvent], Awaitable[None] | None]

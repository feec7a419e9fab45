"""A ComfyUI test double over a real socket, built from what a real ComfyUI answered.

Everything it says comes from ``tests/data/comfyui/`` (a copy of the project's recordings of a
real ComfyUI 0.3.64, ``../shared/comfyui/``, kept in the repository so a clone tests alone):
``/object_info`` is the recorded file; a run replays the websocket message sequence of
``ws_transcript_ksampler.json`` with the prompt_id (and node ids, matched by class type)
substituted, plus binary preview frames in ComfyUI's format (type 1, or type 4 with
metadata when the client announced ``supports_preview_metadata`` like the recorded
second run); ``/history`` entries, ``/view``, ``/queue``, ``/interrupt`` and
``/upload/image`` answer in the recorded shapes (an upload keeps its name, a clash with
other bytes gets " (1)", LoadImage then accepts the name; an image run saves at the size its
chain from LoadImage makes, like the recorded ``i2i`` run, and a client reconnecting with the
running prompt's client_id hears the executing node, as ComfyUI's server.py does); ``POST /prompt`` runs a minimal version
of ComfyUI's validation (node class exists, output node present, required inputs,
links, enum membership, bounds) and answers with the same bodies and status codes as
``errors_*.json``. Scripted modes: out-of-memory ``execution_error``, a restart that
loses queue and history, and being down.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.parser
import email.policy
import json
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from uuid import uuid4

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.threaded_server import serve_in_thread, stop_in_thread

FIXTURES = Path(
    os.environ.get("COMFYUI_FIXTURES") or Path(__file__).resolve().parent / "data" / "comfyui"
)


@cache
def _fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixture(name: str) -> Any:
    """A recorded file of tests/data/comfyui/, parsed (a fresh copy each time)."""
    return json.loads(_fixture_text(name))


def object_info() -> dict[str, Any]:
    data: dict[str, Any] = fixture("object_info.json")
    return data


# Node definitions of the AnimateDiff-Evolved custom node pack (as its INPUT_TYPES declare
# them), for a double that plays a server with the pack installed.
ANIMATEDIFF_NODES: dict[str, Any] = {
    "ADE_AnimateDiffLoaderGen1": {
        "input": {
            "required": {
                "model": ["MODEL"],
                "model_name": [["mm_sd_v15_v2.ckpt"]],
                "beta_schedule": [
                    [
                        "autoselect",
                        "use existing",
                        "sqrt_linear (AnimateDiff)",
                        "linear (AnimateDiff-SDXL)",
                        "linear (HotshotXL/default)",
                        "avg(sqrt_linear,linear)",
                        "lcm avg(sqrt_linear,linear)",
                        "lcm",
                        "lcm >> sqrt_linear",
                        "sqrt",
                        "cosine",
                        "squaredcos_cap_v2",
                    ],
                    {"default": "autoselect"},
                ],
            },
            "optional": {
                "context_options": ["CONTEXT_OPTIONS"],
                "motion_lora": ["MOTION_LORA"],
                "ad_settings": ["AD_SETTINGS"],
                "ad_keyframes": ["AD_KEYFRAMES"],
                "sample_settings": ["SAMPLE_SETTINGS"],
                "scale_multival": ["MULTIVAL"],
                "effect_multival": ["MULTIVAL"],
                "per_block": ["PER_BLOCK"],
            },
        },
        "output": ["MODEL"],
        "output_is_list": [False],
        "output_name": ["MODEL"],
        "name": "ADE_AnimateDiffLoaderGen1",
        "display_name": "AnimateDiff Loader 🎭🅐🅓①",
        "description": "",
        "python_module": "custom_nodes.ComfyUI-AnimateDiff-Evolved",
        "category": "Animate Diff 🎭🅐🅓/① Gen1 nodes ①",
        "output_node": False,
    },
    "ADE_StandardUniformContextOptions": {
        "input": {
            "required": {
                "context_length": ["INT", {"default": 16, "min": 1, "max": 128}],
                "context_stride": ["INT", {"default": 1, "min": 1, "max": 32}],
                "context_overlap": ["INT", {"default": 4, "min": 0, "max": 128}],
            },
            "optional": {
                "fuse_method": [["pyramid", "flat", "overlap-linear"]],
                "use_on_equal_length": ["BOOLEAN", {"default": False}],
                "start_percent": ["FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}],
                "guarantee_steps": ["INT", {"default": 1, "min": 0, "max": 9007199254740991}],
                "prev_context": ["CONTEXT_OPTIONS"],
                "view_opts": ["VIEW_OPTS"],
            },
        },
        "output": ["CONTEXT_OPTIONS"],
        "output_is_list": [False],
        "output_name": ["CONTEXT_OPTS"],
        "name": "ADE_StandardUniformContextOptions",
        "display_name": "Context Options◆Standard Uniform 🎭🅐🅓",
        "description": "",
        "python_module": "custom_nodes.ComfyUI-AnimateDiff-Evolved",
        "category": "Animate Diff 🎭🅐🅓/context opts",
        "output_node": False,
    },
    "ADE_MultivalDynamic": {
        "input": {
            "required": {"float_val": ["FLOAT", {"default": 1.0, "min": 0.0, "step": 0.001}]},
            "optional": {"mask_optional": ["MASK"]},
        },
        "output": ["MULTIVAL"],
        "output_is_list": [False],
        "output_name": ["MULTIVAL"],
        "name": "ADE_MultivalDynamic",
        "display_name": "Multival 🎭🅐🅓",
        "description": "",
        "python_module": "custom_nodes.ComfyUI-AnimateDiff-Evolved",
        "category": "Animate Diff 🎭🅐🅓/multival",
        "output_node": False,
    },
}

# Loader inputs per models folder (what /models/{folder} lists and install_model extends).
MODEL_INPUTS: dict[str, list[tuple[str, str]]] = {
    "checkpoints": [
        ("CheckpointLoaderSimple", "ckpt_name"),
        ("ImageOnlyCheckpointLoader", "ckpt_name"),
        ("CheckpointLoader", "ckpt_name"),
        ("unCLIPCheckpointLoader", "ckpt_name"),
    ],
    "loras": [("LoraLoader", "lora_name"), ("LoraLoaderModelOnly", "lora_name")],
    "upscale_models": [("UpscaleModelLoader", "model_name")],
    "controlnet": [("ControlNetLoader", "control_net_name")],
    "diffusion_models": [("UNETLoader", "unet_name")],
    "text_encoders": [
        ("CLIPLoader", "clip_name"),
        ("DualCLIPLoader", "clip_name1"),
        ("DualCLIPLoader", "clip_name2"),
        # ComfyUI's Triple/QuadrupleCLIPLoader list the same folder (SD3.5, HiDream).
        *(("TripleCLIPLoader", f"clip_name{i}") for i in (1, 2, 3)),
        *(("QuadrupleCLIPLoader", f"clip_name{i}") for i in (1, 2, 3, 4)),
    ],
    "vae": [("VAELoader", "vae_name")],
    "animatediff_models": [("ADE_AnimateDiffLoaderGen1", "model_name")],
}

OOM_MESSAGE = (
    "Allocation on device 0 would exceed allowed memory. (out of memory)\n"
    "Currently allocated     : 7.52 GiB\n"
    "Requested               : 1.27 GiB\n"
    "Device limit            : 8.00 GiB\n"
    "Free (according to CUDA): 0 bytes\n"
    "PyTorch limit (set by user-supplied memory fraction)\n"
    "                        : 17179869184.00 GiB"
)


def png_bytes(width: int, height: int, rgb: tuple[int, int, int] = (40, 20, 90)) -> bytes:
    """A real PNG of one colour (what /view serves for a saved image)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height, 6)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


FAKE_JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + b"\x00" * 64 + b"\xff\xd9"
FAKE_WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8X" + b"\x00" * 40


def _json(body: Any, status_code: int = 200) -> Response:
    """ComfyUI's (aiohttp's) JSON content type, charset included."""
    return Response(
        json.dumps(body), status_code=status_code, media_type="application/json; charset=utf-8"
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Job:
    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    client_id: str | None


@dataclass
class ComfyUIDouble:
    """Start with ``start()``; scripted behaviour through the attributes below."""

    step_delay: float = 0.0  # seconds before each sampler step (slow runs for cancel tests)
    time_scale: float = 0.0  # 1.0 replays the recorded timings
    previews: bool = True  # send binary preview frames after each sampler step
    oom_above_pixels: int | None = None  # OOM when a latent is larger than this (w*h*batch)
    oom_times: int = 0  # the next N runs fail with OOM whatever their size
    paused: bool = False  # True: prompts stay pending (nothing starts)
    hold: bool = False  # True: the running prompt waits before its next sampler step
    animatediff: bool = False  # play a server with AnimateDiff-Evolved installed
    # Folder -> the only files it holds (e.g. {"checkpoints": [], "diffusion_models":
    # ["flux1-dev.safetensors"]}): a server with other models than the recording's.
    model_lists: dict[str, list[str]] | None = None
    history_lag: float = 0.01  # history is stored just after execution_success (as ComfyUI)
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    posted: list[dict[str, Any]] = field(default_factory=list)  # every POST /prompt body
    sent_progress: list[tuple[float, str, int]] = field(default_factory=list)  # (at, id, step)
    info: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    pending: list[_Job] = field(default_factory=list)
    running: _Job | None = None
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    _number: int = 0
    _counters: dict[str, int] = field(default_factory=dict)
    _interrupt: str | None = None
    _current: str | None = None  # the node the running prompt executes (ComfyUI's last_node_id)
    _sockets: dict[str, list[WebSocket]] = field(default_factory=dict)
    _metadata_clients: set[str] = field(default_factory=set)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self.reset_state(full=True)

    # ------------------------------------------------------------------ state

    def reset_state(self, *, full: bool = False) -> None:
        """What a ComfyUI restart loses: queue, history, counters (files on disk stay)."""
        self.history = {}
        self.pending = []
        self.running = None
        self._number = 0
        self._interrupt = None
        if full:
            self.info = object_info()
            if self.animatediff:
                self.info.update(copy.deepcopy(ANIMATEDIFF_NODES))
            for folder, names in (self.model_lists or {}).items():
                for class_type, input_name in MODEL_INPUTS.get(folder, []):
                    self._options(class_type, input_name)[:] = names
            self.files = {("input", "", "example.png"): png_bytes(64, 64)}

    def install_model(self, folder: str, name: str) -> None:
        for class_type, input_name in MODEL_INPUTS.get(folder, []):
            self._options(class_type, input_name, add=name)

    def remove_model(self, folder: str, name: str) -> None:
        for class_type, input_name in MODEL_INPUTS.get(folder, []):
            options = self._options(class_type, input_name)
            if name in options:
                options.remove(name)

    def _options(self, class_type: str, input_name: str, add: str | None = None) -> list[Any]:
        node = self.info.get(class_type)
        if node is None:
            return []
        for section in ("required", "optional"):
            spec = node["input"].get(section, {}).get(input_name)
            if spec is None:
                continue
            options: list[Any] = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
            if add is not None and add not in options:
                options.append(add)
            return options
        return []

    def models(self, folder: str) -> list[str]:
        found: list[str] = []
        for class_type, input_name in MODEL_INPUTS.get(folder, []):
            for option in self._options(class_type, input_name):
                if option not in found and option != "pixel_space":  # built in, not a file
                    found.append(option)
        return found

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ComfyUIDouble:
        self._server, self._thread, self.port = serve_in_thread(
            self.app(), name="the ComfyUI double", port=self.port, ws="websockets-sansio"
        )
        return self

    def stop(self) -> None:
        """The server goes away (connections refused until ``start()`` again)."""
        stop_in_thread(self._server, self._thread)
        self._server = None
        self._thread = None
        self._sockets = {}

    def restart(self, *, down_for: float = 0.0) -> None:
        """A ComfyUI restart: sockets drop, queue and history are gone."""
        self.stop()
        self.reset_state()
        if down_for:
            time.sleep(down_for)
        self.start()

    # ------------------------------------------------------------------ validation

    def validate(self, body: Any) -> tuple[int, Any] | None:
        """ComfyUI's validate_prompt, reduced to what the recorded errors show."""
        if not isinstance(body, dict) or "prompt" not in body:
            return 400, {
                "error": {
                    "type": "no_prompt",
                    "message": "No prompt provided",
                    "details": "No prompt provided",
                    "extra_info": {},
                },
                "node_errors": {},
            }
        prompt = body["prompt"]
        outputs: list[str] = []
        for node_id, node in prompt.items():
            class_type = node.get("class_type") if isinstance(node, dict) else None
            if class_type is None:
                return 400, {
                    "error": {
                        "type": "invalid_prompt",
                        "message": "Cannot execute because a node is missing the class_type property.",
                        "details": f"Node ID '#{node_id}'",
                        "extra_info": {},
                    },
                    "node_errors": {},
                }
            if class_type not in self.info:
                return 400, {
                    "error": {
                        "type": "invalid_prompt",
                        "message": f"Cannot execute because node {class_type} does not exist.",
                        "details": f"Node ID '#{node_id}'",
                        "extra_info": {},
                    },
                    "node_errors": {},
                }
            if self.info[class_type].get("output_node"):
                outputs.append(node_id)
        if not outputs:
            return 400, {
                "error": {
                    "type": "prompt_no_outputs",
                    "message": "Prompt has no outputs",
                    "details": "",
                    "extra_info": {},
                },
                "node_errors": {},
            }
        validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}

        def check(node_id: str) -> bool:
            if node_id in validated:
                return validated[node_id][0]
            node = prompt[node_id]
            declared = self.info[node["class_type"]]["input"]
            inputs = node.get("inputs", {})
            reasons: list[dict[str, Any]] = []
            valid = True
            try:
                for section in ("required", "optional"):
                    for name, spec in (declared.get(section) or {}).items():
                        if name not in inputs:
                            if section == "required":
                                reasons.append(
                                    {
                                        "type": "required_input_missing",
                                        "message": "Required input is missing",
                                        "details": name,
                                        "extra_info": {"input_name": name},
                                    }
                                )
                                valid = False
                            continue
                        value = inputs[name]
                        if isinstance(value, list) and len(value) == 2:
                            source = prompt[value[0]]  # KeyError, like ComfyUI
                            if source["class_type"] not in self.info or not check(value[0]):
                                valid = False
                            continue
                        reason = self._check_widget(name, spec, value)
                        if reason is not None:
                            reasons.append(reason)
                            valid = False
            except KeyError as error:
                validated[node_id] = (
                    False,
                    [
                        {
                            "type": "exception_during_validation",
                            "message": "Exception when validating node",
                            "details": str(error),
                            "extra_info": {
                                "exception_type": "KeyError",
                                "traceback": ["<2 traceback lines elided>"],
                            },
                        }
                    ],
                )
                return False
            validated[node_id] = (valid, reasons)
            return valid

        node_errors: dict[str, Any] = {}
        top: list[str] = []
        good = 0
        for output in outputs:
            if check(output):
                good += 1
                continue
            for reason in validated[output][1]:
                top.append(f"{reason['message']}: {reason['details']}")
            for node_id, (valid, reasons) in validated.items():
                if not valid and reasons:
                    entry = node_errors.setdefault(
                        node_id,
                        {
                            "errors": reasons,
                            "dependent_outputs": [],
                            "class_type": prompt[node_id]["class_type"],
                        },
                    )
                    if output not in entry["dependent_outputs"]:
                        entry["dependent_outputs"].append(output)
        if good:
            return None
        return 400, {
            "error": {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "\n".join(top),
                "extra_info": {},
            },
            "node_errors": node_errors,
        }

    @staticmethod
    def _check_widget(name: str, spec: list[Any], value: Any) -> dict[str, Any] | None:
        head = spec[0]
        config = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        options = (
            head if isinstance(head, list) else config.get("options") if head == "COMBO" else None
        )
        if options is not None:
            if value in options:
                return None
            if len(options) > 20:
                list_info, input_config = f"(list of length {len(options)})", None
            else:
                list_info, input_config = str(options), spec
            return {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": f"{name}: '{value}' not in {list_info}",
                "extra_info": {
                    "input_name": name,
                    "input_config": input_config,
                    "received_value": value,
                },
            }
        if head in ("INT", "FLOAT") and isinstance(value, int | float):
            if "min" in config and value < config["min"]:
                return {
                    "type": "value_smaller_than_min",
                    "message": f"Value {value} smaller than min of {config['min']}",
                    "details": name,
                    "extra_info": {
                        "input_name": name,
                        "input_config": spec,
                        "received_value": value,
                    },
                }
            if "max" in config and value > config["max"]:
                return {
                    "type": "value_bigger_than_max",
                    "message": f"Value {value} bigger than max of {config['max']}",
                    "details": name,
                    "extra_info": {
                        "input_name": name,
                        "input_config": spec,
                        "received_value": value,
                    },
                }
        return None

    # ------------------------------------------------------------------ execution

    async def _send(self, client_id: str | None, message: dict[str, Any]) -> None:
        targets = self._sockets.get(client_id or "", []) if client_id else []
        if message.get("type") == "status":
            targets = [ws for sockets in self._sockets.values() for ws in sockets]
        text = json.dumps(message)
        if message.get("type") == "progress":  # for the latency bench
            data = message["data"]
            self.sent_progress.append((time.perf_counter(), data["prompt_id"], data["value"]))
        for ws in list(targets):
            with contextlib.suppress(Exception):
                await ws.send_text(text)

    async def _send_bytes(self, client_id: str | None, data: bytes) -> None:
        for ws in list(self._sockets.get(client_id or "", [])):
            with contextlib.suppress(Exception):
                await ws.send_bytes(data)

    async def _status(self) -> None:
        remaining = len(self.pending) + (1 if self.running else 0)
        await self._send(
            None,
            {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}}},
        )

    def _output_files(self, job: _Job) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        size = self._latent_size(job.prompt)
        for node_id in job.outputs:
            node = job.prompt[node_id]
            class_type = node["class_type"]
            prefix = str(node["inputs"].get("filename_prefix", "ComfyUI"))
            self._counters[prefix] = self._counters.get(prefix, 0) + 1
            count = self._counters[prefix]
            if class_type == "SaveImage":
                name = f"{prefix}_{count:05}_.png"
                self.files[("output", "", name)] = png_bytes(*size[:2])
                outputs[node_id] = {
                    "images": [{"filename": name, "subfolder": "", "type": "output"}]
                }
            elif class_type in ("SaveAnimatedWEBP",):
                name = f"{prefix}_{count:05}_.webp"
                self.files[("output", "", name)] = FAKE_WEBP
                outputs[node_id] = {
                    "images": [{"filename": name, "subfolder": "", "type": "output"}],
                    "animated": [True],
                }
            elif class_type == "PreviewImage":
                name = f"ComfyUI_temp_drctq_{count:05}_.png"
                self.files[("temp", "", name)] = png_bytes(*size[:2])
                outputs[node_id] = {"images": [{"filename": name, "subfolder": "", "type": "temp"}]}
        return outputs

    def _latent_size(self, prompt: dict[str, Any]) -> tuple[int, int, int]:
        """The size a run makes: its empty latent, else its image chain from LoadImage
        (the uploaded file's own size through ImageScale / ImageScaleBy / an upscale
        model, like the recorded ``i2i`` run: a 16x16 upload scaled by 2 saved 32x32)."""
        for node in prompt.values():
            inputs = node.get("inputs", {})
            if node.get("class_type", "").startswith("Empty") and "width" in inputs:
                batch = int(inputs.get("batch_size", 1)) * int(inputs.get("length", 1))
                return int(inputs["width"]), int(inputs["height"]), batch
        for node_id in prompt:
            if prompt[node_id].get("class_type") in ("SaveImage", "PreviewImage"):
                link = prompt[node_id]["inputs"].get("images")
                size = self._image_size(prompt, link, 0)
                if size is not None:
                    return size[0], size[1], 1
        return 64, 64, 1

    def _image_size(self, prompt: dict[str, Any], link: Any, depth: int) -> tuple[int, int] | None:
        if not (isinstance(link, list) and len(link) == 2) or depth > 50 or link[0] not in prompt:
            return None
        node = prompt[link[0]]
        class_type, inputs = node.get("class_type"), node.get("inputs", {})
        if class_type == "LoadImage":
            sub, _, name = str(inputs.get("image", "")).rpartition("/")
            data = self.files.get(("input", sub, name))
            if data is None or data[:8] != b"\x89PNG\r\n\x1a\n":
                return (64, 64) if data is not None else None
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if class_type == "ImageScale":
            return int(inputs["width"]), int(inputs["height"])
        for key in ("image", "pixels", "samples", "images"):
            if key in inputs:
                size = self._image_size(prompt, inputs[key], depth + 1)
                break
        else:
            return None
        if size is None:
            return None
        if class_type == "ImageScaleBy":
            factor = float(inputs.get("scale_by", 1.0))
            return round(size[0] * factor), round(size[1] * factor)
        if class_type == "ImageUpscaleWithModel":
            return size[0] * 4, size[1] * 4
        return size

    def _node_map(self, prompt: dict[str, Any]) -> dict[str, str]:
        """Recorded node id -> this prompt's node id of the same class type."""
        recorded = fixture("ws_transcript_ksampler.json")["workflow"]
        used: set[str] = set()
        mapping: dict[str, str] = {}
        ours = sorted(prompt, key=lambda k: (len(k), k))
        for rec_id in sorted(recorded, key=lambda k: (len(k), k)):
            class_type = recorded[rec_id]["class_type"]
            for node_id in ours:
                if node_id not in used and prompt[node_id]["class_type"] == class_type:
                    mapping[rec_id] = node_id
                    used.add(node_id)
                    break
        return mapping

    def _remap(
        self, message: dict[str, Any], job: _Job, mapping: dict[str, str]
    ) -> dict[str, Any] | None:
        message = copy.deepcopy(message)
        data = message.get("data", {})
        kind = message["type"]
        if "prompt_id" in data:
            data["prompt_id"] = job.prompt_id
        if kind in ("executing", "progress"):
            node = data.get("node")
            if node is not None:
                if node not in mapping:
                    return None
                data["node"] = mapping[node]
                if "display_node" in data:
                    data["display_node"] = mapping[node]
        if kind == "progress_state":
            nodes = {}
            for node_id, entry in data.get("nodes", {}).items():
                if node_id in mapping:
                    new = mapping[node_id]
                    entry.update(
                        node_id=new, display_node_id=new, real_node_id=new, prompt_id=job.prompt_id
                    )
                    nodes[new] = entry
            data["nodes"] = nodes
        if "timestamp" in data:
            data["timestamp"] = _now_ms()
        return message

    def _interrupted(self, job: _Job) -> bool:
        return self._interrupt is not None and self._interrupt in ("*", job.prompt_id)

    def _oom(self, job: _Job) -> bool:
        if self.oom_times > 0:
            self.oom_times -= 1
            return True
        if self.oom_above_pixels is None:
            return False
        width, height, batch = self._latent_size(job.prompt)
        return width * height * batch > self.oom_above_pixels

    async def _run(self, job: _Job) -> None:
        recorded = fixture("ws_transcript_ksampler.json")["runs"][0]["ws"]
        mapping = self._node_map(job.prompt)
        start_ms = _now_ms()
        history_messages: list[Any] = [
            ["execution_start", {"prompt_id": job.prompt_id, "timestamp": start_ms}],
            ["execution_cached", {"nodes": [], "prompt_id": job.prompt_id, "timestamp": start_ms}],
        ]
        oom = self._oom(job)
        executed: list[str] = []
        current: str | None = None
        previous_t = recorded[0]["t"]
        sampler = mapping.get("3")
        for item in recorded:
            message = item["msg"]
            if self.time_scale:
                await asyncio.sleep((item["t"] - previous_t) * self.time_scale)
            previous_t = item["t"]
            if self._interrupted(job):
                await self._finish_interrupted(job, current, executed, history_messages)
                return
            kind = message["type"]
            if kind == "executed":
                for node_id, output in self._output_files(job).items():
                    await self._send(
                        job.client_id,
                        {
                            "type": "executed",
                            "data": {
                                "node": node_id,
                                "display_node": node_id,
                                "output": output,
                                "prompt_id": job.prompt_id,
                            },
                        },
                    )
                    job.extra_data.setdefault("_outputs", {})[node_id] = output
                continue
            if kind == "execution_success":
                remapped = self._remap(message, job, mapping)
                assert remapped is not None
                await self._send(job.client_id, remapped)
                history_messages.append(["execution_success", remapped["data"]])
                await asyncio.sleep(self.history_lag)
                self._store(job, "success", history_messages, job.extra_data.pop("_outputs", {}))
                continue
            # A flag set from the test's thread: polled (an asyncio.Event is loop-bound).
            while kind == "progress" and self.hold and not self._interrupted(job):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            if kind == "progress" and self.step_delay:
                await asyncio.sleep(self.step_delay)
                if self._interrupted(job):
                    await self._finish_interrupted(job, current, executed, history_messages)
                    return
            remapped = self._remap(message, job, mapping)
            if remapped is None:
                continue
            if kind == "status":
                if any(m[0] == "execution_success" for m in history_messages):
                    self.running = None  # the queue is empty again once the run is stored
                await self._status()
                continue
            if kind == "executing":
                node = remapped["data"].get("node")
                if current is not None and current not in executed:
                    executed.append(current)
                current = self._current = node
                if node is None:
                    await self._send(job.client_id, remapped)
                    continue
            await self._send(job.client_id, remapped)
            if kind == "progress" and remapped["data"].get("node") == sampler:
                if oom:
                    await self._finish_oom(job, current, executed, history_messages)
                    return
                if self.previews:
                    await self._preview(job, sampler)
        self.running = None

    async def _preview(self, job: _Job, node_id: str | None) -> None:
        if job.client_id in self._metadata_clients:
            meta = json.dumps(
                {
                    "node_id": node_id,
                    "prompt_id": job.prompt_id,
                    "display_node_id": node_id,
                    "parent_node_id": None,
                    "real_node_id": node_id,
                    "image_type": "image/jpeg",
                }
            ).encode()
            frame = struct.pack(">II", 4, len(meta)) + meta + FAKE_JPEG
        else:
            frame = struct.pack(">II", 1, 1) + FAKE_JPEG
        await self._send_bytes(job.client_id, frame)

    def _store(self, job: _Job, status: str, messages: list[Any], outputs: dict[str, Any]) -> None:
        self.history[job.prompt_id] = {
            "prompt": [
                job.number,
                job.prompt_id,
                job.prompt,
                {k: v for k, v in job.extra_data.items() if not k.startswith("_")},
                job.outputs,
            ],
            "outputs": outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages,
            },
            "meta": {
                node_id: {
                    "node_id": node_id,
                    "display_node": node_id,
                    "parent_node": None,
                    "real_node_id": node_id,
                }
                for node_id in outputs
            },
        }

    async def _finish(self, job: _Job) -> None:
        self.running = None
        await self._status()
        await self._send(
            job.client_id, {"type": "executing", "data": {"node": None, "prompt_id": job.prompt_id}}
        )

    async def _finish_interrupted(
        self, job: _Job, current: str | None, executed: list[str], messages: list[Any]
    ) -> None:
        self._interrupt = None
        node_id = current or next(iter(job.prompt))
        data = {
            "prompt_id": job.prompt_id,
            "node_id": node_id,
            "node_type": job.prompt[node_id]["class_type"],
            "executed": executed,
            "timestamp": _now_ms(),
        }
        await self._send(job.client_id, {"type": "execution_interrupted", "data": data})
        messages.append(["execution_interrupted", data])
        self._store(job, "error", messages, {})
        await self._finish(job)

    async def _finish_oom(
        self, job: _Job, current: str | None, executed: list[str], messages: list[Any]
    ) -> None:
        template = fixture("errors_runtime_execution_error.json")["history"]["body"]
        recorded = next(iter(template.values()))["status"]["messages"][-1][1]
        node_id = current or next(iter(job.prompt))
        data = copy.deepcopy(recorded)
        data.update(
            prompt_id=job.prompt_id,
            node_id=node_id,
            node_type=job.prompt[node_id]["class_type"],
            executed=executed,
            exception_message=OOM_MESSAGE,
            exception_type="torch.OutOfMemoryError",
            current_inputs={},
            current_outputs=list(job.prompt),
            timestamp=_now_ms(),
        )
        await self._send(job.client_id, {"type": "execution_error", "data": data})
        messages.append(["execution_error", data])
        self._store(job, "error", messages, {})
        await self._finish(job)

    async def _worker(self) -> None:
        while True:
            await asyncio.sleep(0.002)
            if self.paused or not self.pending:
                continue
            job = self.pending.pop(0)
            self.running = job
            try:
                await self._run(job)
                if self.running is job:
                    await self._finish(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a double bug must be loud in the test output
                import traceback

                traceback.print_exc()
                self.running = None

    # ------------------------------------------------------------------ routes

    def _log(self, request: Request, body: Any = None) -> None:
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": str(request.url.query),
                "body": body,
                "at": time.monotonic(),
            }
        )

    async def _post_prompt(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            self._log(request, raw.decode(errors="replace"))
            return PlainTextResponse(
                "500 Internal Server Error\n\nServer got itself in trouble", status_code=500
            )
        self._log(request, body)
        self.posted.append(body)
        refused = self.validate(body)
        if refused is not None:
            return _json(refused[1], status_code=refused[0])
        prompt_id = body.get("prompt_id") or str(uuid4())
        number = self._number
        self._number += 1
        if body.get("front"):
            number = -number
        extra = dict(body.get("extra_data") or {})
        if body.get("client_id"):
            extra["client_id"] = body["client_id"]
        outputs = [
            n
            for n, node in body["prompt"].items()
            if self.info[node["class_type"]].get("output_node")
        ]
        self.pending.append(
            _Job(number, prompt_id, body["prompt"], extra, outputs, body.get("client_id"))
        )
        await self._status()
        return _json({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    async def _get_prompt(self, request: Request) -> Response:
        remaining = len(self.pending) + (1 if self.running else 0)
        return _json({"exec_info": {"queue_remaining": remaining}})

    async def _object_info(self, request: Request) -> Response:
        self._log(request)
        return _json(self.info)

    async def _object_info_one(self, request: Request) -> Response:
        name = request.path_params["node"]
        return _json({name: self.info[name]} if name in self.info else {})

    async def _system_stats(self, request: Request) -> Response:
        self._log(request)
        return _json(fixture("get_system_stats.json")["body"])

    async def _features(self, request: Request) -> Response:
        return _json(fixture("get_features.json")["body"])

    def _queue_entry(self, job: _Job) -> list[Any]:
        return [job.number, job.prompt_id, job.prompt, job.extra_data, job.outputs]

    async def _get_queue(self, request: Request) -> Response:
        self._log(request)
        running = [self._queue_entry(self.running)] if self.running else []
        return _json(
            {
                "queue_running": running,
                "queue_pending": [self._queue_entry(j) for j in self.pending],
            }
        )

    async def _post_queue(self, request: Request) -> Response:
        body = await request.json()
        self._log(request, body)
        if body.get("clear"):
            self.pending = []
        for prompt_id in body.get("delete") or []:
            self.pending = [j for j in self.pending if j.prompt_id != prompt_id]
        return Response(status_code=200)

    async def _history(self, request: Request) -> Response:
        self._log(request)
        items = list(self.history.items())
        max_items = request.query_params.get("max_items")
        if max_items:
            items = items[-int(max_items) :]
        return _json(dict(reversed(items)) if max_items else dict(items))

    async def _history_one(self, request: Request) -> Response:
        self._log(request)
        prompt_id = request.path_params["prompt_id"]
        entry = self.history.get(prompt_id)
        return _json({prompt_id: entry} if entry else {})

    async def _post_history(self, request: Request) -> Response:
        body = await request.json()
        if body.get("clear"):
            self.history = {}
        for prompt_id in body.get("delete") or []:
            self.history.pop(prompt_id, None)
        return Response(status_code=200)

    async def _interrupt_route(self, request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw) if raw.strip() else {}
        self._log(request, body)
        target = body.get("prompt_id") if isinstance(body, dict) else None
        if target is None:
            self._interrupt = "*"
        elif self.running is not None and self.running.prompt_id == target:
            self._interrupt = target
        return Response(status_code=200)

    async def _free(self, request: Request) -> Response:
        self._log(request, await request.json())
        return Response(status_code=200)

    async def _view(self, request: Request) -> Response:
        self._log(request)
        filename = request.query_params.get("filename", "")
        kind = request.query_params.get("type", "output")
        subfolder = request.query_params.get("subfolder", "")
        if (
            kind not in ("output", "input", "temp")
            or ".." in filename
            or "/" in filename
            or filename.startswith("/")
        ):
            return Response(status_code=400)
        data = self.files.get((kind, subfolder, filename))
        if data is None:
            return Response(status_code=404)
        media = (
            "image/png"
            if filename.endswith(".png")
            else "image/webp"
            if filename.endswith(".webp")
            else "application/octet-stream"
        )
        return Response(data, media_type=media)

    async def _models(self, request: Request) -> Response:
        return _json(fixture("get_models.json")["body"])

    async def _models_folder(self, request: Request) -> Response:
        return _json(self.models(request.path_params["folder"]))

    @staticmethod
    def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
        """Form fields of a multipart body: name -> (filename, bytes). (Standard library
        only, so the double needs no multipart package.)"""
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
        return fields

    async def _upload(self, request: Request) -> Response:
        form = self._multipart(request.headers.get("content-type", ""), await request.body())
        upload = form.get("image")
        self._log(
            request, {k: v[1].decode(errors="replace") for k, v in form.items() if k != "image"}
        )
        if upload is None or upload[0] is None:
            return Response(status_code=400)
        data = upload[1]
        subfolder = form.get("subfolder", (None, b""))[1].decode()
        name = upload[0] or "upload.png"
        overwrite = form.get("overwrite", (None, b""))[1].decode().lower() == "true"
        if not overwrite:
            stem, dot, ext = name.rpartition(".")
            base, counter = (stem, ext) if dot else (name, "")
            candidate, i = name, 1
            while (
                existing := self.files.get(("input", subfolder, candidate))
            ) is not None and existing != data:
                candidate = f"{base} ({i}).{counter}" if dot else f"{name} ({i})"
                i += 1
            name = candidate
        self.files[("input", subfolder, name)] = data
        self._options("LoadImage", "image", add=f"{subfolder}/{name}" if subfolder else name)
        return _json({"name": name, "subfolder": subfolder, "type": "input"})

    async def _ws(self, websocket: WebSocket) -> None:
        client_id = websocket.query_params.get("clientId") or uuid4().hex
        await websocket.accept()
        self._sockets.setdefault(client_id, []).append(websocket)
        remaining = len(self.pending) + (1 if self.running else 0)
        await websocket.send_text(
            json.dumps(
                {
                    "type": "status",
                    "data": {
                        "status": {"exec_info": {"queue_remaining": remaining}},
                        "sid": client_id,
                    },
                }
            )
        )
        # Like ComfyUI's server.py: a client reconnecting with the id of the running
        # prompt's client hears which node runs now (no prompt_id in that message).
        if self.running is not None and self.running.client_id == client_id and self._current:
            await websocket.send_text(
                json.dumps({"type": "executing", "data": {"node": self._current}})
            )
        try:
            while True:
                text = await websocket.receive_text()
                try:
                    message = json.loads(text)
                except ValueError:
                    continue
                if message.get("type") == "feature_flags":
                    if (message.get("data") or {}).get("supports_preview_metadata"):
                        self._metadata_clients.add(client_id)
                    await websocket.send_text(
                        json.dumps(
                            {"type": "feature_flags", "data": fixture("get_features.json")["body"]}
                        )
                    )
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            sockets = self._sockets.get(client_id, [])
            if websocket in sockets:
                sockets.remove(websocket)

    def app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            self._loop = asyncio.get_running_loop()
            worker = asyncio.create_task(self._worker())
            try:
                yield
            finally:
                worker.cancel()
                for sockets in list(self._sockets.values()):
                    for ws in list(sockets):
                        with contextlib.suppress(Exception):
                            await ws.close(code=1012)

        return Starlette(
            routes=[
                Route("/prompt", self._post_prompt, methods=["POST"]),
                Route("/prompt", self._get_prompt, methods=["GET"]),
                Route("/object_info", self._object_info, methods=["GET"]),
                Route("/object_info/{node}", self._object_info_one, methods=["GET"]),
                Route("/system_stats", self._system_stats, methods=["GET"]),
                Route("/features", self._features, methods=["GET"]),
                Route("/queue", self._get_queue, methods=["GET"]),
                Route("/queue", self._post_queue, methods=["POST"]),
                Route("/history", self._history, methods=["GET"]),
                Route("/history", self._post_history, methods=["POST"]),
                Route("/history/{prompt_id}", self._history_one, methods=["GET"]),
                Route("/interrupt", self._interrupt_route, methods=["POST"]),
                Route("/free", self._free, methods=["POST"]),
                Route("/view", self._view, methods=["GET"]),
                Route("/models", self._models, methods=["GET"]),
                Route("/models/{folder}", self._models_folder, methods=["GET"]),
                Route("/upload/image", self._upload, methods=["POST"]),
                WebSocketRoute("/ws", self._ws),
            ],
            lifespan=lifespan,
        )


def closed_url() -> str:
    """An address where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"

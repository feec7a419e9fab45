"""A test double that speaks Ollama's HTTP API over a real socket.

It reproduces the wire format of a real Ollama server (version 0.x REST API): streamed
NDJSON from /api/chat ending with a ``done`` message that carries the counters
(total_duration, load_duration, prompt_eval_count, prompt_eval_duration, eval_count,
eval_duration, all durations in nanoseconds), /api/tags, /api/show, /api/pull progress
lines, /api/version, and the 404 body ``{"error": "model \"x\" not found, try pulling it
first"}`` for a model that is not installed. Structured output: when the request has a
``format`` schema, the reply is whatever the test scripted (a real server would constrain
decoding; the studio validates either way).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.threaded_server import serve_in_thread, stop_in_thread

Reply = Callable[[dict[str, Any]], str]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _model_entry(name: str) -> dict[str, Any]:
    family = name.split(":")[0].rstrip("0123456789.")
    return {
        "name": name,
        "model": name,
        "modified_at": "2026-10-01T12:00:00.000000000Z",
        "size": 2019393189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family or "llama",
            "families": [family or "llama"],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
        },
    }


@dataclass
class OllamaDouble:
    """Configure ``models`` and ``reply``, then ``start()``; ``requests`` records every call."""

    models: list[str] = field(default_factory=lambda: ["llama3.2:3b"])
    reply: Reply = lambda request: "A neon-soaked street, wet asphalt, magenta and cyan."
    token_delay: float = 0.0
    hang_seconds: float = 0.0  # delay before the first byte (to provoke a client timeout)
    error_line: str | None = None  # a streamed reply ends with Ollama's {"error": ...} line
    requests: list[dict[str, Any]] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _installed(self, name: str) -> bool:
        wanted = name if ":" in name else f"{name}:latest"
        return wanted in self.models or name in self.models

    @staticmethod
    def _not_found(name: str) -> JSONResponse:
        return JSONResponse(
            {"error": f'model "{name}" not found, try pulling it first'}, status_code=404
        )

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"path": "/api/chat", **body})
        name = body.get("model", "")
        if not self._installed(name):
            return self._not_found(name)
        if self.hang_seconds:
            await asyncio.sleep(self.hang_seconds)
        text = self.reply(body)
        prompt_tokens = sum(
            len(str(m.get("content", "")).split()) for m in body.get("messages", [])
        )
        pieces = [p for p in text.replace(" ", " \0").split("\0") if p]

        def done_line(content: str) -> dict[str, Any]:
            return {
                "model": name,
                "created_at": _now(),
                "message": {"role": "assistant", "content": content},
                "done_reason": "stop",
                "done": True,
                "total_duration": 4883583458,
                "load_duration": 1334875,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": 342546000,
                "eval_count": len(pieces),
                "eval_duration": 4535599000,
            }

        if body.get("stream", True) is False:
            return JSONResponse(done_line(text))

        async def lines() -> AsyncIterator[bytes]:
            for piece in pieces:
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                chunk = {
                    "model": name,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
                yield (json.dumps(chunk) + "\n").encode()
            if self.error_line is not None:  # as Ollama reports a failure mid-reply
                yield (json.dumps({"error": self.error_line}) + "\n").encode()
                return
            yield (json.dumps(done_line("")) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def _generate(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"path": "/api/generate", **body})
        name = body.get("model", "")
        if not self._installed(name):
            return self._not_found(name)
        # An empty prompt with keep_alive 0 is how clients unload a model.
        return JSONResponse(
            {
                "model": name,
                "created_at": _now(),
                "response": "",
                "done": True,
                "done_reason": "unload",
            }
        )

    async def _tags(self, request: Request) -> Response:
        self.requests.append({"path": "/api/tags"})
        return JSONResponse({"models": [_model_entry(m) for m in self.models]})

    async def _version(self, request: Request) -> Response:
        return JSONResponse({"version": "0.12.6"})

    async def _show(self, request: Request) -> Response:
        body = await request.json()
        name = body.get("model") or body.get("name", "")
        self.requests.append({"path": "/api/show", **body})
        if not self._installed(name):
            return self._not_found(name)
        entry = _model_entry(name)
        return JSONResponse(
            {
                "license": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT",
                "modelfile": f"FROM {name}\n",
                "parameters": 'stop "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": entry["details"],
                "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
                "capabilities": ["completion", "tools"],
                "modified_at": entry["modified_at"],
            }
        )

    async def _pull(self, request: Request) -> Response:
        body = await request.json()
        name = body.get("model") or body.get("name", "")
        self.requests.append({"path": "/api/pull", **body})
        if name.startswith("no-such"):
            return JSONResponse(
                {"error": "pull model manifest: file does not exist"}, status_code=500
            )
        digest = "sha256:dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff"
        total = 2019377376

        async def lines() -> AsyncIterator[bytes]:
            yield b'{"status":"pulling manifest"}\n'
            for done in (0, total // 4, total // 2, total):
                line = {
                    "status": f"pulling {digest[7:19]}",
                    "digest": digest,
                    "total": total,
                    "completed": done,
                }
                yield (json.dumps(line) + "\n").encode()
            for status in ("verifying sha256 digest", "writing manifest", "success"):
                yield (json.dumps({"status": status}) + "\n").encode()
            self.pulled.append(name)
            if name not in self.models:
                self.models.append(name if ":" in name else f"{name}:latest")

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/chat", self._chat, methods=["POST"]),
                Route("/api/generate", self._generate, methods=["POST"]),
                Route("/api/tags", self._tags, methods=["GET"]),
                Route("/api/version", self._version, methods=["GET"]),
                Route("/api/show", self._show, methods=["POST"]),
                Route("/api/pull", self._pull, methods=["POST"]),
            ]
        )

    def start(self) -> OllamaDouble:
        self._server, self._thread, self.port = serve_in_thread(
            self.app(), name="the Ollama double"
        )
        return self

    def stop(self) -> None:
        stop_in_thread(self._server, self._thread)


def closed_port() -> str:
    """An address where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"

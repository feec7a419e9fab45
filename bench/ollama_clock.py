"""A model server for the API bench: Ollama's /api/chat wire format, tokens on a fixed clock.

    python -m bench.ollama_clock TOKENS_PER_SECOND TOKENS_PER_TURN   # prints its URL

The studio reaches it as it reaches Ollama (``ollama:bench-clock``, the studio's own client:
tools/ollama_stream.py for streamed turns, ChatOllama for the rest), so the bench measures
the path an Ollama user's tokens take. It runs in its own process, on bare asyncio
protocols, one timer callback per token and uvloop (bench/fast_loop.py), so that serving
100 streams costs it little of the machine the studio is measured on.

A streamed turn is TOKENS_PER_TURN NDJSON lines, token k due k/rate after the request
arrived whether or not the studio keeps up (late tokens go at once, as a model server's
buffered ones do); each token's text is ``⏱<ns> <word> ``: the wall-clock time it was due,
so the client reading the SSE stream can tell its latency, and a made-up word no turn used
before, so the discussion goes on (see ``_word``). Votes answer a concrete "not yet", so the
team discusses up to the session's max_rounds (bench/api.py asks for 10) and a conversation
streams for the whole row; structured turns (a ``format`` schema) and the plan, review and
check turns answer at once with a short text (the studio records a failed plan and stops
there, as the bench wants: it measures the discussion). /api/tags, /api/show and /api/version answer as Ollama does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from typing import Any, cast

from bench.fast_loop import run

MODEL = "bench-clock:latest"
QUICK = ("Turn: plan", "Turn: review", "Turn: vote", "Turn: plan_check")


def _reply_text(body: dict[str, Any]) -> str | None:
    """The whole reply of a turn answered at once, or None for a streamed turn."""
    messages = body.get("messages") or [{}]
    last = str(messages[-1].get("content") or "")
    if "Turn: vote" in last:  # a concrete "not yet": the team goes on for another round
        return "NOT YET - the horizon light needs a colder blue."
    if body.get("format") or any(marker in last for marker in QUICK):
        return "word " * 5
    return None


def _line(content: str, done: bool) -> bytes:
    part: dict[str, Any] = {
        "model": MODEL,
        "created_at": "2026-12-01T12:00:00Z",
        "message": {"role": "assistant", "content": content},
        "done": done,
    }
    if done:
        part |= {
            "done_reason": "stop",
            "total_duration": 1,
            "load_duration": 1,
            "prompt_eval_count": 1,
            "prompt_eval_duration": 1,
            "eval_count": 1,
            "eval_duration": 1,
        }
    return json.dumps(part).encode() + b"\n"


_TOKEN_HEAD, _TOKEN_TAIL = _line("\x00", False).split(b"\\u0000")


_SYLLABLES = [
    b"ka",
    b"lo",
    b"mi",
    b"ren",
    b"tu",
    b"sa",
    b"vor",
    b"ne",
    b"dri",
    b"pal",
    b"qui",
    b"zo",
]


def _word(n: int) -> bytes:
    """A made-up word, a different one for every ``n`` (up to 12**4): each turn brings words
    nobody said before, so the team's consensus detector keeps the discussion going as it
    does for a lively real one, and the bench's conversations stream for the whole row."""
    parts = []
    for _ in range(4):
        n, k = divmod(n, len(_SYLLABLES))
        parts.append(_SYLLABLES[k])
    return b"".join(parts)


def _token_line(due_ns: int, n: int) -> bytes:
    """``_line(f"⏱{due_ns} {word} ", False)``, without a json.dumps per token."""
    return b"%s\\u23f1%d %s %s" % (_TOKEN_HEAD, due_ns, _word(n), _TOKEN_TAIL)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_WORDS = itertools.count(int(time.time()) % 9973)


class _Connection(asyncio.Protocol):
    def __init__(self, rate: float, per_turn: int) -> None:
        self.rate, self.per_turn = rate, per_turn
        self.buffer = b""
        self.busy = False
        self.task: asyncio.Future[None] | None = None  # the request being answered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for header in lines[1:]:
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(rest) < length:
            return
        body, self.buffer = rest[:length], rest[length:]
        self.busy = True
        self.task = asyncio.ensure_future(self._answer(method, path.split("?")[0], body))

    def _send(self, status: str, payload: bytes, kind: str = "application/json") -> None:
        self.transport.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )

    async def _answer(self, method: str, path: str, raw: bytes) -> None:
        try:
            if path == "/api/chat" and method == "POST":
                await self._chat(json.loads(raw or b"{}"))
            elif path == "/api/tags":
                model = {"name": MODEL, "model": MODEL, "size": 1, "details": {}}
                self._send("200 OK", json.dumps({"models": [model]}).encode())
            elif path == "/api/show":
                self._send("200 OK", json.dumps({"capabilities": ["completion"]}).encode())
            elif path == "/api/version":
                self._send("200 OK", b'{"version": "0.12.0"}')
            else:
                self._send("404 Not Found", b'{"error": "not found"}')
        finally:
            self.busy = False
            if self.buffer and not self.transport.is_closing():
                self._next_request()

    async def _chat(self, body: dict[str, Any]) -> None:
        quick = _reply_text(body)
        if body.get("stream", True) is False:
            self._send("200 OK", _line(quick or "word " * 5, True))
            return
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        if quick is not None:
            self.transport.write(
                _chunk(_line(quick, False)) + _chunk(_line("", True)) + b"0\r\n\r\n"
            )
            return
        # One timer callback per token, no task or future: serving 100 streams costs this
        # process as little as it can of the machine the studio is measured on.
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        start, start_ns = loop.time(), time.time_ns()
        step_ns = 1_000_000_000 // int(self.rate)

        def send(k: int) -> None:
            if self.transport.is_closing():  # the studio cancelled the turn
                finished.set_result(None)
                return
            self.transport.write(_chunk(_token_line(start_ns + k * step_ns, next(_WORDS))))
            if k < self.per_turn:
                loop.call_at(start + (k + 1) / self.rate, send, k + 1)
                return
            self.transport.write(_chunk(_line("", True)) + b"0\r\n\r\n")
            finished.set_result(None)

        loop.call_at(start + 1 / self.rate, send, 1)
        await finished


async def main(rate: float, per_turn: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(rate, per_turn), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    run(main(float(sys.argv[1]), int(sys.argv[2])))

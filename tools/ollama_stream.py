"""ChatOllama whose streamed turns cost a fraction of the CPU per token.

Every token a specialist writes is one NDJSON line from Ollama. Through ``ChatOllama.astream``
a line becomes an ``ollama.ChatResponse`` (pydantic), an ``AIMessageChunk`` and a
``ChatGenerationChunk`` (pydantic each), and LangChain adds each chunk to the ones before
it: about 110 µs of CPU per token (bench/models.py measures it), the largest single cost of
a token on its way to the person. ``astream_text`` sends the same request - the body is
built by ChatOllama and ollama-python's own types, so options, keep-alive, images and
format are exactly theirs - over the same httpx client, and reads each line with one
``json.loads``.

Everything else (``ainvoke``, structured output, LangGraph's "messages" stream when no
token sink is offered) is ChatOllama's own. nodes/token_stream.py uses ``astream_text``
when the model has it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from langchain_core.messages import BaseMessage
from langchain_ollama import ChatOllama
from langchain_ollama.chat_models import (
    _get_usage_metadata_from_generation_info as usage_from_done,  # ChatOllama's own reading
)
from ollama import Image, Message, ResponseError
from ollama._types import ChatRequest

__all__ = ["StreamingChatOllama", "stream_end"]


def stream_end(done: dict[str, Any]) -> dict[str, Any]:
    """What ChatOllama keeps of the final ``done`` line: response and usage metadata."""
    response = {k: v for k, v in done.items() if k != "message"}
    if "model" in response:
        response["model_name"] = response["model"]
    response["model_provider"] = "ollama"
    return {"response_metadata": response, "usage_metadata": usage_from_done(done)}


def _message(raw: dict[str, Any]) -> Message:
    """As ollama-python's client copies a message: empty fields dropped, images wrapped."""
    fields = {k: v for k, v in raw.items() if v}
    if "images" in fields:
        fields["images"] = [Image(value=image) for image in fields["images"]]
    return Message.model_validate(fields)


class StreamingChatOllama(ChatOllama):
    """ChatOllama plus ``astream_text``: the reply's text pieces, then its metadata."""

    def request_body(self, messages: list[BaseMessage]) -> dict[str, Any]:
        """The JSON ``AsyncClient.chat`` would send for this streamed turn."""
        params = self._chat_params(messages)
        if params.get("tools"):
            raise ValueError("astream_text streams plain turns, not tool calls")
        return ChatRequest(
            model=params["model"],
            messages=[_message(dict(m)) for m in params["messages"]],
            tools=[],
            stream=True,
            think=params.get("think"),
            format=params.get("format"),
            options=params.get("options"),
            keep_alive=params.get("keep_alive"),
        ).model_dump(exclude_none=True)

    async def astream_text(
        self, messages: list[BaseMessage]
    ) -> AsyncIterator[str | dict[str, Any]]:
        """Each piece of text as Ollama sends it, then one dict (``stream_end``).

        Errors are ollama-python's: ``ResponseError`` for an error status or an error line
        (a model that is not installed is a 404), httpx's for a connection that fails.
        """
        client = self._async_client
        if client is None:
            raise RuntimeError("the Ollama client is not initialised")
        http: httpx.AsyncClient = client._client
        async with http.stream("POST", "/api/chat", json=self.request_body(messages)) as reply:
            if reply.status_code >= 400:
                await reply.aread()
                raise ResponseError(reply.text, reply.status_code)
            rest = b""
            async for data in reply.aiter_bytes():  # lines split here: cheaper than aiter_lines
                *lines, rest = (rest + data).split(b"\n")
                for line in lines:
                    for piece in _pieces(line):
                        yield piece
            for piece in _pieces(rest):
                yield piece


def _pieces(line: bytes) -> list[str | dict[str, Any]]:
    """What one NDJSON line says: its text, and after the ``done`` line the metadata."""
    if not line.strip():
        return []
    part = json.loads(line)
    if error := part.get("error"):
        raise ResponseError(error)
    text = (part.get("message") or {}).get("content") or ""
    pieces: list[str | dict[str, Any]] = [text] if text else []
    if part.get("done") is True and part.get("done_reason") != "load":
        pieces.append(stream_end(part))
    return pieces

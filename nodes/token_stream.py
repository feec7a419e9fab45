"""A specialist's turn streamed straight to the conversation runner's token sink.

LangGraph's "messages" stream reaches a model's tokens through callbacks: every token
becomes a callback event, a LangGraph stream item and a runner dispatch (about 120 µs of
CPU each, measured in bench/api.py's notes). When the runner offers a sink
(core/events.py ``TokenSink``), the node reads the model's stream itself and hands each
token over with one call; the final message keeps the id the tokens carried, so the
runner matches the stored message to what was streamed (and keeps the partial text of a
turn the person interrupted).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable

from creative_studio.core.events import TokenSink

__all__ = ["stream_reply"]


async def stream_reply(
    model: BaseChatModel | Runnable[Any, BaseMessage],
    messages: list[BaseMessage],
    sink: TokenSink,
    role: str,
    message_id: str | None = None,
) -> AIMessage:
    """The model's reply, each token sent to ``sink`` as it arrives, under ``message_id``
    (nodes/speaking.py gives the turn's own; a new one without).

    No callbacks are attached to this model call: nothing else listens to its tokens
    (the runner asks LangGraph for no "messages" stream), so none is paid for. A model
    with ``astream_text`` (tools/ollama_stream.py) is read that way: plain text pieces,
    then one dict with the response and usage metadata, no LangChain chunk per token.
    """
    message_id = message_id or f"lc_run--{uuid4()}"
    texts: list[str] = []
    response: dict[str, Any] = {}
    usage: Any = None
    stream_text = getattr(model, "astream_text", None)
    if stream_text is not None:  # tools/ollama_stream.py: text pieces, then the metadata
        async for piece in stream_text(messages):
            if isinstance(piece, str):
                texts.append(piece)
                await sink(role, message_id, piece)
            else:
                response.update(piece.get("response_metadata") or {})
                usage = piece.get("usage_metadata") or usage
        return AIMessage(
            content="".join(texts), id=message_id, response_metadata=response, usage_metadata=usage
        )
    async for chunk in model.astream(messages, config={"callbacks": []}):
        text = chunk.text if isinstance(chunk, BaseMessage) else str(chunk)
        if text:
            texts.append(text)
            await sink(role, message_id, text)
        if isinstance(chunk, BaseMessage):
            if chunk.response_metadata:
                response.update(chunk.response_metadata)
            usage = getattr(chunk, "usage_metadata", None) or usage
    return AIMessage(
        content="".join(texts), id=message_id, response_metadata=response, usage_metadata=usage
    )

"""Structured output with one repair: JSON in, a validated pydantic model out.

Works the same with every backend (it only needs text): the prompt asks for one JSON
object, the reply is parsed and validated; on failure the model sees its reply and
the exact error once more. Backends that support constrained output (Ollama's
``format``, llama.cpp's JSON schema) are asked for it as well, so the repair is
rarely needed.
"""

from __future__ import annotations

from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ValidationError

from creative_studio.core.text import extract_json_object
from creative_studio.graph.prompting import repair_message
from creative_studio.nodes.speaking import call_model

T = TypeVar("T", bound=BaseModel)


class StructuredOutputError(Exception):
    """The model did not produce a valid object, even after one repair attempt."""


def _constrained(
    model: BaseChatModel, schema: type[BaseModel]
) -> BaseChatModel | Runnable[Any, BaseMessage]:
    """Ask backends that can constrain decoding to do so.

    Ollama takes the JSON schema as ``format``; the embedded llama.cpp model has its own
    bounded grammar per schema (tools/embedded.py GRAMMARS), selected by the schema's name.
    """
    kinds = {cls.__name__ for cls in type(model).__mro__}  # StreamingChatOllama is one too
    if "ChatOllama" in kinds:
        return model.bind(format=schema.model_json_schema())
    if "ChatEmbedded" in kinds:
        return model.bind(json_schema=schema.__name__)
    return model


def _parse(text: str, schema: type[T]) -> T:
    try:
        return schema.model_validate(extract_json_object(text))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()
        )
        raise ValueError(problems) from error


async def ask_structured(
    model: BaseChatModel,
    messages: list[BaseMessage],
    schema: type[T],
    *,
    time_limit: float | None = None,
) -> tuple[BaseMessage, T]:
    """(the raw reply, the validated object). Raises StructuredOutputError after one repair."""
    constrained = _constrained(model, schema)
    reply = await call_model(constrained, messages, stream=False, time_limit=time_limit)
    try:
        return reply, _parse(reply.text, schema)
    except ValueError as first:
        retry = [*messages, AIMessage(content=reply.text), repair_message(str(first))]
        reply = await call_model(constrained, retry, stream=False, time_limit=time_limit)
        try:
            return reply, _parse(reply.text, schema)
        except ValueError as second:
            raise StructuredOutputError(str(second)) from second

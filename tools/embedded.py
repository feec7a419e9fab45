"""The embedded models: small GGUFs run in process by llama.cpp, so the studio works offline.

Two are registered (tools/embedded_files.py), both from PyPI packages, joined and sha-checked
once into the data directory:

* ``qwen2.5-0.5b``: Qwen2.5-Coder 0.5B Instruct, a chat model. It reads the same system and
  human messages every Ollama model gets (graph/prompting.build_messages), rendered with its
  ChatML template.
* ``gemma3-270m``: Gemma 3 270M, a BASE model with no instruction following. It gets a few-shot
  completion prompt built from the structured parts the studio attaches to its messages, and
  stops at the end of the line.

Which one plain ``embedded`` means is ``DEFAULT_EMBEDDED``, chosen by measurement
(docs/benchmarks.md). For both, plans and verdicts are generated under a JSON-schema grammar
(so they always parse) and readiness votes under a READY / NOT YET grammar, and a turn's
``prefill`` starts the reply (tools/embedded_prompts.py).
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from creative_studio.tools.embedded_engine import Completion, EmbeddedEngine, Sampling, Segments
from creative_studio.tools.embedded_files import (
    DEFAULT_EMBEDDED,
    EmbeddedModel,
    EmbeddedModelError,
    chunks_installed,
    embedded_model,
    model_file,
)
from creative_studio.tools.embedded_prompts import (
    GEMMA_GRAMMARS,
    VOTE_GRAMMAR,
    VOTE_KINDS,
    chatml_segments,
    completion_prompt,
    grammar_schema,
    prefill_of,
    speaker_stops,
    turn_parts,
    vote_grammar,
)

GRAMMARS = GEMMA_GRAMMARS  # the base model's grammar schemas, by the name nodes/structured.py binds
COMPLETION_STOP = ("\n",)  # the base model's turn is one transcript line
# A chat turn is one paragraph: past a blank line a 0.5B model restates the transcript.
CHAT_STOP = ("\n\n",)
# Structured output budget: the grammars bound every string, so a plan ends well within these.
STRUCTURED_TOKENS = {"completion": 360, "chat": 512}

__all__ = [
    "DEFAULT_EMBEDDED",
    "GRAMMARS",
    "VOTE_GRAMMAR",
    "ChatEmbedded",
    "Completion",
    "EmbeddedEngine",
    "EmbeddedModelError",
    "Request",
    "call_seed",
    "completion_prompt",
    "embedded_available",
    "model_path",
    "plan_request",
]


def model_path(data_dir: Path, name: str | None = None) -> Path:
    """The verified GGUF of a registered model in the data directory (assembled on first use)."""
    return model_file(embedded_model(name), data_dir)


@dataclass(frozen=True)
class Request:
    """One call, planned before any model work: the prompt, the sampling, the prefill.

    ``prefill`` is the reply's exact start. The prompt carries it without trailing whitespace
    (``prompt_prefill``): these tokenizers fold a space into the next word (" dramatic"), so a
    prompt ending in a bare space forces an unnatural token. The model writes that space
    itself, and the reply drops it once because the prefill already has it.
    """

    segments: Segments
    sampling: Sampling
    prefill: str = ""

    @property
    def structured(self) -> bool:
        return self.sampling.schema is not None

    @property
    def heal(self) -> bool:
        """The prefill's trailing whitespace was kept out of the prompt."""
        return bool(self.prefill) and self.prefill != self.prefill.rstrip()

    def reply(self, generated: str) -> str:
        """The whole reply from what the model generated after the prompt."""
        if not self.prefill:
            return generated.strip()
        if self.heal:
            generated = generated.lstrip(" \t")
        return (self.prefill + generated).rstrip()


def plan_request(
    spec: EmbeddedModel,
    messages: list[BaseMessage],
    *,
    structured: str | None,
    max_tokens: int,
    temperature: float,
    seed: int | None,
) -> Request:
    """How ``spec`` answers ``messages``: prompt layout, grammar, stops and the prefill.

    Pure (no model needed), so tests can check the planning of every kind of turn.
    """
    schema = grammar_schema(spec.prompting, structured)
    _, turn = turn_parts(messages)
    prefill = "" if schema else prefill_of(messages)  # a JSON grammar owns the first character
    vote = schema is None and turn.get("kind") in VOTE_KINDS
    gbnf = vote_grammar(prefill.rstrip()) if vote else None  # the grammar continues the prompt
    budget = STRUCTURED_TOKENS[spec.prompting] if schema else max_tokens
    segments: Segments
    if spec.prompting == "chat":
        segments = chatml_segments(messages, prefill.rstrip())
        # Qwen's recommended sampling; the template's end-of-turn token ends a reply.
        sampling = Sampling(
            max_tokens=budget,
            temperature=0.2 if schema else temperature,
            top_p=0.8,
            repeat_penalty=1.05,
            stop=() if schema or gbnf else CHAT_STOP + speaker_stops(messages),
            schema=schema,
            gbnf=gbnf,
            seed=call_seed(seed, segments),
        )
    else:
        segments = [(completion_prompt(messages, prefill.rstrip()), False)]
        sampling = Sampling(
            max_tokens=budget,
            temperature=0.2 if schema else temperature,
            stop=() if schema else COMPLETION_STOP,  # a grammar ends the JSON by itself
            schema=schema,
            gbnf=gbnf,
            seed=call_seed(seed, segments),
        )
    return Request(segments=segments, sampling=sampling, prefill=prefill)


def call_seed(seed: int | None, segments: Segments) -> int | None:
    """The seed for one call: the conversation's seed mixed with the prompt.

    The same prompt still gets the same reply (a replayed conversation repeats itself), but two
    similar turns no longer draw the same random numbers: with one fixed seed per call a small
    model given the same opener wrote the same sentence again, word for word.
    """
    if seed is None:
        return None
    prompt = "".join(text for text, _ in segments).encode("utf-8")
    return (seed + zlib.crc32(prompt)) & 0x7FFFFFFF


class ChatEmbedded(BaseChatModel):
    """A LangChain chat model over an embedded engine; streams tokens like any other."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    data_dir: Path
    model: str = DEFAULT_EMBEDDED  # a name in tools/embedded_files.EMBEDDED_MODELS
    engine: Any = Field(default=None, exclude=True)
    max_tokens: int = 96
    temperature: float = 0.7
    seed: int | None = None
    json_schema: str | None = None  # "TechnicalPlan" / "CriticVerdict": grammar-constrained

    @property
    def _llm_type(self) -> str:
        return "creative-studio-embedded"

    @property
    def spec(self) -> EmbeddedModel:
        return embedded_model(self.model)

    def _engine(self) -> EmbeddedEngine:
        """Load on first use (assembling the GGUF once); blocking, so async callers use a thread."""
        if self.engine is None:
            self.engine = EmbeddedEngine.for_model(self.data_dir, self.model)
        return self.engine

    def _request(self, messages: list[BaseMessage], **kwargs: Any) -> Request:
        return plan_request(
            self.spec,
            messages,
            structured=kwargs.get("json_schema") or self.json_schema,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=self.seed,
        )

    def _final_chunk(self, stats: Completion, request: Request) -> AIMessageChunk:
        usage = UsageMetadata(
            input_tokens=stats.prompt_tokens,
            output_tokens=stats.eval_count,
            total_tokens=stats.prompt_tokens + stats.eval_count,
            input_token_details={"cache_read": stats.prompt_cached_tokens},
        )
        return AIMessageChunk(
            content="",
            usage_metadata=usage,
            response_metadata={
                "model": f"{self.spec.name} (embedded)",
                # A base model continues text; it cannot judge whether the team is ready.
                "base_model": self.spec.prompting == "completion",
                "prompt_eval_count": stats.prompt_tokens - stats.prompt_cached_tokens,
                "prompt_cached_tokens": stats.prompt_cached_tokens,
                "eval_count": stats.eval_count,
                "prompt_eval_duration": stats.prompt_eval_duration,
                "eval_duration": stats.eval_duration,
                "total_duration": stats.total_duration,
                "structured": request.structured,
            },
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, **kwargs)
        stats = Completion()
        pieces = self._engine().generate(request.segments, request.sampling, threading.Event())
        for _piece, stats in pieces:  # noqa: B007 - only the final counters matter here
            continue
        final = self._final_chunk(stats, request)
        message = AIMessage(
            content=request.reply("".join(stats.text)),
            usage_metadata=final.usage_metadata,
            response_metadata=final.response_metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Generate in a worker thread; pieces cross to the event loop through a queue."""
        request = self._request(messages, **kwargs)
        engine = await asyncio.to_thread(self._engine)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Completion] | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def work() -> None:
            try:
                for item in engine.generate(request.segments, request.sampling, cancelled):
                    loop.call_soon_threadsafe(queue.put_nowait, item)
            except BaseException as error:  # handed to the event loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        async def emit(piece: str) -> ChatGenerationChunk:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            return chunk

        worker = loop.run_in_executor(None, work)
        stats = Completion()
        # A prefill is the reply's first chunk, exactly; the model continues right after it.
        # Without one, drop the whitespace the model starts with (after "Name:" or the
        # assistant header); after a healed prefill, the space the prefill already has.
        leading = not request.prefill or request.heal
        strip = " \t" if request.prefill else None  # None: any whitespace
        try:
            if request.prefill:
                yield await emit(request.prefill)
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                piece, stats = item
                if leading:
                    piece = piece.lstrip(strip)
                    leading = not piece
                if piece:
                    yield await emit(piece)
            yield ChatGenerationChunk(message=self._final_chunk(stats, request))
        finally:
            cancelled.set()  # an interjection cancelled us: stop the thread at the next token
            await asyncio.shield(worker)


def embedded_available(name: str | None = None) -> bool:
    """llama.cpp and the model's packages installed (the engine itself loads on first use)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    try:
        return chunks_installed(embedded_model(name))
    except EmbeddedModelError:
        return False

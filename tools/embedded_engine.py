"""One llama.cpp context per embedded model file, shared by every role in the process.

llama.cpp contexts are not thread-safe, so calls are serialised by a lock. The context keeps its
KV cache between calls and llama-cpp-python re-evaluates only what follows the longest common
token prefix with the previous prompt: that is why the studio lays prompts out prefix-first, and
why the share served from the cache is counted here and reported in each message's metadata.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from creative_studio.tools.embedded_files import (
    EmbeddedModel,
    EmbeddedModelError,
    embedded_model,
    model_file,
)
from creative_studio.tools.embedded_prompts import IM_END, IM_START


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


@dataclass(frozen=True)
class Sampling:
    """How one call samples; the chat model and the base model want different settings."""

    max_tokens: int
    temperature: float
    top_p: float = 0.95
    repeat_penalty: float = 1.15
    stop: tuple[str, ...] = ()
    schema: dict[str, Any] | None = None  # JSON-schema grammar (plans, verdicts)
    gbnf: str | None = None  # a GBNF grammar (votes)
    seed: int | None = None


# (text, is_markup): markup (ChatML's <|im_start|> ...) is tokenized with special tokens.
Segments = Sequence[tuple[str, bool]]


class EmbeddedEngine:
    """A loaded GGUF; ``generate`` streams pieces of text with running counters."""

    _instances: ClassVar[dict[Path, EmbeddedEngine]] = {}
    _create_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, path: Path, spec: EmbeddedModel, *, n_ctx: int = 4096, seed: int = 1234
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise EmbeddedModelError(
                "llama-cpp-python is not installed (make setup builds it)."
            ) from error
        self.path = path
        self.spec = spec
        # Creating the context prints notes straight to stderr (past verbose=False); they
        # would land in the middle of the person's terminal chat.
        with _quiet_stderr():
            self.llama = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=512,  # 8 is 3x slower on these CPUs
                n_threads=max(1, os.cpu_count() or 1),
                seed=seed,
                verbose=False,
            )
        self.lock = threading.Lock()
        if spec.prompting == "chat":
            self._check_chat_template()

    def _check_chat_template(self) -> None:
        """The chat prompt is ChatML: refuse a GGUF whose own template says otherwise."""
        template = str(self.llama.metadata.get("tokenizer.chat_template", ""))
        if IM_START not in template or IM_END not in template:
            raise EmbeddedModelError(
                f"{self.path} has no ChatML chat template, so {self.spec.title} cannot be "
                "prompted as a chat model; delete the file so it is assembled again."
            )

    @classmethod
    def for_model(cls, data_dir: Path, name: str | None = None) -> EmbeddedEngine:
        """The shared engine of a registered model (the default one for None)."""
        spec = embedded_model(name)
        with cls._create_lock:
            path = model_file(spec, data_dir)
            if path not in cls._instances:
                cls._instances[path] = cls(path, spec)
            return cls._instances[path]

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> EmbeddedEngine:
        """The default model's engine (kept for callers from before the registry)."""
        return cls.for_model(data_dir)

    def tokenize(self, segments: Segments) -> list[int]:
        """Tokens of a prompt: BOS if the model wants one, markup as special tokens only."""
        tokens: list[int] = []
        for index, (text, markup) in enumerate(segments):
            if text:
                tokens += self.llama.tokenize(
                    text.encode("utf-8"), add_bos=index == 0, special=markup
                )
        return tokens

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
        self, segments: Segments, sampling: Sampling, cancelled: threading.Event
    ) -> Iterator[tuple[str, Completion]]:
        """Yield (text piece, running counters); stops early when ``cancelled`` is set."""
        from llama_cpp import LlamaGrammar

        with self.lock:
            started = time.perf_counter_ns()
            tokens = self.tokenize(segments)
            stats = Completion(prompt_tokens=len(tokens))
            stats.prompt_cached_tokens = self._cached_prefix(tokens)
            if sampling.schema:
                grammar = LlamaGrammar.from_json_schema(json.dumps(sampling.schema), verbose=False)
            elif sampling.gbnf:
                grammar = LlamaGrammar.from_string(sampling.gbnf, verbose=False)
            else:
                grammar = None
            if sampling.seed is not None:
                self.llama.set_seed(sampling.seed)
            stream = self.llama.create_completion(
                prompt=tokens,
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                repeat_penalty=sampling.repeat_penalty,
                stop=list(sampling.stop),
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


__all__ = ["Completion", "EmbeddedEngine", "Sampling", "Segments"]

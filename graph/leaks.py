"""Few-shot material teaches format, never content: the guard against example words leaking.

Small models copy what an example shows (a single example meeting about a fox was
copied verbatim into every plan). The examples' *content* words — those that are not
also words of the instructions, the personas or the studio's own lines — are the
example vocabulary. A turn or a plan may use such a word only when the person or the
team's discussion of this request brought it up first; otherwise it is a leak:
sentences of a turn that carry one are dropped, and prompt segments are removed by the
fidelity repair (graph/fidelity.py).

Examples live under keys named ``example`` / ``examples`` in the prompt files, so the
vocabulary always matches the prompts actually in use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from langchain_core.messages import AnyMessage

from creative_studio.core.text import content_words
from creative_studio.graph.prompting import embedded_prompt_data, personas, team_prompts
from creative_studio.graph.wishes import stem, stems

_EXAMPLE_KEYS = ("example", "examples")


def _strings(value: Any, *, examples: bool, inside: bool = False) -> Iterator[str]:
    """The strings of a TOML tree: those under example keys, or all the others."""
    if isinstance(value, str):
        if inside == examples:
            yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, examples=examples, inside=inside or key in _EXAMPLE_KEYS)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, examples=examples, inside=inside)


def _persona_text() -> str:
    return " ".join(
        " ".join([p.name, p.title, p.voice, p.focus, *p.keywords, *p.specifics])
        for p in personas().values()
    )


@cache
def example_vocabulary() -> frozenset[str]:
    """Stems of words that only prompt examples contain (not the instructions around them)."""
    sources = [team_prompts(), embedded_prompt_data()]
    example_words: set[str] = set()
    instruction_words: set[str] = set(stems(_persona_text()))
    for data in sources:
        for text in _strings(data, examples=True):
            example_words |= stems(text)
        for text in _strings(data, examples=False):
            instruction_words |= stems(text)
    return frozenset(example_words - instruction_words)


def allowed_stems(messages: Iterable[AnyMessage]) -> set[str]:
    """Words this conversation brought up itself (the person, the team, the studio)."""
    allowed: set[str] = set()
    for message in messages:
        if message.type in ("human", "ai"):
            allowed |= stems(message.text)
    return allowed


def foreign_words(
    text: str, allowed: set[str], vocabulary: frozenset[str] | None = None
) -> set[str]:
    """Example words in ``text`` that this conversation never brought up."""
    vocab = example_vocabulary() if vocabulary is None else vocabulary
    return {w for w in content_words(text) if stem(w) in vocab and stem(w) not in allowed}


def strip_leaks(text: str, allowed: set[str]) -> tuple[str, set[str]]:
    """The turn without the sentences that carry leaked example words; and those words."""
    leaked = foreign_words(text, allowed)
    if not leaked:
        return text, set()
    leaked_stems = {stem(w) for w in leaked}
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    kept = [s for s in sentences if not (stems(s) & leaked_stems)]
    return " ".join(kept).strip(), leaked


__all__ = ["allowed_stems", "example_vocabulary", "foreign_words", "strip_leaks"]

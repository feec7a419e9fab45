"""Worn words and echoes: what the team keeps saying, so the next speaker says something new.

Small models echo each other: read end to end, a 0.5B team repeated "soft, reflective
surfaces" in five turns out of seven (bench/quality.py transcripts). The studio counts the
words earlier specialist turns have already used and hands the next speaker the worn ones,
as a line in the instruction (models that follow instructions) and as data the embedded
The person's own words are never worn: their request and directions must be free to appear
in every turn. Models that do not follow the instruction (a 0.5B one copies the sentence it
just read) have their echoes dropped after the fact: a sentence whose own words mostly repeat
one earlier team turn says nothing new (a logit penalty was tried and measured: llama-cpp-
python applies it in Python, 3x slower per token, and it did not stop the copying).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from langchain_core.messages import AnyMessage

from creative_studio.core.roles import SPECIALISTS
from creative_studio.core.text import content_words
from creative_studio.graph.wishes import stem, stems

# A word is worn once this many earlier team turns have used it. One: measured, a 0.5B team
# copies the previous turn's sentence word for word ("a sense of tranquility and relaxation"
# three times in a row), so waiting for a second use is too late.
WORN_AFTER = 1
# At most this many worn words per turn: the most used first (the instruction names fewer).
MAX_WORN = 24
# Only the recent discussion counts: a word said ten turns ago is fair to say again.
RECENT_TURNS = 8
# A sentence echoes an earlier turn when at least this many of its own words (not the
# person's) and this share of them were in that one turn.
ECHO_MIN_WORDS = 3
ECHO_SHARE = 0.6
_SENTENCE = re.compile(r"[^.!?…]+[.!?…]*[\"”')]*\s*")


def speaker_role(message: AnyMessage) -> str | None:
    """The specialist role that wrote a message (None for the person and the studio)."""
    kwargs = getattr(message, "additional_kwargs", None) or {}
    role = kwargs.get("speaker") or getattr(message, "name", None)
    return role if role in SPECIALISTS else None


def _person_stems(messages: list[AnyMessage]) -> set[str]:
    free: set[str] = set()
    for message in messages:
        if message.type == "human":
            free |= stems(message.text)
    return free


def _team_turns(messages: list[AnyMessage]) -> list[AnyMessage]:
    turns: list[AnyMessage] = [m for m in messages if m.type == "ai" and speaker_role(m)]
    return turns[-RECENT_TURNS:]


def drop_echoes(
    text: str, messages: Iterable[AnyMessage], prompt: Iterable[str] = ()
) -> tuple[str, list[str]]:
    """The reply without sentences that repeat an earlier team turn or the turn's own
    ``prompt`` texts (its instruction, the persona's focus: a 0.5B model once answered "In
    the frame, you would offer one or two vivid, concrete ideas."); and what was dropped.

    Words the person used never count towards an echo (answers take up their words on
    purpose), so "Yes, a lone figure walking to the cabin." is never one.
    """
    messages = list(messages)
    free = _person_stems(messages)
    sources = [m.text for m in _team_turns(messages)] + list(prompt)
    earlier = [stems(t) - free for t in sources]
    kept: list[str] = []
    dropped: list[str] = []
    for sentence in _SENTENCE.findall(text):
        own = {stem(w) for w in content_words(sentence)} - free
        echo = len(own) >= ECHO_MIN_WORDS and any(
            len(own & turn) >= ECHO_MIN_WORDS and len(own & turn) / len(own) >= ECHO_SHARE
            for turn in earlier
        )
        (dropped if echo else kept).append(sentence)
    return "".join(kept).strip(), [d.strip() for d in dropped]


def worn_words(messages: Iterable[AnyMessage], keep: Iterable[str] = ()) -> list[str]:
    """Words recent team turns already used at least ``WORN_AFTER`` times, most used first.

    ``keep`` are words the speaker must stay free to use (the role's own vocabulary); the
    person's words are kept too, matched by stem so "windows" keeps "window".
    """
    messages = list(messages)
    free = {stem(w) for w in keep} | _person_stems(messages)
    counts: Counter[str] = Counter()
    for message in _team_turns(messages):
        counts.update({w for w in content_words(message.text) if stem(w) not in free})
    worn = [(n, w) for w, n in counts.items() if n >= WORN_AFTER]
    worn.sort(key=lambda item: (-item[0], item[1]))
    return [w for _, w in worn[:MAX_WORN]]


__all__ = ["MAX_WORN", "WORN_AFTER", "drop_echoes", "speaker_role", "worn_words"]

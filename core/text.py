"""Small text measures the consensus detector and the nodes rely on.

Token overlap (content words) rather than embeddings: it is deterministic, needs no
model, costs microseconds, and is good enough to tell "adds a new idea" from "says
the same thing again" in short turns.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Any

_WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]{2,}")
_STOPWORDS_TEXT = """
the and for are but not you your with this that have has had was were will would could
should can our out all any its it's into onto from than then them they their there these
those what when where which who whom why how also just very really more most some such
only own same about above after again against below between both during each few further
here itself let's may might must off once other over under until while yes let lets i'm
we're we'll i'll it'll think agree like love great good idea ideas maybe perhaps make
makes made want wants need needs feel feels sure team everyone something thing things keep
add adding use using going get
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


@functools.lru_cache(maxsize=16384)
def _base(word: str) -> str:
    word = word.lower().strip("'-")
    return word[:-2] if word.endswith("'s") else word  # "the lighthouse's light"


def content_words(text: str) -> set[str]:
    """Lower-cased words of three letters or more that are not filler (possessives folded)."""
    words = {_base(w) for w in _WORD.findall(text)}
    return {w for w in words if len(w) >= 3} - STOPWORDS


def novelty(text: str, known: Iterable[str]) -> float:
    """Share of this turn's content words that nobody used before (0 = nothing new)."""
    words = content_words(text)
    if not words:
        return 0.0
    seen = set(known)
    return len(words - seen) / len(words)


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of content words: 1.0 means the same turn again."""
    wa, wb = content_words(a), content_words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


_SENTENCE = re.compile(r"(.+?[.!?])(?:\s|$)")


def first_sentence(text: str, limit: int = 180) -> str:
    """The key point of a turn, for the running brief."""
    text = " ".join(text.split())
    match = _SENTENCE.match(text)  # anchored: a search would retry from every position
    sentence = match.group(1) if match else text
    return sentence if len(sentence) <= limit else _cut_at_word(sentence, limit)


_NAME_PREFIX = re.compile(r"^\s*\**\s*(?:[A-Z][a-z]+)(?:\s*\([a-z ]+\))?\s*\**\s*:\s*\**\s*")


# Names that are also the craft's words: "Lens: 35mm, f/2.8" and "Frame: tight on the
# face" are a composition turn's own lines, not another member speaking.
_CRAFT_NAMES = frozenset({"Frame", "Lens"})
_SPEAKER_OPENERS = frozenset(
    [
        "I",
        "I'm",
        "I'd",
        "I'll",
        "I've",
        "We",
        "We're",
        "We'd",
        "Let's",
        "Agreed",
        "Agree",
        "Yes",
        "No",
        "Good",
        "Great",
        "Nice",
        "Thanks",
        "Love",
        "Luna",
        "Frame",
        "Saga",
        "Pixel",
        "Lens",
        "Ready",
        "READY",
        "Not",
        "NOT",
    ]
)


def _speaks(name: str, label: str, first_word: str) -> bool:
    """Whether a "Name:" line starts another member's turn (the model speaking for them):
    with the role ("Lens (critic):") always; a craft word alone only when what follows
    reads as someone speaking ("Frame: I disagree.")."""
    if name not in _CRAFT_NAMES or "(" in label:
        return True
    return first_word.rstrip(",.!:") in _SPEAKER_OPENERS


def clean_reply(text: str, names: Iterable[str], limit: int) -> str:
    """Strip a leading 'Luna:' echo and cut where the model starts speaking for someone else."""
    text = text.strip()
    name_set = set(names)
    match = _NAME_PREFIX.match(text)
    if match and match.group(0).strip(" *:").split(" (")[0] in name_set:
        text = text[match.end() :]
    labels = re.finditer(
        r"\n\s*\**\s*(" + "|".join(map(re.escape, sorted(name_set) or ["$^"]))
        + r"|Person)\b([^\n:]{0,20}):\**\s*(\S*)",
        text,
    )  # fmt: skip
    cut = next((m for m in labels if _speaks(m.group(1), m.group(2), m.group(3))), None)
    if cut:
        text = text[: cut.start()]
    text = text.strip()
    if len(text) > limit:
        text = shortened(text, limit)
    return text


def shortened(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: up to its last full sentence that fits,
    else up to a word's end with "…" (a turn cut mid-word read "... the cat's body from…")."""
    # A stop counts when a space or the text's end follows it in the text itself ("3.5"
    # cut after "3." is no sentence's end); one character past the limit shows that.
    stops = [
        m.end()
        for m in re.finditer(r"[.!?。！？][\"”')\]]*(?=\s|$)", text[: limit + 1])
        if m.end() <= limit
    ]
    if stops and stops[-1] >= limit // 3:
        return text[: stops[-1]]
    return _cut_at_word(text, limit)


def _cut_at_word(text: str, limit: int) -> str:
    """``text`` cut at a word's end, marked with "…", in at most ``limit`` characters."""
    head = text[: limit - 1]
    if " " in head:
        head = head[: head.rfind(" ")]
    return head.rstrip(" ,;:") + "…"


_CLAUSE = re.compile(r"[^,;:.!?。！？]+[,;:.!?。！？]*")
LOOP_CLAUSE_WORDS = 4  # a repeated clause this long is a loop, not a refrain


def without_loops(text: str) -> str:
    """Cut a turn where it starts saying a clause of its own again.

    A small model can fall into a loop: the embedded Saga wrote "the feeling of pleasure and
    happiness, the feeling of contentment and satisfaction, the feeling of pleasure and
    happiness, ..." until its tokens ran out. The turn ends before the first clause (of at
    least ``LOOP_CLAUSE_WORDS`` words) whose words it already said, with a full stop; when
    that leaves only a sentence's first few words, at the sentence before.
    """
    seen: set[tuple[str, ...]] = set()
    for match in _CLAUSE.finditer(text):
        words = tuple(sorted(re.findall(r"\w+", match.group().lower())))
        if len(words) < LOOP_CLAUSE_WORDS:
            continue
        if words in seen:
            kept = text[: match.start()].rstrip(" ,;:-–—")
            # A cut inside a sentence leaves its opening: a few words ("For the symbolism")
            # are no sentence, so the turn ends at its last full stop instead.
            stop = max(kept.rfind(end) for end in ".!?。！？")
            if stop > 0 and len(re.findall(r"\w+", kept[stop + 1 :])) < LOOP_CLAUSE_WORDS:
                return kept[: stop + 1]
            if kept and kept[-1] not in ".!?…。！？":
                kept += "."
            return kept
        seen.add(words)
    return text


_READY = re.compile(r"^\W*(ready|yes|agreed|approve[d]?|go|ship it|let's go|all good)\b", re.I)
_NOT_READY = re.compile(r"\b(not yet|not ready|wait|hold on|object|objection|before we)\b", re.I)


def parse_vote(text: str) -> tuple[bool, str]:
    """(ready?, reason). 'READY - ...' counts as yes; 'NOT YET: ...' or any hedge as no."""
    head = text.strip()[:200]
    if _NOT_READY.search(head[:40]):
        reason = re.sub(r"^\W*(not yet|not ready|wait|hold on)\W*", "", head, flags=re.I)
        return False, first_sentence(reason or head)
    if _READY.search(head):
        return True, ""
    # No clear yes: treat as an objection so nobody is steamrolled by a vague answer.
    return False, first_sentence(head)


def extract_json_object(text: str) -> dict[str, Any]:
    """The first complete JSON object in a reply (models wrap it in prose or code fences)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object found in the reply")
    decoder = json.JSONDecoder()
    while start >= 0:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    raise ValueError("the reply contains no valid JSON object")

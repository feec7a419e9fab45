"""What the person asked for, read from their own messages: the request and every direction.

Derived from the messages, never patched by hand, so it follows the conversation
wherever it goes: a fork from any checkpoint, an edited message (same id, new text), a
parent graph's history. The first message of the person is the request (completed by
their answer when the team asked them to clarify); every later message is a direction,
except answers that only pick between the team's options ("go with Luna's") — their
content, if any, still counts.

Each wish keeps the person's own words as a phrase (lead-ins like "make it" or "can you"
removed) and the key terms that must reach the plan's prompt. "No text" or "without
people" are exclusions: those words belong in the negative prompt, never the positive.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from langchain_core.messages import AnyMessage

from creative_studio.core.text import STOPWORDS, content_words

WishSource = Literal["request", "direction"]

# Words that carry no content of their own in a request: they say "make a picture", not what.
_VAGUE_TEXT = """
    image images picture pictures photo photos photograph render rendering illustration video
    videos clip scene make create generate draw paint show give want wanted would like please
    something anything nice cool good beautiful whatever idk stuff thing art artwork maybe
    try trying bit little lot much kind sort actually instead rather also just really very
    look looks looking can could let lets okay yeah yes sure fine one
    """
_VAGUE = frozenset(_VAGUE_TEXT.split())
# Words of a choice between the team's options, not of the image ("go with Luna's idea").
_META_TEXT = """
    luna frame saga pixel lens team option options idea ideas choice choose chose pick picked
    take first second third last decide decided decision judgement judgment best version
    plan agree agreed approve approved generate ready ahead yep yup great perfect lovely
    awesome thanks thank wonderful excellent amazing fantastic brilliant continue proceed
    start stop again retry
    """
_META = frozenset(_META_TEXT.split())
_LEAD_IN = re.compile(
    r"^(?:(?:please|ok|okay|so|and|but|now|then|also|maybe|perhaps|actually|hmm|well|oh|hey)\b[\s,]*)*"
    r"(?:(?:can|could|would|will) (?:you|we) (?:please )?|let'?s |let us |i(?:'d| would) like |"
    r"i want |i'd love |how about |what about |try (?:to )?|make (?:it|this|that|them|him|her) |"
    r"make |give (?:it|me|us|him|her|them) |show (?:me )?|add |include |put |go with |use )?",
    re.IGNORECASE,
)
_EXCLUDE = re.compile(
    r"^(?:no|without|remove|drop|lose|get rid of|don'?t (?:want|include|show|add|put)|"
    r"do not (?:want|include|show|add|put)|not)\s+(?:the |any |a |an )?(.+)$",
    re.IGNORECASE,
)
# What follows the thing in "no hunters anywhere", "no text at all please": not the thing.
_ANYWHERE = re.compile(
    r"(?:\s+(?:anywhere|at all|whatsoever|please|thanks|in (?:the|this|it) ?(?:image|picture|"
    r"shot|scene|frame|photo)?|in sight|around|visible))+\s*$",
    re.IGNORECASE,
)
_CLAUSES = re.compile(r"[,;.!?]+|\s+(?:but|and then|also)\s+", re.IGNORECASE)
# An address to the team at the head of what the person says ("Frame, try a low angle",
# "@luna more purple", "Luna and Frame — more fog", "hey Saga: give her an umbrella"): who
# is asked, not what the image holds. Seen: "Frame, try a low angle with the neon reflected
# in puddles" reached the plan's prompt with the name at its head. "Frame" and "Lens" are
# craft words too ("frame the subject tightly", "lens: 35mm"), so a bare name counts as an
# address only before a separator or a word people start a request with, and a craft name
# before a colon not when a number follows.
_NAMES = r"(?:luna|frame|saga|pixel|lens|team|everyone|everybody|all|guys|folks|y'?all)"
_CRAFT_NAMES = r"(?:frame|lens)"
_GREETING = r"(?:(?:hey|hi|hello|ok|okay|so|and|now|oh|yo)\b[\s,]*)?"
_ADDRESS = re.compile(
    rf"^{_GREETING}(?:"
    rf"@{_NAMES}(?:\s*(?:,|and|&)\s*@?{_NAMES})*\s*[,:;—–-]?"  # @frame / @luna and @saga
    rf"|(?:hey|hi|hello|yo)\s+{_NAMES}(?:\s*(?:,|and|&)\s*{_NAMES})*\s*[,:;—–-]?"  # hey Saga
    rf"|{_NAMES}(?:\s*(?:,|and|&)\s*{_NAMES})*\s*(?:,|;|—|–|\s-\s)"  # Frame, / Luna and Frame —
    rf"|(?!{_CRAFT_NAMES}\s*:\s*\d){_NAMES}(?:\s*(?:,|and|&)\s*{_NAMES})*\s*:"  # Luna: (not lens: 35mm)
    rf"|{_NAMES}(?:\s*(?:,|and|&)\s*{_NAMES})*(?=\s+(?:try|please|can|could|would|will|make|"
    rf"give|let'?s|how|what|maybe|i|i'?d|you|we|go|use|add|put|do|don'?t|lose|drop)\b)"
    r")\s*",
    re.IGNORECASE,
)


_ONLY_NAMES = re.compile(rf"^\W*@?{_NAMES}(?:\W+(?:and\W+)?@?{_NAMES})*\W*$", re.IGNORECASE)


def without_address(text: str) -> str:
    """``text`` without an address to the team at its head (``_ADDRESS``); an address
    with nothing after it stays as it is."""
    rest = _ADDRESS.sub("", text.strip(), count=1)
    return rest or text.strip()


_MEMBERS = ("luna", "frame", "saga", "pixel", "lens")


def addressed(text: str) -> tuple[str, str]:
    """(whom the text is said to, what is said): ("Luna and Frame", "more fog") for "Luna
    and Frame — more fog"; ("", text) when it opens with no address."""
    rest = without_address(text)
    head = text.strip()[: len(text.strip()) - len(rest)] if rest != text.strip() else ""
    names = [n.lower().strip("@") for n in re.findall(rf"@?{_NAMES}\b", head, re.IGNORECASE)]
    members = [n.capitalize() for n in dict.fromkeys(names) if n in _MEMBERS]
    whom = " and ".join(members) if members else ("the team" if names else "")
    return whom, rest


def only_names(text: str) -> bool:
    """``text`` is nothing but team names ("Frame", "Luna and Saga"): an address alone."""
    return bool(_ONLY_NAMES.match(text))


# Clauses about how to make the image, not what is in it: the starting image, upscaling and
# numbers Pixel takes from the person's words itself (nodes/images.py, explicit settings).
# Seen against a real ComfyUI: "use this as the starting image, keep it close, upscale it"
# pasted into the positive prompt, growing with every iteration.
_PROCESS = re.compile(
    r"\b(?:this|that|the|my|attached|uploaded|given|starting|start|init(?:ial)?|reference|"
    r"source|last|previous)\s+(?:image|photo|picture|pic|result|render)\b"
    r"|\b(?:as|for)\s+(?:a |the )?(?:start(?:ing)?(?: point| image| frame)?|init(?:ial)? image|"
    r"reference|base)\b"
    r"|\bkeep (?:it|this|that|them) (?:close|similar|faithful)\b|\bclose to (?:it|this|that|my|the)\b"
    r"|\b(?:loosely|freely) (?:inspired|based)\b|\binspired by (?:it|this|that)\b"
    r"|\bupscal\w*|\bdenoise\b|\b\d+\s*steps?\b|\b\d{2,5}\s*[x×]\s*\d{2,5}\b|\b[248]x\b"
    r"|\bseed\b|\bcfg\b|\.safetensors\b"
    r"|^(?:a lot |much |even |way )?(?:bigger|larger|sharper|higher[- ]res(?:olution)?|"
    r"more resolution)(?: please)?$",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=16384)
def stem(word: str) -> str:
    """A light stem, so 'windows' meets 'window' and 'walking' meets 'walk' (cached: every
    turn stems the whole conversation's words again, ~160 calls per specialist turn)."""
    w = word.lower().strip("'-")
    w = w[:-2] if w.endswith("'s") else w
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("shes", "ches", "xes", "sses", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    if len(w) > 5 and w.endswith("ing"):
        return w[:-3]
    if len(w) > 4 and w.endswith("ed"):
        return w[:-2]
    return w


@functools.lru_cache(maxsize=8192)
def stems(text: str) -> frozenset[str]:
    """The stems of a text's content words. Cached: every turn reads the stems of the whole
    conversation again (graph/leaks.py, graph/variety.py), so a long conversation cost each
    turn ~19 ms at 300 messages; the texts do not change, their stems are read once."""
    return frozenset(stem(w) for w in content_words(text))


def key_terms(text: str) -> list[str]:
    """Content words that make this text what it is, in the order the person wrote them."""
    seen: list[str] = []
    for raw in re.findall(r"[A-Za-z][A-Za-z'-]{2,}", text):
        word = raw.lower().strip("'-")
        word = word[:-2] if word.endswith("'s") else word
        if len(word) < 3 or word in STOPWORDS or word in _VAGUE or word in _META:
            continue
        if word not in seen:
            seen.append(word)
    return seen


@dataclass(frozen=True)
class Wish:
    """One thing the person asked for, in their words, with what must reach the prompt."""

    source: WishSource
    text: str  # the person's whole message
    phrase: str  # their words as a prompt phrase ("more melancholic, a lone figure")
    terms: tuple[str, ...]  # key terms the positive prompt must carry
    excluded: tuple[str, ...] = ()  # phrases to keep out of the image ("text", "people")
    message_id: str | None = None

    @property
    def term_stems(self) -> set[str]:
        return {stem(t) for t in self.terms}


@dataclass
class PersonWishes:
    """The request and the directions, newest last."""

    request: Wish | None = None
    directions: list[Wish] = field(default_factory=list)

    def all(self) -> list[Wish]:
        return ([self.request] if self.request else []) + self.directions

    def latest(self) -> Wish | None:
        """What the person said last: the newest direction, else the request."""
        return self.directions[-1] if self.directions else self.request

    def excluded(self) -> list[str]:
        out: list[str] = []
        for wish in self.all():
            out.extend(p for p in wish.excluded if p not in out)
        return out


def _clean_clause(clause: str) -> str:
    clause = " ".join(clause.split())
    previous = None
    while previous != clause:  # "Frame, please, can you make it ..." sheds every lead-in
        previous = clause
        clause = _LEAD_IN.sub("", without_address(clause), count=1).strip(" ,")
    return clause


def phrase_clauses(wishes: PersonWishes) -> set[str]:
    """The clauses of the person's phrases, lower-cased (what ``as_said`` looks up)."""
    return {c.strip().lower() for w in wishes.all() for c in w.phrase.split(",")}


def as_said(segment: str, clauses: set[str]) -> str:
    """A prompt segment that is the person's own clause with its lead-in ("try a low angle
    with ...", copied from the brief) as their phrase has it ("a low angle with ...");
    any other segment unchanged. ``clauses``: ``phrase_clauses`` of the person's wishes."""
    cleaned = _clean_clause(segment)
    if cleaned == segment.strip():
        return segment
    return cleaned if cleaned.lower() in clauses else segment


def unaddressed(segment: str, *, after_address: bool = False) -> str:
    """A prompt segment that opens with an address to the team ("Frame: try a low angle"),
    or follows one (``after_address``: "Frame, try a low angle" split at its comma), as a
    descriptor: the address and the request's lead-ins gone; any other unchanged."""
    rest = _ADDRESS.sub("", segment.strip(), count=1)
    return _clean_clause(rest) if after_address or rest != segment.strip() else segment


def avoided(segment: str) -> str:
    """A negative-prompt segment as the thing to keep out: "no people" and "without text"
    are "people" and "text" (a negative prompt lists what to avoid; its "no" would only
    add the word "no"). Any other segment unchanged."""
    negative = _EXCLUDE.match(segment.strip())
    return negative.group(1).strip() if negative else segment


def is_process(clause: str) -> bool:
    """A clause about how to make the image (start from it, upscale, 30 steps), not content."""
    return bool(_PROCESS.search(clause))


@functools.lru_cache(maxsize=4096)
def parse_wish(text: str, source: WishSource, message_id: str | None = None) -> Wish:
    """The person's words as a prompt phrase, its key terms and its exclusions (cached: a
    Wish is frozen, and every turn reads the person's messages again)."""
    kept: list[str] = []
    excluded: list[str] = []
    for clause in _CLAUSES.split(text):
        cleaned = _clean_clause(clause)
        negative = _EXCLUDE.match(cleaned)
        # "without people in the image" keeps people out; "no upscaling" is about the
        # process, not a thing to keep out of the picture.
        thing = _ANYWHERE.sub("", negative.group(1)).strip() if negative else ""
        if thing and not is_process(thing):
            excluded.append(thing)
        elif not cleaned or negative or is_process(cleaned):
            continue
        elif key_terms(cleaned):
            kept.append(cleaned)
    phrase = ", ".join(kept)
    excluded_stems = {stem(w) for p in excluded for w in key_terms(p)}
    terms = tuple(t for t in key_terms(phrase) if stem(t) not in excluded_stems)
    return Wish(
        source=source,
        text=text.strip(),
        phrase=phrase[:400],
        terms=terms,
        excluded=tuple(excluded),
        message_id=message_id,
    )


def _is_clarifying_answer(messages: Sequence[AnyMessage], index: int) -> bool:
    """The person's second message answers the team's clarifying questions."""
    for message in reversed(messages[:index]):
        if message.type == "human":
            return False
        if message.additional_kwargs.get("kind") == "clarify":
            return True
    return False


def person_wishes(messages: Iterable[AnyMessage], keep_directions: int = 6) -> PersonWishes:
    """Read the request and the latest directions from the person's messages.

    ``keep_directions`` bounds what a plan must carry over a long iterating conversation;
    older directions are already in the plans the new one builds on.
    """
    ordered = list(messages)
    wishes = PersonWishes()
    request_text = ""
    request_id: str | None = None
    for index, message in enumerate(ordered):
        if message.type != "human":
            continue
        text = message.text.strip()
        if not text:
            continue
        if not request_text:
            request_text, request_id = text, str(message.id)
            continue
        if _is_clarifying_answer(ordered, index) and not wishes.directions:
            request_text = f"{request_text}. {text}"
            continue
        wish = parse_wish(text, "direction", str(message.id))
        if wish.terms or wish.excluded:
            wishes.directions.append(wish)
    if request_text:
        wishes.request = parse_wish(request_text, "request", request_id)
    wishes.directions = wishes.directions[-keep_directions:]
    return wishes


__all__ = [
    "PersonWishes",
    "Wish",
    "addressed",
    "as_said",
    "avoided",
    "key_terms",
    "only_names",
    "parse_wish",
    "person_wishes",
    "phrase_clauses",
    "stem",
    "stems",
    "unaddressed",
    "without_address",
]

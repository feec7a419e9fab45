"""The plan carries the person's idea: a deterministic check and repair, for every model.

Whatever the model wrote, the positive prompt that goes to ComfyUI must carry the
request's subject and every direction the person gave (graph/wishes.py reads them from
the messages). The studio, not the model, guarantees it:

* ``repair`` runs on every plan Pixel produces: prompt segments with words a prompt
  example planted (graph/leaks.py) or that the person asked to leave out are removed;
  when the prompt misses any key term of the request, the person's own request phrase
  leads the prompt (a small model that wrote about something else is overruled, not
  trusted); a direction whose terms are missing is added in the person's words;
  exclusions ("no text") go to the negative prompt.
* ``check`` is Lens's deterministic fidelity check: it names what is missing, and the
  router sends a plan that still misses something back to Pixel.

Prompts are comma-separated descriptors (what diffusion models read), so the repair works
on whole segments and never leaves a half-sentence behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from creative_studio.graph.rationale import stated_rationale
from creative_studio.graph.wishes import (
    PersonWishes,
    Wish,
    as_said,
    avoided,
    only_names,
    phrase_clauses,
    stem,
    unaddressed,
)
from creative_studio.workflows.plan import TechnicalPlan, VideoSettings

MAX_PROMPT_CHARS = 1500  # well inside TechnicalPlan's bound; CLIP reads ~77 tokens anyway
# A prompt is comma-separated descriptors. A model segment longer than this, or with a
# sentence break inside, is prose copied from a turn ("A robot that can communicate with
# humans using its senses ... This allows for a sense of connection"), not a descriptor.
MAX_SEGMENT_WORDS = 12
_SENTENCE_BREAK = re.compile(r"[.!?]\s+\w")
GROUNDED_SHARE = 0.5  # a model segment needs this share of its words from the conversation

# Descriptors a technical director may add to any prompt without the team saying them.
_CRAFT_TEXT = """
cinematic detailed highly high quality masterpiece sharp focus hdr photorealistic realistic
photo photograph photography render rendering lighting light lit soft dramatic volumetric
depth field bokeh composition composed wide shot close closeup angle portrait landscape
atmospheric atmosphere mood moody vibrant color colors colour colours painting painted
illustration art style digital concept lens film grain intricate beautiful professional
studio natural ambient glow rim backlit contrast texture textured elegant award winning
trending best the and with of in on at a an by for to from
"""
_CRAFT = frozenset(stem(w) for w in _CRAFT_TEXT.split())


def _segments(prompt: str) -> list[str]:
    """The prompt's descriptors; a fragment a model cut off ("wh...") is not one."""
    out = []
    for raw in re.split(r"[,\n;]+", prompt):
        segment = raw.strip().strip('"')
        if segment.endswith(("...", "…")):
            segment = re.sub(r"\s*\S*(\.\.\.|…)$", "", segment).strip()
        if re.search(r"[A-Za-z]{3,}", segment):
            out.append(segment)
    return out


def _segment_stems(segment: str) -> set[str]:
    return {stem(w) for w in re.findall(r"[A-Za-z][A-Za-z'-]{2,}", segment)}


def missing_terms(prompt: str, wish: Wish) -> list[str]:
    present = _segment_stems(prompt)
    return [t for t in wish.terms if stem(t) not in present]


@dataclass
class FidelityReport:
    """What the plan keeps of the person's words, what the studio added or took out."""

    kept: list[str] = field(default_factory=list)  # wishes the model's prompt already carried
    added: list[str] = field(default_factory=list)  # phrases the studio put in
    removed: list[str] = field(default_factory=list)  # segments taken out (leaks, exclusions)
    excluded: list[str] = field(default_factory=list)  # moved to the negative prompt
    missing: dict[str, list[str]] = field(default_factory=dict)  # phrase -> missing terms

    @property
    def faithful(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        """One line for the person: what of theirs is in the plan."""
        parts = []
        if self.kept:
            parts.append("kept " + "; ".join(f"“{p}”" for p in self.kept))
        if self.added:
            parts.append("added " + "; ".join(f"“{p}”" for p in self.added))
        if self.excluded:
            parts.append("kept out " + ", ".join(f"“{p}”" for p in self.excluded))
        negatives = [
            r.removeprefix("negative: ") for r in self.removed if r.startswith("negative: ")
        ]
        others = len(self.removed) - len(negatives)
        if negatives:  # quoted: the person should see what would have worked against them
            parts.append(
                "took out of the negative prompt "
                + "; ".join(f"“{n}”" for n in negatives)
                + " (it would have worked against your subject)"
            )
        if others:  # not quoted: words said here count as the conversation's own
            parts.append(f"dropped {others} part{'s' if others != 1 else ''} nobody here asked for")
        return ("Your words in the prompt: " + " · ".join(parts) + ".") if parts else ""

    def as_dict(self) -> dict[str, object]:
        return {
            "kept": self.kept,
            "added": self.added,
            "removed": self.removed,
            "excluded": self.excluded,
            "missing": self.missing,
        }


def check(plan: TechnicalPlan, wishes: PersonWishes) -> FidelityReport:
    """Which of the person's wishes the plan's positive prompt misses (and what it keeps)."""
    report = FidelityReport()
    prompt = plan.positive_prompt
    for wish in wishes.all():
        missing = missing_terms(prompt, wish)
        if missing:
            report.missing[wish.phrase or wish.text] = missing
        elif wish.phrase:
            report.kept.append(wish.phrase)
    present = _segment_stems(prompt)
    for phrase in wishes.excluded():
        if _segment_stems(phrase) and _segment_stems(phrase) <= present:
            report.missing[f"without {phrase}"] = [phrase]
    for segment, words in _fighting_negatives(plan.negative_prompt, wishes):
        report.missing[f"not in the negative prompt: {segment}"] = sorted(words)
    return report


# What a negative prompt may say about the person's own subject: its defects ("deformed
# hands", "blurry face" for a portrait), never the subject or a scene with it.
_DEFECT_TEXT = """
deformed disfigured distorted malformed mutated mutation blurry blurred blur ugly bad poor
low worst quality extra missing fused cropped duplicate duplicated out of frame jpeg
artifacts artifact noisy noise oversaturated overexposed underexposed lowres pixelated
watermark signature text logo error
"""
_DEFECTS = frozenset(stem(w) for w in _DEFECT_TEXT.split())


def _fighting_negatives(negative: str, wishes: PersonWishes) -> list[tuple[str, set[str]]]:
    """Negative-prompt segments that would push the image away from what the person asked
    for: any that names part of their subject, unless all it adds is a defect ("a fisherman is about to finish" for "an old fisherman mending nets"
    negates the fisherman; "deformed hands" for a portrait does not)."""
    wished = set().union(*(w.term_stems for w in wishes.all())) if wishes.all() else set()
    out = []
    for segment in _segments(negative):
        # A craft word the person said is theirs too ("35mm film look"): it counts as theirs;
        # the other craft words say nothing either way.
        words = _segment_stems(segment)
        mine, rest = words & wished, words - wished - _CRAFT
        if mine and not (rest and rest <= _DEFECTS):
            out.append((segment, mine))
    return out


def _covered(segment: str, required: set[str]) -> bool:
    """A model segment that only repeats what a required phrase already says."""
    words = _segment_stems(segment)
    return bool(words) and words <= required


def grounded(segment: str, conversation: set[str]) -> bool:
    """Most of the segment's words were said in this conversation (or are plain craft)."""
    words = _segment_stems(segment) - _CRAFT
    if not words:
        return True
    return len(words & conversation) / len(words) >= GROUNDED_SHARE


# Words by which a person asks for moving pictures; anything else is a still image.
_VIDEO_WORDS = frozenset(
    [
        "video",
        "videos",
        "animation",
        "animate",
        "animated",
        "clip",
        "clips",
        "loop",
        "looping",
        "gif",
        "timelapse",
        "time-lapse",
        "cinemagraph",
    ]
)
VIDEO_TEMPLATES = frozenset({"video_animatediff", "video_native"})


def fit_kind(plan: TechnicalPlan, wishes: PersonWishes) -> TechnicalPlan:
    """A still when the person asked for an image, a video when they asked for one.

    A 270M Pixel once planned video_native at 3 steps for "a cozy cabin"; whether the person
    wants moving pictures is in their words, not the model's.
    """
    said = " ".join(w.text for w in wishes.all()).lower()
    wants_video = bool(_VIDEO_WORDS & set(re.findall(r"[a-z-]+", said)))
    is_video = plan.video is not None or plan.template in VIDEO_TEMPLATES
    if is_video and not wants_video:
        template = "txt2img" if plan.template in VIDEO_TEMPLATES else plan.template
        return plan.model_copy(update={"template": template, "video": None})
    if wants_video and not is_video and plan.template == "txt2img":
        return plan.model_copy(update={"template": "video_native", "video": VideoSettings()})
    return plan


def is_prose(segment: str) -> bool:
    """A segment that reads as sentences rather than as an image descriptor."""
    return len(segment.split()) > MAX_SEGMENT_WORDS or bool(_SENTENCE_BREAK.search(segment))


# What a small model writes where it has no negative prompt to give ("no negative prompt",
# "none", "N/A"): words about the field, not things to keep out of the image.
_PLACEHOLDER_WORDS = frozenset(
    [
        "no",
        "none",
        "nothing",
        "negative",
        "negatives",
        "prompt",
        "prompts",
        "n/a",
        "na",
        "null",
        "empty",
        "blank",
        "not",
        "needed",
        "required",
        "applicable",
        "any",
    ]
)


def is_placeholder(segment: str) -> bool:
    """A negative-prompt segment that only says there is no negative prompt."""
    words = re.findall(r"[a-z/]+", segment.lower())
    return bool(words) and set(words) <= _PLACEHOLDER_WORDS


def repair(
    plan: TechnicalPlan,
    wishes: PersonWishes,
    *,
    foreign: set[str] | None = None,
    conversation: set[str] | None = None,
) -> tuple[TechnicalPlan, FidelityReport]:
    """The plan with the person's request and directions guaranteed in its prompt.

    ``conversation`` (stems of everything said so far) drops model segments that the
    discussion never touched: a small model that wrote about another subject, or copied
    one from somewhere, is overruled.
    """
    report = FidelityReport()
    foreign_stems = {stem(w) for w in foreign or set()}
    excluded_stems = [_segment_stems(p) for p in wishes.excluded()]
    wished = set().union(*(w.term_stems for w in wishes.all())) if wishes.all() else set()
    named = set().union(*(_segment_stems(w.phrase) for w in wishes.all()))
    clauses = phrase_clauses(wishes)
    segments: list[str] = []
    addressed = False
    for raw in _segments(plan.positive_prompt):
        # An address to the team is nobody's descriptor ("Frame, try a low angle"): a bare
        # name goes unless the person named it in the image ("a luna moth"), and what was
        # said to it loses its lead-in.
        segment = as_said(unaddressed(raw, after_address=addressed), clauses)
        addressed = only_names(segment) and not _segment_stems(segment) <= named
        if not segment or addressed:
            report.removed.append(raw)
            continue
        words = _segment_stems(segment)
        ungrounded = conversation is not None and not grounded(segment, conversation)
        prose = is_prose(segment) and len(words & wished) < 0.7 * max(1, len(words))
        if (
            words & foreign_stems
            or ungrounded
            or prose
            or any(ex and ex <= words for ex in excluded_stems)
        ):
            report.removed.append(segment)
            continue
        if segment.lower() not in (s.lower() for s in segments):
            segments.append(segment)
    model_prompt = ", ".join(segments)
    lead: list[str] = []
    tail: list[str] = []
    request = wishes.request
    if request and request.terms:
        if missing_terms(model_prompt, request):
            lead.append(request.phrase)
            report.added.append(request.phrase)
        else:
            report.kept.append(request.phrase)
    for wish in wishes.directions:
        if not wish.terms:
            continue
        if missing_terms(", ".join([*lead, model_prompt, *tail]), wish):
            tail.append(wish.phrase)
            report.added.append(wish.phrase)
        else:
            report.kept.append(wish.phrase)
    required = set().union(*(_segment_stems(p) for p in [*lead, *tail])) if lead or tail else set()
    body = [s for s in segments if not (lead and _covered(s, required))]
    parts = [*lead, *body, *tail]
    while len(", ".join(parts)) > MAX_PROMPT_CHARS and body:
        parts.remove(body.pop())  # the model's own descriptors go first, the person's stay
    positive = ", ".join(parts) or (request.phrase if request else plan.positive_prompt)
    # The negative prompt must not fight the person: a small model once put the whole request
    # there. Segments that are mostly the person's own wished-for words are taken out.
    fighting = {segment for segment, _ in _fighting_negatives(plan.negative_prompt, wishes)}
    report.removed.extend(f"negative: {segment}" for segment in fighting)
    kept_out: list[str] = []
    for s in _segments(plan.negative_prompt):
        if s in fighting or is_placeholder(s):  # "no negative prompt" is not a negative
            continue
        thing = avoided(s)  # "no people" -> "people"
        if thing.lower() not in (k.lower() for k in kept_out):
            kept_out.append(thing)
    negative = ", ".join(kept_out)
    for phrase in wishes.excluded():
        if stem(phrase) not in {stem(s) for s in _segments(negative)}:
            negative = f"{negative}, {phrase}" if negative else phrase
            report.excluded.append(phrase)
    repaired = plan.model_copy(
        update={"positive_prompt": positive[:4000], "negative_prompt": negative[:4000]}
    )
    repaired.rationale = stated_rationale(repaired)
    report.missing = check(repaired, wishes).missing
    return repaired, report


__all__ = [
    "FidelityReport",
    "check",
    "is_placeholder",
    "missing_terms",
    "repair",
]

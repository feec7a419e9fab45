"""The plan's stated "why": only sentences that agree with the plan.

Pixel's rationale is the one part of a plan the person reads as prose, and a small model's
is where it wanders: the embedded 0.5B Pixel wrote "The team agreed on: resolution =
832x640, seed = 12345, loras = [{'name': 'oak', ..." beside a plan with another seed and
no LoRA, and "... a standard quality for video requests. The positive and负面" for a still
image. The settings themselves are shown above the "why" anyway, so a sentence that
contradicts them is dropped rather than corrected:

* one that quotes a number the plan does not have, names LoRAs it has none of, or reads
  as code;
* one that speaks of video (video, frames, fps, animation) for a still image, or names a
  workflow the plan does not use ("text-to-image and image-to-image workflows" for a
  txt2img plan);
* one in a script the prompt does not use (the model slipping into another language);
* a last fragment that ran out of tokens before its full stop.
"""

from __future__ import annotations

import re
import unicodedata

from creative_studio.workflows.plan import TechnicalPlan

__all__ = ["stated_rationale"]

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CODE = re.compile(r"[{}\[\]=]")
_LORA = re.compile(r"\blora", re.IGNORECASE)
# Words only a video plan has ("frame" alone is composition's: "a wide frame").
_VIDEO = re.compile(r"\b(?:videos?|animat\w*|fps|frames|frame rate|footage)\b", re.I)
# Workflow kinds a sentence may name, by what the plan's template is called.
_WORKFLOWS = {
    "img2img": re.compile(r"\b(?:img2img|image[- ]to[- ]image)\b", re.I),
    "upscale": re.compile(r"\bupscal\w*", re.I),
    "inpaint": re.compile(r"\binpaint\w*", re.I),
}
# A sentence ends with its stop; "…" is the studio's own mark of a line it shortened (the
# brief's notes, core/text.py first_sentence), which a small model copies into its "why"
# ("... an inviting splash on the g…"): a cut-off sentence, not an ending.
_SENTENCE_END = re.compile(r"[.!?。！？][\"”'»)\]]*$")


def _plan_numbers(plan: TechnicalPlan) -> set[float]:
    """Every number the plan states: its settings, and those in its names and prompt."""
    values: list[float] = [
        plan.width, plan.height, plan.steps, plan.cfg, plan.seed, plan.denoise,
        plan.batch_size, *(lora.strength for lora in plan.loras),
    ]  # fmt: skip
    if plan.video is not None:
        values += [plan.video.frames, plan.video.fps, plan.video.motion_strength]
    names = " ".join([plan.template, plan.checkpoint, plan.positive_prompt])
    names += " " + " ".join(lora.name for lora in plan.loras)
    return {float(v) for v in values} | {float(n) for n in _NUMBER.findall(names)}


def _scripts(text: str) -> set[str]:
    """The writing systems of the text's letters ("LATIN", "CJK", "CYRILLIC", ...)."""
    scripts = set()
    for char in text:
        if char.isalpha():
            name = unicodedata.name(char, "")
            scripts.add(name.split(" ", 1)[0] if name else "?")
    return scripts


def stated_rationale(plan: TechnicalPlan) -> str:
    """The plan's "why", without the sentences that contradict the plan (module doc)."""
    numbers = _plan_numbers(plan)
    scripts = _scripts(plan.positive_prompt) | {"LATIN"}
    pieces = re.split(r"(?<=[.!?…])\s+|(?<=[。！？])", plan.rationale.strip())
    sentences = [piece.strip() for piece in pieces if piece.strip()]
    if sentences and not _SENTENCE_END.search(sentences[-1]):
        sentences.pop()  # cut off mid-sentence
    kept = []
    for sentence in sentences:
        if sentence.endswith("…") or _CODE.search(sentence) or _scripts(sentence) - scripts:
            continue
        if {float(n) for n in _NUMBER.findall(sentence)} - numbers:
            continue
        if not plan.loras and _LORA.search(sentence):
            continue
        if plan.video is None and _VIDEO.search(sentence):
            continue
        if any(
            kind not in plan.template and named.search(sentence)
            for kind, named in _WORKFLOWS.items()
        ):
            continue
        kept.append(sentence)
    return " ".join(kept)

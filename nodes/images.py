"""Starting images: which one the person gave, and what Pixel does with it.

Deterministic, like the preferred-template override: the model plans the picture, the
studio decides from what really happened in the conversation whether it starts from an
image. An image attached since the last generation (an upload, or a result the person chose
with "Use as init image") makes the plan an img2img, with a denoise the person's words
justify ("keep it close" -> low, "loosely inspired" -> high). "Upscale it", "make it
bigger" or "higher resolution" about the last result makes it an upscale of that result
(or of an image attached with those words). A video asked for with an image stays a video
made from the description: the studio has no image-to-video template, and says so.

The ComfyUI node asks ``init_image_for`` again with the same state, so both nodes agree on
the image without a new state field.
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage

from creative_studio.graph.state import StudioState, TechnicalPlan

__all__ = [
    "DENOISE_CLOSE",
    "DENOISE_DEFAULT",
    "DENOISE_LOOSE",
    "StartingImage",
    "given_images",
    "init_image_for",
    "plan_start",
    "wants_upscale",
]

DENOISE_CLOSE = 0.35  # "keep it close": the composition and colours survive
DENOISE_DEFAULT = 0.6  # a clear restyle that still reads as the same picture
DENOISE_LOOSE = 0.8  # "loosely inspired": little more than the layout survives
_CLOSE = re.compile(
    r"\b(keep (it|this|them)? ?close|stay close|close to (the|my|this) (original|photo|image|picture)"
    r"|faithful|subtle|slight(ly)?|barely|minimal changes?|light touch|same (composition|layout))\b"
)
_LOOSE = re.compile(
    r"\b(loose(ly)?|inspired by|inspiration|reimagine\w*|re-imagine\w*|freely|very different"
    r"|take liberties|as a starting point only|rough guide)\b"
)
_DENOISE = re.compile(r"\bdenois\w*\s*(?:of|=|to|at)?\s*(0?\.\d+|1(?:\.0+)?)\b")
_UPSCALE = re.compile(
    r"\b(upscal\w*|up-scal\w*|make (it|this|that) (bigger|larger)|bigger version|enlarge\w*"
    r"|higher[- ]res\w*|high[- ]res\w*|hi[- ]res|more resolution|increase (the )?resolution"
    r"|[24]x (larger|bigger|size))\b"
)
_FOUR_TIMES = re.compile(r"\b4x\b|\bfour times\b|\bx4\b")
_IMAGE_TEMPLATES = ("img2img", "upscale", "upscale_latent")
_MAX_SIDE = 4096  # TechnicalPlan's bound


class StartingImage:
    """The image a generation starts from: its storage ref and what the person said of it."""

    def __init__(self, ref: dict[str, Any], *, purpose: str) -> None:
        self.ref = ref
        self.purpose = purpose  # "img2img" | "upscale"

    @property
    def path(self) -> str:
        return str(self.ref.get("ref") or self.ref.get("path") or "")


def _since_last_generation(messages: list[AnyMessage]) -> list[AnyMessage]:
    for index in range(len(messages) - 1, -1, -1):
        extra = messages[index].additional_kwargs or {}
        if messages[index].type == "ai" and extra.get("kind") == "generation":
            return messages[index + 1 :]
    return messages


def given_images(messages: list[AnyMessage]) -> list[dict[str, Any]]:
    """Images the person attached since the last generation, newest last."""
    found: list[dict[str, Any]] = []
    for message in _since_last_generation(messages):
        if isinstance(message, HumanMessage):
            for image in (message.additional_kwargs or {}).get("images") or []:
                if isinstance(image, dict) and (image.get("ref") or image.get("path")):
                    found.append(image)
    return found


def _person_said(messages: list[AnyMessage]) -> str:
    return " ".join(
        m.text.lower() for m in _since_last_generation(messages) if isinstance(m, HumanMessage)
    )


def wants_upscale(text: str) -> bool:
    return bool(_UPSCALE.search(text.lower()))


def _last_result(state: StudioState) -> dict[str, Any] | None:
    generation = state.get("generation") or {}
    if generation.get("status") != "complete":
        return None
    for output in generation.get("outputs") or []:
        if (
            isinstance(output, dict)
            and output.get("path")
            and output.get("kind", "image") == "image"
        ):
            return {"ref": output["path"], "filename": output.get("filename"), "source": "output"}
    return None


def _starting_image(state: StudioState) -> StartingImage | None:
    messages = list(state.get("messages") or [])
    said = _person_said(messages)
    images = given_images(messages)
    if wants_upscale(said):
        if images:
            return StartingImage(images[-1], purpose="upscale")
        result = _last_result(state)
        if result is not None:
            return StartingImage(result, purpose="upscale")
    if images:
        return StartingImage(images[-1], purpose="img2img")
    return None


def denoise_for(said: str) -> float:
    """How far from the image the person wants to go, from their own words."""
    named = _DENOISE.search(said)
    if named:
        return max(0.05, min(1.0, float(named.group(1))))
    if _CLOSE.search(said):
        return DENOISE_CLOSE
    if _LOOSE.search(said):
        return DENOISE_LOOSE
    return DENOISE_DEFAULT


def _fit(width: int, height: int, pixels: int) -> tuple[int, int]:
    """The image's aspect ratio at about ``pixels`` pixels, in multiples of 64."""
    scale = (pixels / max(1, width * height)) ** 0.5
    return (
        max(64, min(_MAX_SIDE, round(width * scale / 64) * 64)),
        max(64, min(_MAX_SIDE, round(height * scale / 64) * 64)),
    )


def plan_start(
    state: StudioState, plan: TechnicalPlan, previous: TechnicalPlan | None
) -> tuple[TechnicalPlan, str | None]:
    """The plan with its starting image decided, and a line for the person (or None)."""
    start = _starting_image(state)
    said = _person_said(list(state.get("messages") or []))
    if start is None:
        if plan.template in _IMAGE_TEMPLATES:  # the model asked for an image nobody gave
            return plan.model_copy(update={"template": "txt2img", "denoise": 1.0}), None
        return plan, None
    if plan.video is not None:
        return plan, (
            "This studio has no image-to-video template, so the video is made from the "
            "description; the image you gave is not used for it."
        )
    width = int(start.ref.get("width") or (previous.width if previous else plan.width))
    height = int(start.ref.get("height") or (previous.height if previous else plan.height))
    if start.purpose == "upscale":
        factor = 4 if _FOUR_TIMES.search(said) else 2
        target_w = min(_MAX_SIDE, width * factor) // 8 * 8
        target_h = min(_MAX_SIDE, height * factor) // 8 * 8
        update = {"template": "upscale", "width": target_w, "height": target_h}
        if previous is not None:  # the same picture, bigger: keep what made it
            update |= {"positive_prompt": previous.positive_prompt, "seed": previous.seed}
        return plan.model_copy(update=update), (
            f"Pixel upscales {'the last result' if start.ref.get('source') == 'output' else 'your image'}"
            f" to {target_w}x{target_h}."
        )
    denoise = denoise_for(said)
    size = _fit(width, height, plan.width * plan.height)
    plan = plan.model_copy(
        update={"template": "img2img", "denoise": denoise, "width": size[0], "height": size[1]}
    )
    how = (
        "close to it"
        if denoise <= DENOISE_CLOSE
        else "loosely"
        if denoise >= DENOISE_LOOSE
        else "as a clear restyle"
    )
    return plan, f"Pixel starts from the image you gave ({how}: denoise {denoise:g})."


def init_image_for(state: StudioState, plan: TechnicalPlan) -> str | None:
    """The stored image (its storage path) the generation of ``plan`` starts from."""
    if plan.template not in _IMAGE_TEMPLATES and not str(plan.template).startswith("custom:"):
        return None
    start = _starting_image(state)
    return start.path if start is not None and start.path else None

"""Changing a plan so the server can run it: an installed checkpoint, a smaller size.

The builder (workflows/builder.py) calls ``switch_checkpoint`` when the server lacks the
plan's checkpoint or the template needs another family; the generation's attempts call
``reduce_for_memory`` after ComfyUI ran out of memory. Both only decide a new plan (and
the note that says why); they know nothing of templates or workflows, which is why they
are apart from the filling (workflows/filling.py).
"""

from __future__ import annotations

import math
from typing import Any

from creative_studio.workflows.catalog import rules
from creative_studio.workflows.plan import TechnicalPlan

__all__ = ["checkpoint_family", "reduce_for_memory", "switch_checkpoint"]


def checkpoint_family(name: str) -> str | None:
    """sdxl / sd15 / flux ... from the file name, or None when it does not say."""
    lowered = name.lower()
    for family, rule in rules()["families"].items():
        if any(word in lowered for word in rule["words"]):
            return str(family)
    return None


def _family_pixels(family: str | None) -> int | None:
    if family is None:
        return None
    return int(rules()["families"][family]["pixels"])


def _snap(value: float, multiple: int = 64, minimum: int = 64) -> int:
    return max(minimum, round(value / multiple) * multiple)


def _rescale(plan: TechnicalPlan, pixels: int) -> tuple[int, int]:
    """Width and height with the same aspect ratio and about ``pixels`` area."""
    ratio = plan.width / plan.height
    height = math.sqrt(pixels / ratio)
    return _snap(height * ratio), _snap(height)


def switch_checkpoint(
    plan: TechnicalPlan, installed: list[str], family: str | None = None, *, rescale: bool = True
) -> tuple[TechnicalPlan, str | None]:
    """An installed checkpoint for a plan whose checkpoint the server lacks.

    Prefers the plan's own family (an SDXL plan stays SDXL), or ``family`` when the
    template needs one; when the family changes the size follows the new family's area.
    Returns the plan unchanged and no note when nothing needs to change.
    """
    wanted = family or checkpoint_family(plan.checkpoint)
    current_ok = plan.checkpoint in installed and (
        family is None or checkpoint_family(plan.checkpoint) in (family, None)
    )
    if current_ok or not installed:
        return plan, None
    same = [name for name in installed if checkpoint_family(name) == wanted]
    choice = (same or installed)[0]
    update: dict[str, Any] = {"checkpoint": choice}
    old_family, new_family = checkpoint_family(plan.checkpoint), checkpoint_family(choice)
    if plan.checkpoint in installed:
        note = f"{plan.checkpoint} does not suit this template; Pixel switched to {choice}."
    else:
        note = f"Checkpoint {plan.checkpoint} is not installed on the server; Pixel switched to {choice}."
    pixels = _family_pixels(new_family)
    if rescale and pixels and new_family != old_family and plan.width * plan.height > pixels * 1.2:
        width, height = _rescale(plan, pixels)
        update.update(width=width, height=height)
        note += f" Size adjusted to {width}x{height}, what that model was trained for."
    return plan.model_copy(update=update), note


def reduce_for_memory(plan: TechnicalPlan, kind: str = "image") -> tuple[TechnicalPlan, str] | None:
    """The next smaller plan after ComfyUI ran out of memory, or None at the floor.

    Batch first (the person still gets the picture they asked for), then for a video the
    frame count, then the resolution, keeping the aspect ratio.
    """
    recovery = rules()["recovery"]
    if plan.batch_size > 1:
        batch = max(1, plan.batch_size // 2)
        return plan.model_copy(update={"batch_size": batch}), f"batch {batch}"
    if kind == "video" and plan.video is not None:
        minimum = int(recovery["oom_min_frames"])
        if plan.video.frames > minimum:
            frames = max(minimum, int(plan.video.frames * 0.75))
            video = plan.video.model_copy(update={"frames": frames})
            return plan.model_copy(update={"video": video}), f"{frames} frames"
    scale = float(recovery["oom_scale"])
    min_side = int(recovery["oom_min_side"])
    if min(plan.width, plan.height) * scale < min_side:
        return None
    width, height = _snap(plan.width * scale), _snap(plan.height * scale)
    if (width, height) == (plan.width, plan.height):
        return None
    return plan.model_copy(update={"width": width, "height": height}), f"{width}x{height}"

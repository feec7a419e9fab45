"""The technical plan: what a workflow is built from.

It sits with the workflows it describes, at the bottom of the layers, so the workflow
builder, the generation service, the database layer and the graph all share one type
without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator


class LoRA(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    strength: float = Field(default=0.8, ge=-4.0, le=4.0)


class VideoSettings(BaseModel):
    """Only set when the person asked for a video."""

    frames: int = Field(default=16, ge=1, le=480)
    fps: int = Field(default=8, ge=1, le=60)
    motion: str = Field(default="gentle camera drift", max_length=200)
    motion_strength: float = Field(default=1.0, ge=0.0, le=2.0)


Template = Literal["txt2img", "img2img", "upscale", "video_animatediff", "video_native"]
# A workflow a person exported from ComfyUI and uploaded (store/workflow_store.py), named
# "custom:<name>". Only the shape is checked here; whether it exists is the store's answer.
CUSTOM_TEMPLATE_PATTERN = r"^custom:[A-Za-z0-9 _.-]{1,80}$"
CustomTemplate = Annotated[str, StringConstraints(pattern=CUSTOM_TEMPLATE_PATTERN)]
# A template of ComfyUI's official library (workflows/official_library.py), "official:<name>".
OFFICIAL_TEMPLATE_PATTERN = r"^official:[A-Za-z0-9_.-]{1,100}$"
OfficialTemplate = Annotated[str, StringConstraints(pattern=OFFICIAL_TEMPLATE_PATTERN)]


class TechnicalPlan(BaseModel):
    """Pixel's plan: everything ComfyUI needs, validated before anyone relies on it.

    Bounds here are the generic ComfyUI ones (KSampler, EmptyLatentImage); the
    workflow builder validates again against the connected server's object_info.
    """

    template: Template | CustomTemplate | OfficialTemplate = "txt2img"
    checkpoint: str = Field(default="sd_xl_base_1.0.safetensors", min_length=1, max_length=200)
    sampler: str = Field(default="euler", min_length=1, max_length=60)
    scheduler: str = Field(default="normal", min_length=1, max_length=60)
    steps: int = Field(default=25, ge=1, le=150)
    cfg: float = Field(default=7.0, ge=0.0, le=30.0)
    width: int = Field(default=1024, ge=64, le=4096)
    height: int = Field(default=1024, ge=64, le=4096)
    seed: int = Field(default=0, ge=0, le=2**64 - 1)
    batch_size: int = Field(default=1, ge=1, le=8)
    positive_prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str = Field(default="", max_length=4000)
    loras: list[LoRA] = Field(default_factory=list, max_length=8)
    denoise: float = Field(default=1.0, ge=0.0, le=1.0)
    video: VideoSettings | None = None
    rationale: str = Field(default="", max_length=1000)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        # Latent images are 1/8 of the pixel size; round rather than refuse.
        return max(64, (value // 8) * 8)

    def summary(self) -> str:
        """A one-paragraph human reading of the plan, used as Pixel's message."""
        lines = [
            f"Template {self.template}, checkpoint {self.checkpoint}.",
            f"{self.width}x{self.height}, {self.steps} steps with {self.sampler}/{self.scheduler}, "
            f"CFG {self.cfg:g}, seed {self.seed}.",
            f"Prompt: {self.positive_prompt}",
        ]
        if self.negative_prompt:
            lines.append(f"Negative: {self.negative_prompt}")
        if self.loras:
            lines.append("LoRAs: " + ", ".join(f"{lo.name} ({lo.strength:g})" for lo in self.loras))
        if self.video:
            lines.append(
                f"Video: {self.video.frames} frames at {self.video.fps} fps, {self.video.motion}."
            )
        if self.rationale:
            lines.append(f"Why: {self.rationale}")
        return "\n".join(lines)


__all__ = [
    "CUSTOM_TEMPLATE_PATTERN",
    "OFFICIAL_TEMPLATE_PATTERN",
    "CustomTemplate",
    "LoRA",
    "OfficialTemplate",
    "TechnicalPlan",
    "Template",
    "VideoSettings",
]

"""The scripted model: a deterministic, offline stand-in for a language model.

It exists for demos without any model installed and for end-to-end tests of the
whole studio (CLI, API, web), where the behaviour must be the same on every run.
It reads the turn kind from the prompt's last line ("Turn: vote") and the request
from the brief, and answers in each specialist's voice with on-topic, plausible
lines, including a valid JSON plan for Pixel and a JSON verdict for Lens. It streams
word by word, with an optional delay so streaming and interjection can be watched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from creative_studio.core.text import content_words

_LINES: dict[str, dict[str, list[str]]] = {
    "style": {
        "explore": [
            "For {topic}, I see deep indigo shadows cut by {colour} light, with a wet, glossy texture.",
            "I'd paint {topic} like a nocturne: {colour} highlights over a muted, grainy base.",
        ],
        "respond": [
            "Building on that, let's push the {colour} accents and keep everything else desaturated.",
            "I agree with the framing; the palette should stay {colour} and teal with soft bloom.",
        ],
        "specifics": ["Palette: {colour}, teal, deep indigo and a touch of warm amber for skin."],
        "answer_user": [
            "Good call: I'll shift the palette toward {user}, stronger and more saturated."
        ],
        "clarify": ["What mood do you want: calm and dreamy, or loud and electric?"],
    },
    "composition": {
        "explore": [
            "A low angle with a 35mm lens would make {topic} feel immersive, leading lines to the centre.",
            "I'd frame {topic} wide, 16:9, with a strong foreground element and depth behind it.",
        ],
        "respond": [
            "To support that palette, keep the brightest area on the right third as the focal point.",
            "Yes, and a shallow depth of field will separate the subject from the busy background.",
        ],
        "specifics": [
            "Eye-level camera, 35mm, 16:9, focal point on the right third, wet ground in front."
        ],
        "answer_user": ["Noted: for {user}, I'll keep the framing but open up the sky area."],
        "clarify": ["Should this be a wide scene or a close portrait?"],
    },
    "story": {
        "explore": [
            "Who is in {topic}? I imagine a lone figure pausing, the moment before something changes.",
            "The story of {topic} is quiet resilience: life carrying on in a place that never sleeps.",
        ],
        "respond": [
            "That framing gives our lone figure room to breathe; the viewer should feel curious, not lost.",
            "I like it; a small human detail, like steam from a food stall, makes the scene lived-in.",
        ],
        "specifics": [
            "The moment: a courier stops under the signs and looks up, rain just ending."
        ],
        "answer_user": [
            "Understood: {user} makes the scene more hopeful, and I'll keep our figure in it."
        ],
        "clarify": ["Is there someone in the scene, and what are they doing?"],
    },
    "technical": {
        "answer_user": [
            "I can do {user}: I'll adjust the plan and keep the seed so we can compare."
        ],
        "respond": ["Technically that's fine: SDXL at 1216x832 with 30 steps handles this well."],
        "explore": ["SDXL with a wide 1216x832 frame will carry this."],
        "specifics": ["SDXL base, dpmpp_2m karras, 30 steps, CFG 6.5, 1216x832."],
        "clarify": ["Image or short video?"],
    },
    "critic": {
        "answer_user": ["Fair point about {user}; I'll check the next plan for exactly that."],
        "respond": ["The idea is coherent; watch out for muddy colours in the shadows."],
        "explore": ["The biggest risk is clutter; keep one clear focal point."],
        "specifics": ["Risk: too many light sources will flatten the image."],
        "clarify": ["What would make this a success for you?"],
    },
}
_COLOURS = ["magenta", "cyan", "amber", "violet", "crimson", "emerald"]
_TURN = re.compile(r"Turn:\s*(\w+)\s*$")
_REQUEST = re.compile(r"Request:\s*(.+)")
_LATEST = re.compile(r'Latest from the person: "(.*)"', re.S)
_DIRECTIONS = re.compile(r"Person's later directions:\s*(.+)")


class ScriptedChatModel(BaseChatModel):
    """A deterministic specialist. ``role`` picks the voice; ``delay`` is seconds per word."""

    role: str = "style"
    delay: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "creative-studio-scripted"

    def _reply(self, messages: list[BaseMessage]) -> str:
        prompt = "\n".join(m.text for m in messages)
        kind_match = _TURN.search(prompt.strip())
        kind = kind_match.group(1) if kind_match else "explore"
        request_match = _REQUEST.search(prompt)
        request = request_match.group(1).strip() if request_match else "the scene"
        latest = _LATEST.search(prompt)
        user = (latest.group(1) if latest else request).strip()[:80]
        digest = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
        colour = _COLOURS[digest % len(_COLOURS)]
        topic = (request[:80] or "the scene").rstrip(".")
        if kind == "plan":
            return self._plan(request, prompt, digest)
        if kind == "review":
            return json.dumps(
                {"approved": True, "reasons": [f"The plan matches '{topic}'"], "send_back_to": None}
            )
        if kind in ("vote", "plan_check"):
            return "READY - this covers my part of the brief."
        lines = _LINES.get(self.role, _LINES["style"]).get(kind) or _LINES[self.role]["respond"]
        return lines[digest % len(lines)].format(topic=topic, colour=colour, user=user)

    def _plan(self, request: str, prompt: str, digest: int) -> str:
        directions = _DIRECTIONS.search(prompt)
        extra = f", {directions.group(1).strip()}" if directions else ""
        words = sorted(content_words(request))[:12]
        video = any(w in ("video", "animation", "animated", "clip") for w in words)
        plan: dict[str, Any] = {
            "template": "video_native" if video else "txt2img",
            "checkpoint": "sd_xl_base_1.0.safetensors",
            "sampler": "dpmpp_2m",
            "scheduler": "karras",
            "steps": 30,
            "cfg": 6.5,
            "width": 1216,
            "height": 832,
            "seed": digest % 2**32,
            "positive_prompt": f"{request}{extra}, cinematic lighting, highly detailed",
            "negative_prompt": "blurry, low quality, watermark, text",
            "loras": [],
            "video": {"frames": 33, "fps": 16, "motion": "slow push-in"} if video else None,
            "rationale": "Wide frame and strong contrast carry the agreed mood.",
        }
        return json.dumps(plan)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self._reply(messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for token in re.split(r"(\s)", self._reply(messages)):
            if not token:
                continue
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for token in re.split(r"(\s)", self._reply(messages)):
            if not token:
                continue
            if self.delay and not token.isspace():
                await asyncio.sleep(self.delay)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
            if run_manager:
                await run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk

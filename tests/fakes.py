"""Deterministic chat models for graph tests, built on langchain_core's fake model.

``TurnModel`` is a GenericFakeChatModel that picks its reply by the turn kind the
studio writes on the prompt's last line ("Turn: vote"), so a test states what each
specialist says per kind without depending on the exact order of turns. Replies
stream word by word like the real thing; ``delay`` slows them down so a test can
interject mid-stream, and ``prompts`` records every prompt for inspection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from creative_studio.core.events import TOKEN_SINK_KEY
from creative_studio.tools.models import StaticProvider

_KIND = re.compile(r"Turn:\s*(\w+)\s*$")

Reply = str | Callable[[str], str] | Exception


class TurnModel(GenericFakeChatModel):
    """replies: kind -> list of replies used in order (the last one repeats)."""

    messages: Iterator[Any] = iter(())
    replies: dict[str, list[Reply]] = Field(default_factory=dict)
    delay: float = 0.0
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)

    def _pick(self, messages: list[BaseMessage]) -> str:
        self.prompts.append(list(messages))
        prompt = messages[-1].text if messages else ""
        kind = "repair" if "not a valid JSON object" in prompt else None
        if kind is None:
            match = _KIND.search("\n".join(m.text for m in messages).strip())
            kind = match.group(1) if match else "explore"
        if kind == "repair":
            kind = "repair" if "repair" in self.replies else self.kinds[-1]
        self.kinds.append(kind)
        queue = self.replies.get(kind) or self.replies.get("*") or [f"({kind} reply)"]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        return reply(prompt) if callable(reply) else reply

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self._pick(messages)))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        from langchain_core.messages import AIMessageChunk

        text = self._pick(messages)
        for token in re.split(r"(\s)", text):
            if not token:
                continue
            if self.delay and not token.isspace():
                await asyncio.sleep(self.delay)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
            if run_manager:
                await run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk


PLAN_JSON = (
    '{"template": "txt2img", "checkpoint": "sd_xl_base_1.0.safetensors", "sampler": "dpmpp_2m", '
    '"scheduler": "karras", "steps": 30, "cfg": 6.5, "width": 1216, "height": 832, "seed": 42, '
    '"positive_prompt": "neon cyberpunk street at night, rain, reflections", '
    '"negative_prompt": "blurry", "loras": [], "video": null, "rationale": "Wide and moody."}'
)
APPROVE_JSON = '{"approved": true, "reasons": ["matches the brief"], "send_back_to": null}'

DEFAULT_REPLIES: dict[str, dict[str, list[Reply]]] = {
    "style": {
        "explore": ["Magenta and cyan neon over wet asphalt, like a Syd Mead painting."],
        "specifics": ["Palette: magenta, cyan, deep indigo, a hint of amber."],
        "respond": [
            "Frame's low angle makes the signs tower; keep halation around every light.",
            "Saga's courier deserves a warm rim light against the cold signage.",
            "Chromatic aberration at the edges would sell the lens feeling.",
        ],
        "answer_user": ["Absolutely, brighter neon: I'll push saturation and bloom on the signs."],
        "vote": ["READY - palette is settled."],
        "plan_check": ["READY - the prompt keeps my palette."],
        "clarify": ["What mood are you after: dreamy, or loud and electric?"],
    },
    "composition": {
        "explore": ["Low angle, 24mm, the street receding to a vanishing point."],
        "specifics": ["Eye-level 35mm, 16:9, focal point on the right third."],
        "respond": [
            "Luna's indigo should fill the sky so the signs pop as the focal layer.",
            "Puddles in the foreground double every sign through reflection.",
            "A tram crossing mid-frame adds depth and scale.",
        ],
        "answer_user": ["A low angle it is: I'll drop the camera to knee height."],
        "vote": ["READY - framing is clear."],
        "plan_check": ["READY - 1216x832 keeps the wide frame."],
    },
    "story": {
        "explore": ["A courier pauses under a ramen sign, steam rising, rain just ending."],
        "specifics": ["The moment: the courier looks up at a flickering sign, curious."],
        "respond": [
            "The courier's yellow jacket gives us one warm accent against the cold.",
            "A stray cat watching the courier adds a quiet second story.",
            "Graffiti with a half-readable name hints at the city's history.",
        ],
        "answer_user": ["Brighter neon makes the night feel hopeful; the courier smiles now."],
        "vote": ["READY - the story works."],
        "plan_check": ["READY - the courier is in the prompt."],
        "clarify": ["Is someone in the scene, and what are they doing?"],
    },
    "technical": {
        "plan": [PLAN_JSON],
        "answer_user": ["I'll raise the steps and keep the seed for a fair comparison."],
        "*": ["SDXL at 1216x832 handles this."],
    },
    "critic": {
        "review": [APPROVE_JSON],
        "answer_user": ["I'll check the next plan for exactly that."],
        "*": ["Keep one clear focal point."],
    },
}


def make_models(
    overrides: dict[str, dict[str, list[Reply]]] | None = None, delay: float = 0.0
) -> dict[str, TurnModel]:
    models = {}
    for role, replies in DEFAULT_REPLIES.items():
        merged = {kind: list(queue) for kind, queue in replies.items()}
        merged.update({k: list(v) for k, v in (overrides or {}).get(role, {}).items()})
        models[role] = TurnModel(replies=merged, delay=delay, prompts=[], kinds=[])
    return models


def make_provider(
    overrides: dict[str, dict[str, list[Reply]]] | None = None, delay: float = 0.0
) -> tuple[StaticProvider, dict[str, TurnModel]]:
    models = make_models(overrides, delay)
    return StaticProvider(models), models  # type: ignore[arg-type]


class Trace:
    """What one run of the graph produced, for assertions."""

    def __init__(self) -> None:
        self.phases: list[str] = []
        self.messages: list[BaseMessage] = []
        self.interrupts: list[Any] = []
        self.tokens: list[tuple[str, str]] = []


async def run_turns(
    graph: Any, payload: Any, config: dict[str, Any], *, sink: bool = False
) -> Trace:
    """Stream one run and collect phases, messages, interrupts and tokens.

    Tokens come through LangGraph's "messages" stream (as in LangGraph Studio), or with
    ``sink`` through a token sink in the configurable, as the conversation runner has them
    (nodes/token_stream.py); a token's node is then its speaker's role."""
    trace = Trace()
    modes = ["updates", "messages"]
    if sink:

        async def collect(role: str, message_id: str, text: str) -> None:
            trace.tokens.append((role, text))

        config = {**config, "configurable": {**config["configurable"], TOKEN_SINK_KEY: collect}}
        modes = ["updates"]
    async for mode, chunk in graph.astream(payload, config, stream_mode=modes, durability="sync"):
        if mode == "messages":
            message, meta = chunk
            if message.text:
                trace.tokens.append((meta.get("langgraph_node", ""), message.text))
            continue
        for node, update in chunk.items():
            if node == "__interrupt__":
                trace.interrupts.extend(item.value for item in update)
                continue
            if not isinstance(update, dict):
                continue
            trace.messages.extend(update.get("messages") or [])
            if update.get("phase"):
                trace.phases.append(update["phase"])
    return trace

"""What every specialist node does: build the prompt, call the model, name the message.

Nodes are stateless: the prompt is rebuilt from the state on every call (brief, recent
transcript, the turn's instruction), so any process can run any turn of any
conversation after a restart.
"""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig

from creative_studio.graph.configuration import Configuration
from creative_studio.graph.prompting import build_messages, moderator, personas
from creative_studio.graph.state import StudioState, Turn, current_of
from creative_studio.graph.text import clean_reply
from creative_studio.tools.models import AssignmentProvider, ModelProvider

log = logging.getLogger(__name__)
_default_provider: AssignmentProvider | None = None


def provider_from(config: RunnableConfig) -> ModelProvider:
    """The provider bound by build_graph / the runner, else one from the environment."""
    global _default_provider
    provider = (config.get("configurable") or {}).get("model_provider")
    if provider is not None:
        return provider
    if _default_provider is None:
        _default_provider = AssignmentProvider()
    return _default_provider


def message_metadata(reply: BaseMessage) -> dict[str, Any]:
    """Token counts and timings the backend reported, kept on the message."""
    meta: dict[str, Any] = {}
    usage = getattr(reply, "usage_metadata", None)
    if usage:
        meta["usage"] = dict(usage)
    response = getattr(reply, "response_metadata", None) or {}
    for key in (
        "model",
        "model_name",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ):
        if key in response:
            meta[key] = response[key]
    return meta


def studio_message(text: str, *, phase: str, kind: str = "moderator", **extra: Any) -> AIMessage:
    """A line said by the studio itself (role 'system'), shown in the transcript."""
    return AIMessage(
        content=text,
        name="system",
        additional_kwargs={"speaker": "system", "phase": phase, "kind": kind, **extra},
    )


def specialist_message(
    reply: BaseMessage, text: str, turn: Turn, phase: str, **extra: Any
) -> AIMessage:
    return AIMessage(
        content=text,
        name=turn.speaker,
        id=reply.id,
        additional_kwargs={
            "speaker": turn.speaker,
            "phase": phase,
            "kind": turn.kind,
            "metadata": message_metadata(reply),
            **extra,
        },
    )


def unavailable(turn: Turn, phase: str, error: BaseException) -> dict[str, Any]:
    """One failing model must not stop the team: note the gap and let the others go on."""
    name = personas()[turn.speaker].name
    detail = (
        str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    )
    log.warning("%s failed: %s", name, detail)
    return {
        "messages": [
            studio_message(
                moderator("unavailable", name=name, error=detail),
                phase=phase,
                kind="unavailable",
                unavailable_role=turn.speaker,
                turn_kind=turn.kind,
            )
        ],
        "current": None,
    }


async def call_model(
    model: BaseChatModel, messages: list[BaseMessage], *, stream: bool = True
) -> BaseMessage:
    """Invoke the model; streamed turns reach the person token by token.

    Structured turns (JSON plans and verdicts) are tagged ``nostream`` so raw JSON never
    shows up in the chat: the person sees the rendered plan when it is complete.
    """
    runnable = model if stream else model.with_config(tags=["nostream"])
    return await runnable.ainvoke(messages)


async def speak(role: str, state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """A discussion turn: explore, respond, answer the person, vote or ask a question."""
    turn = current_of(state)
    if turn is None or turn.speaker != role:
        raise RuntimeError(f"{role} was routed without a turn for it")  # a router bug, loudly
    settings = Configuration.from_runnable_config(config)
    phase = state.get("phase", "ideation")
    try:
        model = provider_from(config).chat_model(role, settings)
        reply = await call_model(model, build_messages(state, turn, settings))
    except Exception as error:
        return unavailable(turn, phase, error)
    names = [p.name for p in personas().values()]
    text = clean_reply(reply.text, names, settings.max_turn_chars) or "…"
    return {"messages": [specialist_message(reply, text, turn, phase)], "current": None}

"""What every specialist node does: build the prompt, call the model, name the message.

Nodes are stateless: the prompt is rebuilt from the state on every call (brief, recent
transcript, the turn's instruction), so any process can run any turn of any
conversation after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection
from typing import Any
from uuid import UUID, uuid4, uuid5

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig

from creative_studio.core.events import CUT_KEY, REPLAY_KEY, TOKEN_SINK_KEY, TokenSink
from creative_studio.core.text import clean_reply, without_loops
from creative_studio.graph.configuration import Configuration
from creative_studio.graph.leaks import allowed_stems, strip_leaks
from creative_studio.graph.prompting import (
    DISCUSSION_KINDS,
    build_messages,
    moderator,
    personas,
    team_prompts,
)
from creative_studio.graph.state import StudioState, Turn, current_of
from creative_studio.graph.variety import drop_echoes
from creative_studio.graph.wishes import person_wishes, stem, stems
from creative_studio.nodes.token_stream import stream_reply
from creative_studio.tools.models import (
    CONNECTION_ERRORS,
    AssignmentProvider,
    ModelProvider,
    describe_failure,
)

log = logging.getLogger(__name__)
_default_provider: AssignmentProvider | None = None
RETRY_DELAYS = (0.5, 2.0)  # a refused connection is retried twice before the gap is noted


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
        "base_model",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_cached_tokens",
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
    """A specialist's turn, named as the person ("Luna"; Studio and chat UIs show the name).

    The role stays in ``additional_kwargs["role"]`` (and "speaker", for older readers);
    graph.state.role_of reads it back.
    """
    return AIMessage(
        content=text,
        name=personas()[turn.speaker].name,
        id=reply.id,
        additional_kwargs={
            "role": turn.speaker,
            "speaker": turn.speaker,
            "phase": phase,
            "kind": turn.kind,
            "metadata": message_metadata(reply),
            **extra,
        },
    )


def unavailable(
    turn: Turn, phase: str, error: BaseException, config: RunnableConfig
) -> dict[str, Any]:
    """One failing model must not stop the team: note the gap and let the others go on."""
    name = personas()[turn.speaker].name
    settings = Configuration.from_runnable_config(config)
    provider = provider_from(config)
    assignment = settings.model_for(turn.speaker)
    resolve = getattr(provider, "resolved", None)
    if resolve is not None:
        assignment = resolve(assignment)
    detail = describe_failure(
        error, assignment, getattr(provider, "ollama_host", ""), settings.timeout_for(turn.speaker)
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
                model=assignment,
            )
        ],
        "current": None,
    }


async def model_for(role: str, config: RunnableConfig) -> BaseChatModel:
    """The chat model for ``role``; lets the provider settle `auto` first (once)."""
    provider = provider_from(config)
    ensure_ready = getattr(provider, "ensure_ready", None)
    if ensure_ready is not None:
        await ensure_ready()
    return provider.chat_model(role, Configuration.from_runnable_config(config))


async def call_model(
    model: BaseChatModel | Runnable[Any, BaseMessage],
    messages: list[BaseMessage],
    *,
    stream: bool = True,
    time_limit: float | None = None,
    sink: TokenSink | None = None,
    role: str = "",
    message_id: str | None = None,
) -> BaseMessage:
    """Invoke the model with a time limit, retrying a refused connection twice.

    Streamed turns reach the person token by token. Structured turns (JSON plans and
    verdicts) are tagged ``nostream`` so raw JSON never shows up in the chat: the person
    sees the rendered plan when it is complete. With the runner's ``sink``, a streamed
    turn goes there token by token (nodes/token_stream.py) instead.
    """
    runnable = model if stream else model.with_config(tags=["nostream"])
    for attempt in range(len(RETRY_DELAYS) + 1):
        try:
            async with asyncio.timeout(time_limit):
                if stream and sink is not None:
                    return await stream_reply(model, messages, sink, role, message_id)
                return await runnable.ainvoke(messages)
        except CONNECTION_ERRORS:
            if attempt == len(RETRY_DELAYS):
                raise
            await asyncio.sleep(RETRY_DELAYS[attempt])
    raise AssertionError("unreachable")


def judges(role: str, config: RunnableConfig, settings: Configuration) -> bool:
    """Whether the role's model can judge and follow a discussion (its provider knows)."""
    capable = getattr(provider_from(config), "judges_readiness", None)
    return True if capable is None else bool(capable(role, settings))


_TURN_IDS = UUID("0d3c6b1e-2f8a-4e57-9b1c-6a7d2e9f4c30")


def turn_id(config: RunnableConfig, cut: Collection[str] = ()) -> str:
    """The id a specialist's turn streams and is stored under, the same when its step runs
    again: LangGraph's task id (in the node's ``checkpoint_ns``) follows from the checkpoint
    the step runs from. A turn whose first attempt was cut mid-stream takes the next one
    (its half-said text keeps the first, marked interrupted)."""
    task = str((config.get("configurable") or {}).get("checkpoint_ns") or "")
    if not task:
        return f"lc_run--{uuid4()}"
    message_id = f"lc_run--{uuid5(_TURN_IDS, task)}"
    while message_id in cut:
        message_id = f"lc_run--{uuid5(_TURN_IDS, message_id)}"
    return message_id


async def speak(role: str, state: StudioState, config: RunnableConfig) -> dict[str, Any]:
    """A discussion turn: explore, respond, answer the person, vote or ask a question.

    With the runner's token sink the turn has its own id (``turn_id``); a step that runs
    again after its turn was said (core/events.py REPLAY_KEY) says it as it was, without
    asking the model again.
    """
    turn = current_of(state)
    if turn is None or turn.speaker != role:
        raise RuntimeError(f"{role} was routed without a turn for it")  # a router bug, loudly
    settings = Configuration.from_runnable_config(config)
    phase = state.get("phase", "ideation")
    configurable = config.get("configurable") or {}
    sink = configurable.get(TOKEN_SINK_KEY)
    message_id = turn_id(config, configurable.get(CUT_KEY) or ()) if sink is not None else None
    said = (configurable.get(REPLAY_KEY) or {}).get(message_id) if message_id else None
    if said is not None:
        said_again = specialist_message(AIMessage(content=said, id=message_id), said, turn, phase)
        return {"messages": [said_again], "current": None}
    try:
        model = await model_for(role, config)
        prompt = build_messages(state, turn, settings, hears_team=judges(role, config, settings))
        reply = await call_model(
            model,
            prompt,
            time_limit=settings.timeout_for(role),
            sink=sink,
            role=role,
            message_id=message_id,
        )
    except Exception as error:  # any model failure is reported, not raised
        return unavailable(turn, phase, error, config)
    names = [p.name for p in personas().values()]
    text, notes = settle_reply(clean_reply(reply.text, names, settings.max_turn_chars), state, turn)
    message = specialist_message(reply, text, turn, phase, **notes)
    return {"messages": [message], "current": None}


_VOTE_HEAD = re.compile(r"^\W*(?:ready|not yet|not ready)\b\W*", re.IGNORECASE)


def answers_person(text: str, terms: tuple[str, ...]) -> bool:
    """An answer takes up what the person said (their key words) and is not a vote."""
    if _VOTE_HEAD.match(text):
        return False
    if not terms:
        return True
    said = stems(text)
    need = 1 if len(terms) <= 2 else 2
    return sum(1 for t in terms if stem(t) in said) >= need


def whole_sentences(text: str) -> str:
    """Cut a reply that ran out of tokens mid-sentence back to its last full sentence."""
    text = text.strip()
    if not text or text[-1] in ".!?…\"”')":
        return text
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    return text[: ends[-1]] if ends and ends[-1] >= 20 else text


def settle_reply(text: str, state: StudioState, turn: Turn) -> tuple[str, dict[str, Any]]:
    """What the studio guarantees of every discussion turn, whatever the model wrote.

    A turn that ran out of tokens mid-sentence ends at its last full stop, one that fell
    into a loop before its first repeated clause (core/text.py ``without_loops``).
    Sentences carrying words a prompt example planted are dropped (graph/leaks.py); an
    answer to the person that does not take up their words (or is a vote) is opened with
    them; an empty turn becomes the role's plain line about the request.
    """
    notes: dict[str, Any] = {}
    messages = state.get("messages", [])
    text = without_loops(whole_sentences(text))
    text, leaked = strip_leaks(text, allowed_stems(messages))
    if leaked:
        notes["leaks_removed"] = sorted(leaked)
    persona = personas()[turn.speaker]
    if turn.kind in DISCUSSION_KINDS:  # a vote may repeat another: that is agreement
        said_to_it = (persona.focus, persona.voice, str(team_prompts()["kinds"][turn.kind]))
        text, echoes = drop_echoes(text, messages, prompt=said_to_it)
        if echoes:
            notes["echoes_removed"] = echoes
    wishes = person_wishes(messages)
    if turn.kind == "answer_user":
        latest = wishes.latest()
        if latest is not None and not answers_person(text, latest.terms):
            rest = "" if _VOTE_HEAD.match(text) else text
            opener = persona.answer_opener.format(phrase=latest.phrase or latest.text)
            tail = rest[:1].lower() + rest[1:] if rest else "the plan takes it up."
            text = f"{opener}{tail}".strip()
            notes["answer_opened"] = True
    if not text.strip(" .…"):
        subject = wishes.request.phrase if wishes.request else "this"
        if subject.split(" ", 1)[0] in ("A", "An", "The"):  # mid-sentence: "For a cozy cabin"
            subject = subject[:1].lower() + subject[1:]
        text = persona.fallback.format(subject=subject) if persona.fallback else "…"
        notes["fallback"] = True
    return text, notes

"""Prompts: load the team's data files and lay each call out prefix-first.

Every call is ``[preamble, shared context, speaker closing]``. The first two parts are
identical for whoever speaks next, so a backend that caches prompt prefixes (llama.cpp,
Ollama) only processes the short closing part on consecutive turns. The context is a
bounded window (brief + last N turns), so a call costs the same at turn 10 and turn 60.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, SystemMessage

from creative_studio.graph.configuration import Configuration
from creative_studio.graph.state import StudioState, Turn, brief_of, plan_of, role_of
from creative_studio.graph.variety import worn_words
from creative_studio.graph.wishes import PersonWishes, addressed, person_wishes, without_address

# Turns that discuss (not votes, plans or reviews): the ones that should not echo each other.
DISCUSSION_KINDS = frozenset({"explore", "respond", "specifics", "answer_user"})
# How many worn words the instruction names, the most used first.
NAMED_WORN = 8


@dataclass(frozen=True)
class Persona:
    role: str
    name: str
    title: str
    colour: str
    voice: str
    focus: str
    max_sentences: int
    keywords: tuple[str, ...]
    specifics: tuple[str, ...]
    openers: tuple[str, ...] = ()
    answer_opener: str = ""
    fallback: str = ""


def _load(name: str) -> dict[str, Any]:
    text = (resources.files("creative_studio.graph") / "prompts" / name).read_text("utf-8")
    return tomllib.loads(text)


@cache
def team_prompts() -> dict[str, Any]:
    return _load("team.toml")


@cache
def embedded_prompt_data() -> dict[str, Any]:
    """The embedded base model's completion-prompt material (tools/prompts/embedded.toml).

    Read here too so the leak guard knows every example a model is shown.
    """
    text = (resources.files("creative_studio.tools") / "prompts" / "embedded.toml").read_text()
    return tomllib.loads(text)


@cache
def personas() -> dict[str, Persona]:
    return {
        role: Persona(
            role=role,
            name=data["name"],
            title=data["title"],
            colour=data["colour"],
            voice=data["voice"],
            focus=data["focus"],
            max_sentences=int(data["max_sentences"]),
            keywords=tuple(data["keywords"]),
            specifics=tuple(data["specifics"]),
            openers=tuple(data.get("openers", ())),
            answer_opener=str(data.get("answer_opener", "")),
            fallback=str(data.get("fallback", "")),
        )
        for role, data in _load("personas.toml").items()
    }


def moderator(key: str, **values: Any) -> str:
    """A line the studio itself says (not a model): 'Team, are we ready to generate?'."""
    return str(team_prompts()["moderator"][key]).format(**values)


def speaker_name(message: AnyMessage) -> str:
    """Display name of whoever wrote a message in the transcript."""
    if message.type == "human":
        return "Person"
    role = role_of(message)
    if role in personas():
        persona = personas()[role]
        return f"{persona.name} ({persona.role})"
    return str(team_prompts()["moderator"]["name"])


def window_start(count: int, window: int) -> int:
    """Where the transcript window starts: it slides in chunks, not one turn at a time.

    A window that drops its oldest line at every turn changes the prompt right after the
    preamble, so no backend could reuse its cached prefix. Advancing by a third of the
    window at once keeps the start fixed for several turns: the prompt shows between two
    thirds of ``window`` and ``window`` turns, and consecutive turns share their prefix.
    """
    if count <= window:
        return 0
    step = max(1, window // 3)
    return -(-(count - window) // step) * step


def transcript_lines(
    messages: list[AnyMessage], window: int, max_chars: int, *, team: bool = True
) -> list[str]:
    """The transcript as lines; ``team=False`` keeps only the person and the studio."""
    spoken = [m for m in messages if m.type in ("human", "ai")]
    if not team:
        spoken = [m for m in spoken if m.type == "human" or role_of(m) not in personas()]
    lines = []
    for message in spoken[window_start(len(spoken), window) :]:
        text = message.text.strip().replace("\n", " ")
        if len(text) > max_chars:
            text = text[: max_chars - 1] + "…"
        who = speaker_name(message)
        if message.type == "human":  # "hey Luna, ..." read by a small model made Luna a cat
            whom, said = addressed(text)
            if whom:
                who, text = f"{who} (to {whom})", said
        lines.append(f"{who}: {text}")
        images = (
            (message.additional_kwargs or {}).get("images") if message.type == "human" else None
        )
        if images:  # the team cannot see pixels, but must know there is a starting image
            sizes = ", ".join(f"{i.get('width')}x{i.get('height')}" for i in images)
            lines.append(
                f"{team_prompts()['moderator']['name']}: The person gave an image ({sizes}); "
                "Pixel starts from it."
            )
    return lines


def shared_context(
    state: StudioState, config: Configuration, *, hears_team: bool = True
) -> list[BaseMessage]:
    """The prefix every speaker shares: preamble + recent transcript + brief.

    The parts also travel as data in ``additional_kwargs["studio_context"]``, for backends
    that build their own prompt from them (the embedded completion model). A speaker that
    does not ``hears_team`` sees only the person's and the studio's lines: measured, a 0.5B
    model copies the last teammate's sentence word for word instead of building on it, so
    it speaks from the request, the directions and its own role alone (and reads a shorter
    prompt, which is faster too).
    """
    prompts = team_prompts()
    messages = state.get("messages", [])
    lines = transcript_lines(messages, config.recent_turns, config.max_turn_chars, team=hears_team)
    brief = brief_of(state)
    phase = state.get("phase", "ideation")
    # While the window still shows the whole discussion the roles' notes only repeat it;
    # leaving them out keeps the part re-read at every turn short (prompt caching).
    spoken = sum(1 for m in messages if m.type in ("human", "ai"))
    slid = window_start(spoken, config.recent_turns) > 0
    context = prompts["context"].format(
        brief=brief.render(notes=slid),
        phase=phase,
        transcript="\n".join(lines) or "(nobody has spoken yet)",
    )
    data = {
        "transcript": lines,
        "brief": brief.render(notes=slid),
        "request": brief.request,
        "phase": phase,
    }
    return [
        SystemMessage(prompts["preamble"].strip()),
        HumanMessage(context.strip(), additional_kwargs={"studio_context": data}),
    ]


def latest_user_text(state: StudioState) -> str:
    for message in reversed(state.get("messages", [])):
        if message.type == "human":
            return message.text.strip()
    return ""


def instruction_for(state: StudioState, turn: Turn, wishes: PersonWishes) -> str:
    prompts = team_prompts()
    template: str = prompts["kinds"][turn.kind]
    plan = plan_of(state)
    directions = "; ".join(w.phrase for w in wishes.directions if w.phrase)
    instruction = template.format(
        user_message=latest_user_text(state)[:1000],
        plan=plan.summary() if plan else "(no plan yet)",
        request=(without_address(wishes.request.text) if wishes.request else "")[:1000],
        directions=(
            str(prompts["moderator"]["directions_line"]).format(directions=directions[:800])
            if directions
            else ""
        ),
    )
    if turn.kind in ("plan", "review"):
        instruction += "\n" + prompts["json"][turn.kind].strip().format()
    return instruction


def build_messages(
    state: StudioState, turn: Turn, config: Configuration, *, hears_team: bool = True
) -> list[BaseMessage]:
    """The full prompt for one turn, prefix-first (see module docstring).

    ``hears_team=False`` (models that cannot follow a discussion) applies to discussion
    turns only: a plan or a review always sees what the team said.
    """
    persona = personas()[turn.speaker]
    messages = state.get("messages", [])
    wishes = person_wishes(messages)
    # Only a speaker who hears the team can avoid its repeats (and one who cannot follow
    # instructions well parrots the list itself, measured on the 0.5B model).
    worn = (
        worn_words(messages, keep=persona.keywords)
        if hears_team and turn.kind in DISCUSSION_KINDS
        else []
    )
    instruction = instruction_for(state, turn, wishes)
    if worn:
        named = ", ".join(worn[:NAMED_WORN])
        instruction += "\n" + str(team_prompts()["variety"]).format(words=named)
    closing = team_prompts()["closing"].format(
        name=persona.name,
        title=persona.title,
        voice=persona.voice,
        focus=persona.focus,
        instruction=instruction,
        directive=turn.directive,
        max_sentences=persona.max_sentences,
        kind=turn.kind,
    )
    turn_data = {
        "speaker": turn.speaker,
        "name": persona.name,
        "kind": turn.kind,
        "directive": turn.directive,
        "user_message": latest_user_text(state)[:1000],
        # How the reply starts, for models that continue a given opening (the embedded
        # ones): the role's own angle, or an answer that takes up the person's words.
        "prefill": prefill_for(state, turn, wishes),
    }
    hears = hears_team or turn.kind not in DISCUSSION_KINDS
    return [
        *shared_context(state, config, hears_team=hears),
        HumanMessage(closing.strip(), additional_kwargs={"studio_turn": turn_data}),
    ]


def prefill_for(state: StudioState, turn: Turn, wishes: PersonWishes) -> str:
    """The opening of a reply: answers take up the person's words, discussion turns the role."""
    persona = personas()[turn.speaker]
    if turn.kind == "answer_user":
        latest = wishes.latest()
        phrase = latest.phrase if latest else ""
        return (
            persona.answer_opener.format(phrase=phrase) if phrase and persona.answer_opener else ""
        )
    if turn.kind in ("explore", "respond", "specifics") and persona.openers:
        count = int(state.get("turn_count", 0) or 0)
        return persona.openers[count % len(persona.openers)]
    return ""


def repair_message(error: str) -> HumanMessage:
    return HumanMessage(str(team_prompts()["json_repair"]["text"]).format(error=error[:500]))

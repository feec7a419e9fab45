"""The plan is the person's idea: fidelity, leaks, answers and votes, with fake models.

Each fake here reproduces a failure seen with small real models: a plan copied from a
prompt example, an answer to the person that is a vote, votes that contradict
themselves or name nothing, example words in a turn.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from creative_studio.graph import leaks
from creative_studio.graph.builder import build_graph
from creative_studio.graph.fidelity import check, repair
from creative_studio.graph.objections import contradicts_itself, counts_as_objection
from creative_studio.graph.rationale import stated_rationale
from creative_studio.graph.wishes import parse_wish, person_wishes
from creative_studio.workflows.plan import LoRA, TechnicalPlan, VideoSettings
from tests.fakes import make_provider, run_turns

CABIN = "A cozy cabin in a snowy forest at dusk, warm light in the windows"
MELANCHOLIC = "Make it more melancholic, maybe a lone figure walking to the cabin"
FOX_PROMPT = (
    "a red fox in a misty snowy birch forest at dawn, looking back at a faint blue "
    "will-o'-the-wisp, pale pink and ice blue, japanese woodblock print, low angle"
)
FOX_PLAN = (
    '{"template": "txt2img", "checkpoint": "sd_xl_base_1.0.safetensors", "sampler": "euler", '
    '"scheduler": "normal", "steps": 25, "cfg": 7, "width": 1024, "height": 1024, "seed": 7, '
    f'"positive_prompt": "{FOX_PROMPT}", "negative_prompt": "blurry", "loras": [], '
    '"video": null, "rationale": "copied"}'
)
CABIN_TURNS: dict[str, dict[str, list[Any]]] = {
    "style": {
        "explore": ["Deep blue snow and one amber window glow, painted like Andrew Wyeth."],
        "respond": ["The amber glow should be the only warm note in the dusk."],
        "specifics": ["Palette: slate blue, charcoal pines, amber window light."],
    },
    "composition": {
        "explore": ["A wide shot, the cabin small on the right third, pines framing it."],
        "respond": ["Footprints in the snow lead the eye to the door."],
        "specifics": ["Eye level, 35mm, 3:2, the lit window as focal point."],
    },
    "story": {
        "explore": ["Someone is home: smoke curls from the chimney as the day ends."],
        "respond": ["The silence of fresh snow makes the warmth feel earned."],
        "specifics": ["The moment just after the lamps are lit, calm and safe."],
    },
}


def _studio(overrides: dict[str, dict[str, list[Any]]], **settings: Any):
    merged = {role: dict(kinds) for role, kinds in CABIN_TURNS.items()}
    for role, kinds in overrides.items():
        merged.setdefault(role, {}).update(kinds)
    provider, models = make_provider(merged)
    graph = build_graph(InMemorySaver(), provider=provider)
    # No ComfyUI here: the plan is only recorded.
    config = {"configurable": {"thread_id": str(uuid4()), "comfyui_url": "", **settings}}
    return graph, config, models


async def _say(graph: Any, config: dict[str, Any], text: str):
    message = HumanMessage(text, name="user", id=str(uuid4()))
    return await run_turns(graph, {"messages": [message]}, config)


def _terms(text: str) -> set[str]:
    return set(parse_wish(text, "request").terms)


# ---------------------------------------------------------------- wishes and repair


def test_a_wish_keeps_the_persons_words_without_lead_ins_and_finds_exclusions():
    wish = parse_wish("Please make it more melancholic, and no text, without people", "direction")
    assert wish.phrase == "more melancholic"
    assert wish.terms == ("melancholic",)
    assert wish.excluded == ("text", "people")
    assert parse_wish("yes, go ahead", "direction").terms == ()


def test_a_copied_plan_is_overruled_by_the_request_and_the_direction():
    messages = [HumanMessage(CABIN, id="1"), HumanMessage(MELANCHOLIC, id="2")]
    wishes = person_wishes(messages)
    plan = TechnicalPlan(positive_prompt=FOX_PROMPT)
    said = leaks.allowed_stems(messages)
    repaired, report = repair(plan, wishes, conversation=said)
    prompt = repaired.positive_prompt.lower()
    assert prompt.startswith(CABIN.lower())
    assert "lone figure walking to the cabin" in prompt
    for word in ("fox", "birch", "woodblock", "wisp"):
        assert word not in prompt
    assert report.faithful and check(repaired, wishes).faithful
    assert CABIN in report.added and "more melancholic, a lone figure walking to the cabin" in (
        report.added
    )
    assert "Your words in the prompt" in report.summary()


def test_a_faithful_plan_keeps_its_own_words_and_exclusions_go_negative():
    messages = [HumanMessage("a lighthouse in a storm", id="1"), HumanMessage("no boats", id="2")]
    wishes = person_wishes(messages)
    plan = TechnicalPlan(
        positive_prompt="a lighthouse in a storm, crashing waves, small boats", negative_prompt=""
    )
    said = leaks.allowed_stems(
        [*messages, HumanMessage("crashing waves against the rocks, boats in the harbour")]
    )
    repaired, report = repair(plan, wishes, conversation=said)
    assert repaired.positive_prompt == "a lighthouse in a storm, crashing waves"
    assert "boats" in repaired.negative_prompt
    assert report.kept == ["a lighthouse in a storm"] and report.excluded == ["boats"]


def test_lens_check_names_what_a_prompt_misses():
    wishes = person_wishes([HumanMessage(CABIN, id="1"), HumanMessage(MELANCHOLIC, id="2")])
    report = check(TechnicalPlan(positive_prompt="a cozy cabin in a snowy forest"), wishes)
    assert not report.faithful
    assert set(report.missing[CABIN]) == {"dusk", "warm", "light", "windows"}
    assert "melancholic" in report.missing["more melancholic, a lone figure walking to the cabin"]


# ---------------------------------------------------------------- the whole graph


async def test_a_plan_copied_from_an_example_still_carries_the_request_and_the_interjection():
    graph, config, _ = _studio({"technical": {"plan": [FOX_PLAN]}})
    await _say(graph, config, CABIN)
    first = (await graph.aget_state(config)).values["plan"]["positive_prompt"].lower()
    assert _terms(CABIN) <= set(first.replace(",", " ").split()) | {"windows"}
    assert "fox" not in first and "woodblock" not in first
    await _say(graph, config, MELANCHOLIC)
    state = (await graph.aget_state(config)).values
    prompt = state["plan"]["positive_prompt"].lower()
    assert "cabin" in prompt and "melancholic" in prompt and "lone figure" in prompt
    assert "fox" not in prompt
    pixel = [
        m
        for m in state["messages"]
        if m.additional_kwargs.get("speaker") == "technical" and "Prompt:" in m.text
    ][-1]
    assert "Your words in the prompt" in pixel.text
    lens = [m for m in state["messages"] if m.additional_kwargs.get("speaker") == "critic"][-1]
    assert "Fidelity check" in lens.text


async def test_an_answer_to_the_person_is_never_a_vote_and_takes_up_their_words():
    vote = "NOT YET - our plan is still in progress."
    overrides = {r: {"answer_user": [vote]} for r in ("style", "story", "composition")}
    graph, config, _ = _studio(overrides)
    await _say(graph, config, CABIN)
    await _say(graph, config, MELANCHOLIC)
    state = (await graph.aget_state(config)).values
    answers = [m for m in state["messages"] if m.additional_kwargs.get("kind") == "answer_user"]
    assert answers
    for answer in answers:
        assert not answer.text.upper().startswith(("NOT YET", "READY"))
        assert "melancholic" in answer.text


async def test_vague_and_self_contradicting_votes_do_not_block_the_team():
    votes = ["NOT YET - our plan is still in progress.", "NOT YET - we're ready."]
    overrides = {
        "style": {"vote": [votes[0]], "plan_check": [votes[0]]},
        "composition": {"vote": [votes[1]], "plan_check": [votes[1]]},
        "story": {"vote": [votes[0]], "plan_check": [votes[1]]},
    }
    graph, config, _ = _studio(overrides, max_rounds=2)
    trace = await _say(graph, config, CABIN)
    state = (await graph.aget_state(config)).values
    assert not trace.interrupts and state.get("question") is None
    assert state["phase"] == "complete" and state["plan"] is not None
    texts = [m.text for m in state["messages"]]
    assert not any("Pixel, please revise the plan" in t for t in texts)
    assert not any("Not everyone is ready" in t for t in texts)


async def test_a_concrete_objection_still_holds_the_team_back():
    overrides = {"story": {"vote": ["NOT YET - the chimney smoke is missing.", "READY - yes."]}}
    graph, config, _ = _studio(overrides)
    await _say(graph, config, CABIN)
    texts = [m.text for m in (await graph.aget_state(config)).values["messages"]]
    assert any("Not everyone is ready yet" in t and "chimney" in t for t in texts)


def test_vote_judgement():
    assert contradicts_itself(False, "we're ready.")
    assert not contradicts_itself(False, "we're ready but the sky needs stars")
    assert not counts_as_objection(False, "our plan is still in progress.", plan=None, brief="")
    assert counts_as_objection(False, "the window light is too cold", plan=None, brief="")
    assert not counts_as_objection(False, "the light is cold", plan=None, brief="", judges=False)


# ---------------------------------------------------------------- leaks


@pytest.fixture
def fox_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend a prompt example talks about a fox in a birch forest."""
    vocabulary = frozenset({"fox", "birch", "woodblock"})
    monkeypatch.setattr(leaks, "example_vocabulary", lambda: vocabulary)


async def test_example_words_never_reach_a_turn_unless_the_conversation_brought_them(
    fox_examples: None,
):
    leaky = "Soft blue snow. A red fox by the birch trees, like a woodblock print."
    graph, config, _ = _studio({"style": {"explore": [leaky]}})
    await _say(graph, config, CABIN)
    luna = [
        m
        for m in (await graph.aget_state(config)).values["messages"]
        if m.additional_kwargs.get("speaker") == "style"
    ]
    assert luna[0].text == "Soft blue snow."
    assert luna[0].additional_kwargs["leaks_removed"] == ["birch", "fox", "woodblock"]
    graph, config, _ = _studio({"style": {"explore": [leaky]}})
    await _say(graph, config, "a fox in a birch forest, woodblock print style")
    luna = [
        m
        for m in (await graph.aget_state(config)).values["messages"]
        if m.additional_kwargs.get("speaker") == "style"
    ]
    assert "fox" in luna[0].text


def test_the_shipped_prompts_carry_no_example_content():
    """The team's prompts teach format through schemas, so no example vocabulary exists."""
    assert leaks.example_vocabulary() == frozenset()


# ---------------------------------------------------------------- derived state follows messages


async def test_a_direction_edited_in_place_replaces_the_old_one_in_the_plan():
    """LangGraph Studio edits a message under the same id: the next plan follows the edit."""
    graph, config, _ = _studio({})
    await _say(graph, config, CABIN)
    direction = HumanMessage(MELANCHOLIC, name="user", id=str(uuid4()))
    await run_turns(graph, {"messages": [direction]}, config)
    assert "melancholic" in (await graph.aget_state(config)).values["plan"]["positive_prompt"]
    edited = HumanMessage("make it bright and joyful", name="user", id=direction.id)
    await graph.aupdate_state(config, {"messages": [edited]}, as_node="consensus")
    await run_turns(graph, None, config)
    state = (await graph.aget_state(config)).values
    prompt = state["plan"]["positive_prompt"]
    assert "bright and joyful" in prompt and "melancholic" not in prompt
    assert state["brief"]["directions"] == ["make it bright and joyful"]


async def test_the_request_edited_in_place_starts_the_team_over():
    graph, config, _ = _studio({})
    request = HumanMessage(CABIN, name="user", id=str(uuid4()))
    await run_turns(graph, {"messages": [request]}, config)
    edited = HumanMessage("A lighthouse on a cliff in a storm", name="user", id=request.id)
    await graph.aupdate_state(config, {"messages": [edited]}, as_node="consensus")
    trace = await run_turns(graph, None, config)
    state = (await graph.aget_state(config)).values
    assert trace.phases[0] == "ideation"
    assert state["brief"]["request"] == "A lighthouse on a cliff in a storm"
    assert state["plan"]["positive_prompt"].startswith("A lighthouse on a cliff in a storm")
    assert "cabin" not in state["plan"]["positive_prompt"]


async def test_models_that_cannot_judge_readiness_are_not_asked_to_vote():
    """The embedded models' votes say nothing: the detector moves the team on by itself."""
    provider, models = make_provider({r: dict(k) for r, k in CABIN_TURNS.items()})

    class NoJudges(type(provider)):  # type: ignore[misc]
        def judges_readiness(self, role: str, config: Any) -> bool:
            return False

    provider.__class__ = NoJudges
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {"configurable": {"thread_id": str(uuid4()), "comfyui_url": ""}}
    await _say(graph, config, CABIN)
    state = (await graph.aget_state(config)).values
    kinds = [m.additional_kwargs.get("kind") for m in state["messages"]]
    assert "vote" not in kinds and "plan_check" not in kinds
    assert any("The ideas have settled" in m.text for m in state["messages"])
    assert state["phase"] == "complete" and state["plan"] is not None
    assert "vote" not in models["style"].kinds


def test_the_negative_prompt_never_fights_the_request():
    """A 0.5B model once wrote the whole request into the negative prompt."""
    wishes = person_wishes([HumanMessage(CABIN, id="1")])
    plan = TechnicalPlan(positive_prompt=CABIN, negative_prompt=f"blurry, {CABIN}, watermark")
    assert not check(plan, wishes).faithful
    repaired, _ = repair(plan, wishes, conversation=leaks.allowed_stems([HumanMessage(CABIN)]))
    assert repaired.negative_prompt == "blurry, watermark"
    assert check(repaired, wishes).faithful


@pytest.mark.parametrize(
    ("request_text", "negative", "kept"),
    [
        # Seen on the embedded model: Saga's line about the subject became the negative.
        (
            "an old fisherman mending nets at dawn, fog over the harbour, 35mm film look",
            "a fisherman is about to complete their task, watermark",
            "watermark",
        ),
        ("a red fox in the snow", "blurry, a fox running away, text", "blurry, text"),
        # Defects of the subject are what a negative prompt is for.
        (
            "a portrait of a violinist on a rooftop",
            "deformed hands, blurry violinist, extra fingers",
            "deformed hands, blurry violinist, extra fingers",
        ),
    ],
)
def test_a_negative_never_names_the_subject_except_its_defects(
    request_text: str, negative: str, kept: str
) -> None:
    wishes = person_wishes([HumanMessage(request_text, id="1")])
    plan = TechnicalPlan(positive_prompt=request_text, negative_prompt=negative)
    repaired, report = repair(
        plan, wishes, conversation=leaks.allowed_stems([HumanMessage(request_text)])
    )
    assert repaired.negative_prompt == kept
    assert check(repaired, wishes).faithful
    for taken in set(negative.split(", ")) - set(kept.split(", ")):
        assert f"“{taken}”" in report.summary()  # the person sees what was taken out


@pytest.mark.parametrize(
    ("negative", "kept"),
    [
        ("no negative prompt", ""),  # seen on the embedded model
        ("None", ""),
        ("blurry, N/A, watermark", "blurry, watermark"),
        ("negative prompt not needed", ""),
        ("no text, no people", "text, people"),  # real exclusions stay, as what to avoid
    ],
)
def test_a_placeholder_is_not_a_negative_prompt(negative: str, kept: str) -> None:
    request = "a girl reading under a big oak tree in autumn, golden light"
    wishes = person_wishes([HumanMessage(request, id="1")])
    plan = TechnicalPlan(positive_prompt=request, negative_prompt=negative)
    repaired, _ = repair(plan, wishes, conversation=leaks.allowed_stems([HumanMessage(request)]))
    assert repaired.negative_prompt == kept


def _still_with_why(request: str, rationale: str, **settings: Any) -> TechnicalPlan:
    """An 832x640, 15-step, CFG 5.5 still of ``request`` whose "why" is ``rationale``."""
    return TechnicalPlan(
        positive_prompt=request, width=832, height=640, steps=15, cfg=5.5,
        rationale=rationale, **settings,
    )  # fmt: skip


def test_the_why_of_a_plan_never_contradicts_the_plan() -> None:
    """The embedded Pixel's "why" once quoted another seed and a LoRA the plan did not have."""
    request = "a girl reading under a big oak tree in autumn, golden light"
    wishes = person_wishes([HumanMessage(request, id="1")])
    plan = _still_with_why(
        request,
        seed=3513262619,
        rationale=(
            "Warm light suits the autumn scene. 832x640 gives the tree room, at CFG 5.5. "
            "The team agreed: seed 12345 for a calm look. A soft LoRA adds grain. "
            "Settings: resolution = 832x640, loras = [{'name': 'oak', 'power"
        ),
    )
    repaired, _ = repair(plan, wishes, conversation=leaks.allowed_stems([HumanMessage(request)]))
    assert repaired.rationale == (
        "Warm light suits the autumn scene. 832x640 gives the tree room, at CFG 5.5."
    )
    assert "12345" not in repaired.summary() and "LoRA" not in repaired.summary()
    with_lora = plan.model_copy(update={"loras": [LoRA(name="film_grain", strength=0.6)]})
    repaired, _ = repair(
        with_lora,
        wishes,
        conversation=leaks.allowed_stems([HumanMessage(request)]),
    )
    assert "A soft LoRA adds grain." in repaired.rationale


async def test_lens_on_a_model_that_cannot_judge_is_the_studios_check_not_a_coin_toss():
    """A 0.5B Lens once sent a sound plan back because "the steps are set to 15"."""
    rejecting = (
        '{"approved": false, "reasons": ["The steps are set to 15 and the sampler is euler"], '
        '"send_back_to": "refinement"}'
    )
    provider, models = make_provider(
        {**{r: dict(k) for r, k in CABIN_TURNS.items()}, "critic": {"review": [rejecting]}}
    )

    class NoJudges(type(provider)):  # type: ignore[misc]
        def judges_readiness(self, role: str, config: Any) -> bool:
            return False

    provider.__class__ = NoJudges
    graph = build_graph(InMemorySaver(), provider=provider)
    config = {"configurable": {"thread_id": str(uuid4()), "comfyui_url": ""}}
    await _say(graph, config, CABIN)
    state = (await graph.aget_state(config)).values
    assert "review" not in models["critic"].kinds
    reviews = [m for m in state["messages"] if m.additional_kwargs.get("kind") == "review"]
    assert len(reviews) == 1 and reviews[0].additional_kwargs["checked_by"] == "studio"
    plan = state["plan"]
    assert f"{plan['width']}x{plan['height']}" in reviews[0].text
    assert "carries your request" in reviews[0].text
    assert not any("sent the plan back" in m.text for m in state["messages"])
    assert state["phase"] == "complete" and state["verdict"]["approved"]


def test_worn_words_are_the_teams_repeats_never_the_persons_words():
    from langchain_core.messages import AIMessage

    from creative_studio.graph.variety import worn_words

    def said(role: str, text: str) -> AIMessage:
        return AIMessage(text, name=role, additional_kwargs={"speaker": role})

    messages = [
        HumanMessage(CABIN, id="1"),
        said("style", "Soft reflective surfaces and warm light in the windows."),
        said("composition", "Soft reflective surfaces frame the cabin."),
        AIMessage("Soft reflective surfaces again.", name="system"),  # the studio: not counted
        said("story", "A calm evening; the cabin waits."),
    ]
    worn = worn_words(messages)
    # Most used first; the person's words never, the studio's lines not counted.
    assert set(worn[:3]) == {"reflective", "soft", "surfaces"}
    assert "again" not in worn and {"frame", "calm", "evening"} <= set(worn)
    assert "cabin" not in worn and "warm" not in worn and "windows" not in worn
    # A role's own vocabulary stays free for it.
    assert "soft" not in worn_words(messages, keep=["soft"])


def test_a_sentence_copied_from_an_earlier_turn_is_dropped_the_persons_words_never_count():
    from langchain_core.messages import AIMessage

    from creative_studio.graph.variety import drop_echoes

    luna = AIMessage(
        "For the colours and light, that means a soothing, peaceful atmosphere.",
        name="Luna",
        additional_kwargs={"speaker": "style"},
    )
    messages = [HumanMessage(CABIN, id="1"), HumanMessage(MELANCHOLIC, id="2"), luna]
    copied = (
        "Yes, more melancholic, a lone figure walking to the cabin. For the moment and the "
        "feeling, that means a soothing, peaceful atmosphere. Snow muffles every footstep."
    )
    text, dropped = drop_echoes(copied, messages)
    assert dropped == [
        "For the moment and the feeling, that means a soothing, peaceful atmosphere."
    ]
    assert text.startswith("Yes, more melancholic, a lone figure walking to the cabin.")
    assert text.endswith("Snow muffles every footstep.")
    # Only the person's words in common: never an echo.
    assert drop_echoes("A cozy cabin, warm light in the windows at dusk.", messages)[1] == []


def test_a_model_that_cannot_follow_the_team_hears_the_person_and_the_studio_only():
    from langchain_core.messages import AIMessage

    from creative_studio.graph.configuration import Configuration
    from creative_studio.graph.prompting import build_messages
    from creative_studio.graph.state import Turn

    luna = AIMessage(
        "Slate blue snow, one amber window.", name="Luna", additional_kwargs={"speaker": "style"}
    )
    studio = AIMessage("Good first ideas. Let's refine them.", name="system")
    state: Any = {"messages": [HumanMessage(CABIN, id="1"), luna, studio], "phase": "ideation"}
    settings = Configuration()
    for kind, hears, expect_luna in [("explore", False, False), ("explore", True, True)]:
        turn = Turn(speaker="composition", kind=kind)
        prompt = "\n".join(m.text for m in build_messages(state, turn, settings, hears_team=hears))
        assert CABIN in prompt and "Good first ideas" in prompt
        assert ("Slate blue snow" in prompt) is expect_luna
    # A plan always sees the team's discussion.
    plan = build_messages(state, Turn(speaker="technical", kind="plan"), settings, hears_team=False)
    assert "Slate blue snow" in "\n".join(m.text for m in plan)


def test_prose_copied_into_the_prompt_is_dropped_the_persons_long_phrases_stay():
    wishes = person_wishes(
        [
            HumanMessage("An astronaut playing chess with a robot on the moon", id="1"),
            HumanMessage("the earth should be visible in the sky", id="2"),
        ]
    )
    copied = (
        "An astronaut playing chess with a robot on the moon, A robot that can communicate "
        "with humans using its senses but also visually with the astronaut through its mind. "
        "This allows for a sense of connection, silver light, low angle"
    )
    plan = TechnicalPlan(positive_prompt=copied)
    repaired, report = repair(plan, wishes)
    prompt = repaired.positive_prompt
    assert "communicate" not in prompt and "This allows" not in prompt
    assert prompt.startswith("An astronaut playing chess with a robot on the moon")
    assert "silver light" in prompt and "low angle" in prompt
    assert "earth should be visible in the sky" in prompt
    assert any("communicate" in r for r in report.removed)


def test_a_still_or_a_video_is_the_persons_choice_not_the_models():
    from creative_studio.graph.fidelity import fit_kind

    still = person_wishes([HumanMessage(CABIN, id="1")])
    video_plan = TechnicalPlan(positive_prompt="x", template="video_native", video={"frames": 16})
    assert fit_kind(video_plan, still).template == "txt2img"
    assert fit_kind(video_plan, still).video is None
    moving = person_wishes([HumanMessage("a short looping video of waves on a beach", id="1")])
    planned = fit_kind(TechnicalPlan(positive_prompt="x", template="txt2img"), moving)
    assert planned.template == "video_native" and planned.video is not None
    # An img2img plan stays what the person's image made it.
    assert (
        fit_kind(TechnicalPlan(positive_prompt="x", template="img2img"), still).template
        == "img2img"
    )


async def test_a_preferred_video_template_serves_video_plans_and_never_a_still():
    graph, config, _ = _studio({}, preferred_template="official:video_wan2_2_5B_ti2v")
    await _say(graph, config, "a short looping video of snow falling on a cabin")
    assert (await graph.aget_state(config)).values["plan"][
        "template"
    ] == "official:video_wan2_2_5B_ti2v"
    graph, config, _ = _studio({}, preferred_template="official:video_wan2_2_5B_ti2v")
    await _say(graph, config, CABIN)
    assert (await graph.aget_state(config)).values["plan"]["template"] == "txt2img"


def test_how_to_make_it_never_becomes_what_is_in_it():
    """Seen against a real ComfyUI: 'keep it close, upscale it' pasted into the prompt."""
    for process in ["use this as the starting image, keep it close", "upscale it", "4 steps"]:
        assert parse_wish(process, "direction").terms == ()
    wishes = person_wishes(
        [
            HumanMessage("an orange moon over a dark blue sea", id="1"),
            HumanMessage("use this as the starting image, keep it close", id="2"),
            HumanMessage("make it bigger", id="3"),
            HumanMessage("a close-up of the moon, 30 steps, 768x512", id="4"),
        ]
    )
    plan = TechnicalPlan(positive_prompt="an orange moon over a dark blue sea, soft haze")
    prompt = repair(plan, wishes)[0].positive_prompt
    assert "close-up of the moon" in prompt
    for word in ("starting image", "keep it close", "bigger", "steps", "768x512"):
        assert word not in prompt, prompt
    # Content that merely sounds like a size stays content.
    assert "bigger" in parse_wish("a bigger moon over the sea", "direction").terms


def test_a_reply_that_parrots_its_own_instruction_is_dropped():
    from creative_studio.graph.prompting import personas, team_prompts
    from creative_studio.graph.variety import drop_echoes

    frame = personas()["composition"]
    said_to_it = (frame.focus, frame.voice, str(team_prompts()["kinds"]["explore"]))
    reply = (
        "In the frame, you would offer one or two vivid, concrete ideas. "
        "A low angle from the snow, the cabin small on the right third."
    )
    text, dropped = drop_echoes(reply, [HumanMessage(CABIN, id="1")], prompt=said_to_it)
    assert dropped == ["In the frame, you would offer one or two vivid, concrete ideas."]
    assert text == "A low angle from the snow, the cabin small on the right third."


def test_the_why_of_a_still_keeps_to_the_plans_language_kind_and_full_sentences() -> None:
    """The embedded Pixel ended a still image's "why" with "a standard quality for video
    requests. The positive and负面" (out of tokens, slipping into Chinese)."""
    request = "a fox crossing a frozen river at dawn, ukiyo-e woodblock print"
    wishes = person_wishes([HumanMessage(request, id="1")])
    plan = _still_with_why(
        request,
        rationale=(
            "A wide frame gives the fox the whole river. "
            "The team agreed on 832x640, a standard quality for video requests. "
            "Flat colour suits a woodblock print. 负面提示去掉了模糊。 "
            "The team agreed on ComfyUI's txt2img and image-to-image workflows. "
            "The positive and"
        ),
    )
    conversation = leaks.allowed_stems([HumanMessage(request)])
    repaired, _ = repair(plan, wishes, conversation=conversation)
    assert repaired.rationale == (
        "A wide frame gives the fox the whole river. Flat colour suits a woodblock print."
    )
    # The same words are kept where the plan says them: a video's frames, a Japanese prompt.
    video = plan.model_copy(
        update={
            "template": "video_native",
            "video": VideoSettings(frames=49, fps=16),
            "rationale": "The video runs 49 frames at 16 fps, smooth enough for the river.",
        }
    )
    assert stated_rationale(video) == video.rationale
    japanese = plan.model_copy(
        update={
            "positive_prompt": "夜明けの凍った川を渡る狐, 浮世絵",
            "rationale": "浮世絵の平らな色。冬の朝の光。 The positive and",
        }
    )
    assert stated_rationale(japanese) == "浮世絵の平らな色。 冬の朝の光。"


def test_a_negative_made_of_the_persons_own_craft_words_is_taken_out() -> None:
    """The embedded Pixel put "35mm film look" in the negative prompt of a request that asked
    for a "35mm film look": "film" is a craft word, but here it is the person's."""
    request = (
        "a portrait of an elderly beekeeper in a lavender field, soft morning light, 35mm film look"
    )
    wishes = person_wishes([HumanMessage(request, id="1")])
    plan = _still_with_why(request, "", negative_prompt="35mm film look, blurry, cinematic")
    repaired, report = repair(plan, wishes)
    assert repaired.negative_prompt == "blurry, cinematic"
    assert "negative: 35mm film look" in report.removed


@pytest.mark.parametrize(
    ("said", "phrase"),
    [
        (
            "Frame, try a low angle with the neon reflected in puddles",
            "a low angle with the neon reflected in puddles",
        ),
        ("Luna: more purple please", "more purple please"),
        ("@frame lower the camera", "lower the camera"),
        ("Frame try a low angle", "a low angle"),
        ("Luna and Frame — more fog", "more fog"),
        ("hey Saga, give her a red umbrella", "a red umbrella"),
        ("so Luna, maybe more teal?", "more teal"),
        # The names are words too: used in the image, they stay.
        ("frame the subject tightly", "frame the subject tightly"),
        ("Lens flare across the glass", "Lens flare across the glass"),
        ("a luna moth on a lamp", "a luna moth on a lamp"),
        ("pixel art city at dusk", "pixel art city at dusk"),
    ],
)
def test_a_direction_said_to_a_member_keeps_what_was_asked_not_whom(said: str, phrase: str):
    assert parse_wish(said, "direction").phrase == phrase


def test_a_plan_that_copies_an_address_to_the_team_keeps_the_direction_without_it():
    """Seen with the scripted team: "Frame, try a low angle ..." reached the prompt with the
    member's name at its head (Pixel copies the brief's directions)."""
    messages = [
        HumanMessage("a cyberpunk street at night, neon signs", id="1"),
        HumanMessage("Frame, try a low angle with the neon reflected in puddles", id="2"),
    ]
    wishes = person_wishes(messages)
    for copied in (
        "a cyberpunk street at night, neon signs, Frame, try a low angle with the neon "
        "reflected in puddles, cinematic lighting",
        "a cyberpunk street at night, neon signs, Frame: try a low angle with the neon "
        "reflected in puddles",
        # The brief's form (what the scripted Pixel copies): the lead-in goes too.
        "a cyberpunk street at night, neon signs, try a low angle with the neon reflected "
        "in puddles",
    ):
        repaired, report = repair(TechnicalPlan(positive_prompt=copied), wishes)
        prompt = repaired.positive_prompt
        assert "frame" not in prompt.lower() and "try " not in prompt
        assert "a low angle with the neon reflected in puddles" in prompt
        assert report.faithful
    named = person_wishes([HumanMessage("a luna moth on a lamp at night", id="1")])
    kept, _ = repair(TechnicalPlan(positive_prompt="a luna moth on a lamp at night, luna"), named)
    assert kept.positive_prompt == "a luna moth on a lamp at night, luna"


async def test_the_team_hears_the_direction_without_the_address():
    """The brief (what every member and Pixel read) carries the person's direction, not
    the name it was said to; the scripted team's plan then has it without the name too."""
    graph, config, _ = _studio({})
    await _say(graph, config, CABIN)
    await _say(graph, config, "Frame, try a low angle with the cabin against the sky")
    state = (await graph.aget_state(config)).values
    assert state["brief"]["directions"] == ["try a low angle with the cabin against the sky"]
    prompt = state["plan"]["positive_prompt"]
    assert "low angle with the cabin against the sky" in prompt and "Frame" not in prompt


def test_a_negative_lists_what_to_avoid_not_no_what():
    """Seen on the embedded team: "Negative: no people, people" for "..., no people" (the
    model's "no people" kept, the person's exclusion added beside it)."""
    wishes = person_wishes([HumanMessage("a paper boat in a rainy gutter, no people", id="1")])
    plan = TechnicalPlan(
        positive_prompt="a paper boat in a rainy gutter",
        negative_prompt="no people, blurry, without text, No People",
    )
    repaired, report = repair(plan, wishes)
    assert repaired.negative_prompt == "people, blurry, text"
    assert report.excluded == []  # the model had kept people out already


def test_a_why_copied_from_a_shortened_note_is_not_shown_cut_off() -> None:
    """Seen: "Why: The team agreed on ... an inviting splash on the g…" - the brief's note,
    shortened by the studio mid-word, copied into the plan's why."""
    plan = TechnicalPlan(
        positive_prompt="a paper boat in a rainy gutter",
        rationale="Low angle keeps the boat large. The team agreed on the use of soft paper "
        "to create an inviting splash on the g…",
    )
    assert stated_rationale(plan) == "Low angle keeps the boat large."


@pytest.mark.parametrize(
    ("said", "kept_out"),
    [
        ("no hunters anywhere", ("hunters",)),  # seen: "Negative: hunters anywhere"
        ("no text at all please", ("text",)),
        ("without people in the image", ("people",)),  # was lost as a clause about "the image"
        ("no cars in sight, make it dawn", ("cars",)),
        ("no upscaling", ()),  # the process, not a thing in the picture
    ],
)
def test_what_to_keep_out_is_the_thing_not_the_words_around_it(
    said: str, kept_out: tuple[str, ...]
):
    assert parse_wish(said, "direction").excluded == kept_out


def test_the_transcript_says_whom_the_person_spoke_to():
    """Seen on the embedded team: "hey Luna, I want a watercolor of a sleepy cat" made Saga
    write "Character: Luna, the protagonist". The team reads who was addressed apart."""
    from creative_studio.graph.prompting import transcript_lines

    lines = transcript_lines(
        [
            HumanMessage("hey Luna, I want a watercolor of a sleepy cat", id="1"),
            HumanMessage("a luna moth on the sill too", id="2"),
        ],
        window=12,
        max_chars=700,
    )
    assert lines == [
        "Person (to Luna): I want a watercolor of a sleepy cat",
        "Person: a luna moth on the sill too",
    ]

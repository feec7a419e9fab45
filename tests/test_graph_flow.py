"""Graph logic with deterministic fake models: phases, routing, consensus, interrupts."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from creative_studio.graph.builder import build_graph
from creative_studio.graph.prompting import personas
from creative_studio.graph.state import role_of
from tests.fakes import APPROVE_JSON, PLAN_JSON, make_provider, run_turns

REQUEST = "a cyberpunk street at night, neon signs"


def studio(overrides: dict[str, Any] | None = None, **settings: Any):
    provider, models = make_provider(overrides)
    graph = build_graph(InMemorySaver(), provider=provider)
    # No ComfyUI here: the plan is only recorded (tests/test_comfyui_direct.py generates).
    config = {"configurable": {"thread_id": str(uuid4()), "comfyui_url": "", **settings}}
    return graph, config, models


async def send(graph, config, text_or_command):
    payload = (
        text_or_command
        if isinstance(text_or_command, Command)
        else {"messages": [HumanMessage(text_or_command, name="user", id=str(uuid4()))]}
    )
    return await run_turns(graph, payload, config)


async def test_request_goes_through_every_phase_to_a_queued_generation():
    graph, config, models = studio()
    trace = await send(graph, config, REQUEST)
    assert trace.phases == [
        "ideation",
        "refinement",
        "synthesis",
        "review",
        "generating",
        "complete",
    ]
    state = (await graph.aget_state(config)).values
    speakers = {role_of(m) for m in state["messages"] if m.type == "ai"}
    assert {"style", "composition", "story", "technical", "critic", "system"} <= speakers
    assert state["plan"]["sampler"] == "dpmpp_2m" and state["plan"]["seed"] == 42
    assert state["verdict"]["approved"] is True
    assert state["generation"]["status"] == "queued"
    # The model's prompt lacked "signs": the person's request leads it, the model's
    # descriptors the discussion grounded stay.
    prompt = state["generation"]["plan"]["positive_prompt"]
    assert prompt.startswith(REQUEST) and "rain" in prompt
    # Ideation let the three creatives explore before anyone else spoke.
    first_turns = [role_of(m) for m in state["messages"] if m.type == "ai"][:3]
    assert first_turns == ["style", "composition", "story"]
    # Every specialist message carries its role, phase and turn kind.
    for message in state["messages"]:
        if message.type == "ai" and message.name != "system":
            role = message.additional_kwargs["role"]
            assert message.name == personas()[role].name  # named as the person
            assert message.additional_kwargs["speaker"] == role
            assert message.additional_kwargs["phase"] in (
                "ideation",
                "refinement",
                "synthesis",
                "review",
            )
    assert "plan" in models["technical"].kinds and "review" in models["critic"].kinds


async def test_refinement_router_asks_a_precise_question_before_the_answer():
    graph, config, _ = studio()
    await send(graph, config, REQUEST)
    messages = (await graph.aget_state(config)).values["messages"]
    texts = [m.text for m in messages]
    index = texts.index("Luna, what exact colour palette? Name three or four colours.")
    answer = messages[index + 1]
    assert role_of(answer) == "style" and answer.additional_kwargs["kind"] == "specifics"
    assert "Team, are we ready to generate?" in texts


async def test_prompts_are_prefix_first_and_carry_the_persona_last():
    graph, config, models = studio()
    await send(graph, config, REQUEST)
    style_prompt = models["style"].prompts[1]
    frame_prompt = models["composition"].prompts[1]
    # The shared prefix (preamble + brief + transcript) is the same for whoever speaks...
    assert style_prompt[0].text == frame_prompt[0].text
    assert "Creative brief so far" in style_prompt[1].text
    # ...and the persona and instruction come last.
    assert style_prompt[-1].text.startswith("You are Luna (style specialist)")
    assert frame_prompt[-1].text.startswith("You are Frame (composition specialist)")
    assert REQUEST in style_prompt[1].text


async def test_unclear_request_gets_clarifying_questions_before_any_planning():
    graph, config, models = studio()
    trace = await send(graph, config, "make something")
    state = (await graph.aget_state(config)).values
    kinds = [m.additional_kwargs.get("kind") for m in state["messages"] if m.type == "ai"]
    assert kinds == ["clarify", "clarify"]
    assert state["awaiting_person"] is True and state["phase"] == "ideation"
    assert trace.phases == ["ideation"] and state.get("plan") is None
    await send(graph, config, "a lighthouse in a storm, dramatic waves")
    state = (await graph.aget_state(config)).values
    assert "lighthouse" in state["brief"]["request"]
    assert state["phase"] == "complete"
    assert "explore" in models["style"].kinds


async def test_objection_leads_to_another_round_then_consensus():
    graph, config, models = studio(
        {
            "story": {
                "vote": ["NOT YET - we still don't know who the courier is.", "READY - now we do."]
            }
        }
    )
    trace = await send(graph, config, REQUEST)
    assert trace.phases[-1] == "complete"
    texts = [m.text for m in (await graph.aget_state(config)).values["messages"]]
    assert any(t.startswith("Not everyone is ready yet") and "courier" in t for t in texts)
    assert models["story"].kinds.count("vote") == 2


async def test_no_consensus_after_max_rounds_asks_the_person_to_decide():
    graph, config, _ = studio(
        {
            "style": {"vote": ["NOT YET - the palette should be warm amber, not neon."]},
            "composition": {"vote": ["NOT YET - I want a top-down view."]},
        },
        max_rounds=2,
    )
    trace = await send(graph, config, REQUEST)
    assert trace.interrupts, "the run should pause with a question for the person"
    question = trace.interrupts[0]
    assert question["type"] == "no_consensus"
    assert {o["speaker"] for o in question["options"]} >= {"Luna", "Frame"}
    assert "warm amber" in question["question"]
    snapshot = await graph.aget_state(config)
    assert snapshot.next == ("ask_person",)
    trace = await send(graph, config, Command(resume={"choice": "Warm amber, eye-level view."}))
    state = (await graph.aget_state(config)).values
    assert state["brief"]["decisions"] == ["Warm amber, eye-level view."]
    assert trace.phases[0] == "synthesis" and state["phase"] == "complete"


async def test_repetition_is_detected_as_a_loop_and_forces_the_phase_forward():
    same = "We should keep the neon magenta palette with wet reflective streets."
    graph, config, _ = studio(
        {
            "style": {"respond": [same], "specifics": [same]},
            "composition": {"respond": [same], "specifics": [same]},
            "story": {"respond": [same], "specifics": [same]},
        }
    )
    trace = await send(graph, config, REQUEST)
    texts = [m.text for m in (await graph.aget_state(config)).values["messages"]]
    assert any("going in circles" in t for t in texts)
    assert "Team, are we ready to generate?" not in texts  # the loop skipped the vote
    assert trace.phases[:3] == ["ideation", "refinement", "synthesis"]


async def test_critic_sends_back_with_reasons_a_bounded_number_of_times():
    reject = '{"approved": false, "reasons": ["the courier is missing from the prompt"], "send_back_to": "refinement"}'
    graph, config, models = studio({"critic": {"review": [reject]}}, max_send_backs=1)
    trace = await send(graph, config, REQUEST)
    state = (await graph.aget_state(config)).values
    texts = [m.text for m in state["messages"]]
    assert any("Lens sent the plan back to refinement" in t and "courier" in t for t in texts)
    assert any("Lens still has concerns" in t for t in texts)
    assert models["critic"].kinds.count("review") == 2
    assert state["send_backs"] == 1 and state["phase"] == "complete"
    assert trace.phases.count("refinement") == 2


async def test_critic_can_send_back_to_synthesis_only():
    reject = '{"approved": false, "reasons": ["CFG too high for this checkpoint"], "send_back_to": "synthesis"}'
    graph, config, models = studio({"critic": {"review": [reject, APPROVE_JSON]}})
    trace = await send(graph, config, REQUEST)
    assert trace.phases == [
        "ideation",
        "refinement",
        "synthesis",
        "review",
        "synthesis",
        "review",
        "generating",
        "complete",
    ]
    assert models["technical"].kinds.count("plan") == 2
    plan_prompt = models["technical"].prompts[-1][-1].text
    assert "CFG too high" in plan_prompt  # Pixel sees why it came back


async def test_approval_setting_pauses_before_generation():
    graph, config, _ = studio(approve_plans=True)
    trace = await send(graph, config, REQUEST)
    assert trace.interrupts[0]["type"] == "approve_plan"
    assert trace.interrupts[0]["plan"]["seed"] == 42
    assert (await graph.aget_state(config)).values["phase"] == "review"
    trace = await send(graph, config, Command(resume={"approved": True}))
    state = (await graph.aget_state(config)).values
    assert state["phase"] == "complete" and state["approved_by_person"] is True


async def test_rejected_plan_returns_to_the_discussion_with_the_feedback():
    graph, config, models = studio(approve_plans=True)
    await send(graph, config, REQUEST)
    trace = await send(graph, config, Command(resume="no, make the neon brighter"))
    assert trace.phases[0] == "refinement"
    assert "answer_user" in models["style"].kinds  # "neon" and "brighter" are Luna's words
    state = (await graph.aget_state(config)).values
    assert "no, make the neon brighter" in state["brief"]["directions"]
    assert trace.interrupts and trace.interrupts[0]["type"] == "approve_plan"


async def test_invalid_plan_json_is_repaired_once():
    graph, config, models = studio(
        {"technical": {"plan": ["Sure! Here's my plan: steps=30", PLAN_JSON]}}
    )
    await send(graph, config, REQUEST)
    state = (await graph.aget_state(config)).values
    assert state["plan"]["steps"] == 30 and state["phase"] == "complete"
    repair_prompt = models["technical"].prompts[-1][-1].text
    assert "not a valid JSON object" in repair_prompt


async def test_plan_that_stays_invalid_is_reported_never_guessed():
    bad = '{"template": "txt2img", "steps": 900, "positive_prompt": "x"}'
    graph, config, _ = studio({"technical": {"plan": [bad, bad]}})
    await send(graph, config, REQUEST)
    state = (await graph.aget_state(config)).values
    assert state.get("plan") is None and state["phase"] == "synthesis"
    assert state["awaiting_person"] is True
    assert "Pixel could not produce a valid plan" in state["messages"][-1].text
    assert "steps" in state["messages"][-1].text


async def test_creatives_may_object_to_the_plan_and_pixel_revises_it():
    graph, config, models = studio(
        {"story": {"plan_check": ["NOT YET - the courier must be in the prompt.", "READY - good."]}}
    )
    await send(graph, config, REQUEST)
    assert models["technical"].kinds.count("plan") == 2
    assert "courier must be in the prompt" in models["technical"].prompts[-1][-1].text


async def test_the_person_interjecting_is_answered_first_by_the_relevant_specialist():
    graph, config, models = studio()
    await send(graph, config, REQUEST)
    trace = await send(graph, config, "Frame, try a low camera angle instead")
    first_ai = trace.messages[0] if trace.messages[0].name != "system" else trace.messages[1]
    assert (
        role_of(first_ai) == "composition" and first_ai.additional_kwargs["kind"] == "answer_user"
    )
    frame = models["composition"]
    answer_prompt = frame.prompts[frame.kinds.index("answer_user")][-1].text
    assert "Frame, try a low camera angle instead" in answer_prompt


async def test_iteration_after_a_result_reuses_the_seed():
    graph, config, models = studio(
        {"technical": {"plan": [PLAN_JSON, PLAN_JSON.replace('"seed": 42', '"seed": 7')]}}
    )
    await send(graph, config, REQUEST)
    trace = await send(graph, config, "make the neon brighter")
    state = (await graph.aget_state(config)).values
    assert trace.phases[0] == "refinement" and state["phase"] == "complete"
    assert state["plan"]["seed"] == 42  # the team did not ask for a new seed
    assert state["brief"]["directions"] == ["make the neon brighter"]
    assert models["style"].kinds.count("answer_user") == 1


async def test_a_failing_specialist_is_noted_and_the_others_carry_on():
    down = [RuntimeError("model 'llama3' not found")]
    kinds = ("explore", "respond", "specifics", "answer_user", "vote", "plan_check")
    graph, config, _ = studio({"story": dict.fromkeys(kinds, down)})
    trace = await send(graph, config, REQUEST)
    state = (await graph.aget_state(config)).values
    notes = [m.text for m in state["messages"] if m.additional_kwargs.get("kind") == "unavailable"]
    assert notes and notes[0].startswith("Saga is unavailable: model 'llama3' not found")
    assert state["phase"] == "complete" and trace.phases[-1] == "complete"


async def test_the_persons_size_and_quality_preferences_reach_pixel():
    graph, config, models = studio(default_size="portrait", quality="high")
    await send(graph, config, REQUEST)
    plan_prompt = models["technical"].prompts[models["technical"].kinds.index("plan")][-1].text
    assert "portrait format, high quality (about 40 steps)" in plan_prompt


async def test_a_preferred_uploaded_workflow_becomes_the_plans_template():
    graph, config, _ = studio(preferred_template="custom:my neon flow")
    await send(graph, config, REQUEST)
    state = (await graph.aget_state(config)).values
    assert state["plan"]["template"] == "custom:my neon flow"


async def test_a_replayed_step_gives_the_studios_own_messages_the_same_ids():
    """graph/stable_ids.py: a step re-run from its checkpoint (the database went away
    before the next one was written; here, LangGraph's replay of a past checkpoint) writes
    the studio's own lines with the ids they had, so storing them again is a no-op."""
    graph, config, _ = studio()
    await send(graph, config, REQUEST)
    first = (await graph.aget_state(config)).values["messages"]
    studio_ids = [m.id for m in first if m.additional_kwargs.get("speaker") == "system"]
    assert len(studio_ids) >= 3 and len(set(studio_ids)) == len(studio_ids)
    # The checkpoint just before the first studio line: re-run everything after it.
    history = [s async for s in graph.aget_state_history(config)]
    before = next(
        s
        for s in reversed(history)  # oldest first
        if s.next
        and not any(m.id in studio_ids for m in s.values.get("messages", []))
        and s.values.get("messages")
        and s.next == ("router",)
        and len(s.values["messages"]) >= 4
    )
    replay = {
        **config,
        "configurable": {
            **config["configurable"],
            "checkpoint_id": before.config["configurable"]["checkpoint_id"],
        },
    }
    replayed = await run_turns(graph, None, replay)
    # Up to the first specialist's reply (a new one: the model speaks again) the replay says
    # what the first run said, with the same ids.
    said = [m.id for m in replayed.messages]
    lead = next(
        i for i, m in enumerate(replayed.messages) if m.additional_kwargs.get("speaker") != "system"
    )
    assert lead >= 1
    start = [m.id for m in first].index(said[0])
    assert said[:lead] == [m.id for m in first][start : start + lead]

"""The conversation runner on the real Postgres: storage, interjection, queueing, bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langgraph._internal._constants import ERROR  # the channel of a task's error (pinned)

from creative_studio.core.errors import InvalidInputError, InvalidStateError, NotFoundError
from creative_studio.core.events import StudioEvent
from creative_studio.graph.builder import build_graph
from creative_studio.services.runner import MAX_MESSAGE_CHARS, ConversationRunner
from creative_studio.services.timetravel import list_checkpoints
from creative_studio.store.database import Database
from tests.fakes import make_provider

REQUEST = "a cyberpunk street at night, neon signs"


class Recorder:
    def __init__(self) -> None:
        self.events: list[StudioEvent] = []
        self.first_token = asyncio.Event()
        self.interrupt = asyncio.Event()

    async def __call__(self, event: StudioEvent) -> None:
        self.events.append(event)
        if event.kind == "token":
            self.first_token.set()
        if event.kind == "interrupt":
            self.interrupt.set()

    def kinds(self) -> set[str]:
        return {e.kind for e in self.events}

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.kind == kind]


async def make_runner(database: Database, *, delay: float = 0.0, overrides=None, prefs=None):
    provider, models = make_provider(overrides, delay=delay)
    recorder = Recorder()
    runner = ConversationRunner(
        build_graph(database.checkpointer, provider=provider), database, sink=recorder
    )
    session = await runner.repository.create_session("test", preferences=prefs or {})
    conversation = await runner.repository.create_conversation(session.id, title="test")
    return runner, str(conversation.id), recorder, models


async def state_of(runner: ConversationRunner, cid: str) -> dict[str, Any]:
    return (await runner.graph.aget_state({"configurable": {"thread_id": cid}})).values


async def test_a_run_streams_events_and_stores_every_message(database: Database):
    runner, cid, recorder, _ = await make_runner(database)
    stored = await runner.send(cid, REQUEST)
    assert stored["role"] == "user" and stored["content"] == REQUEST
    await runner.wait_idle(cid)
    state = await state_of(runner, cid)
    assert state["phase"] == "complete"
    rows = await runner.repository.list_messages(cid)
    assert [r.message_id for r in rows] == [str(m.id) for m in state["messages"]]
    assert {r.role for r in rows} >= {
        "user",
        "style",
        "composition",
        "story",
        "technical",
        "critic",
        "system",
    }
    assert {"token", "message", "phase", "typing", "status"} <= recorder.kinds()
    assert [p["phase"] for p in recorder.of("phase")][-1] == "complete"
    assert recorder.of("status")[-1] == {"state": "complete"}
    assert (await runner.repository.get_conversation(cid)).status == "complete"
    pixel = next(r for r in rows if r.role == "technical")
    assert pixel.metadata["plan"]["seed"] == 42 and pixel.kind == "plan"


async def test_interjection_cancels_mid_stream_keeps_the_partial_turn_and_is_answered(
    database: Database,
):
    runner, cid, recorder, models = await make_runner(database, delay=0.02)
    await runner.send(cid, REQUEST)
    await asyncio.wait_for(recorder.first_token.wait(), 10)
    await asyncio.sleep(0.1)  # Luna is mid-sentence
    await runner.send(cid, "Frame, try a low camera angle")
    await runner.wait_idle(cid)
    rows = await runner.repository.list_messages(cid)
    interrupted = [r for r in rows if r.interrupted]
    assert len(interrupted) == 1 and interrupted[0].role == "style"
    assert (
        interrupted[0].content and interrupted[0].content in models["style"].replies["explore"][0]
    )
    # The partial turn stays in the team's transcript too, right before the interjection.
    state = await state_of(runner, cid)
    texts = [(m.name, m.text) for m in state["messages"]]
    position = texts.index(("user", "Frame, try a low camera angle"))
    assert state["messages"][position - 1].additional_kwargs.get("interrupted") is True
    # Frame answers the person first, then the discussion resumes and completes.
    after = [m for m in state["messages"][position + 1 :] if m.type == "ai"]
    assert (
        after[0].additional_kwargs["role"] == "composition"
        and after[0].additional_kwargs["kind"] == "answer_user"
    )
    assert state["phase"] == "complete"
    # Every token the person saw belongs to a stored message.
    streamed_ids = {t["message_id"] for t in recorder.of("token")}
    assert streamed_ids <= {r.message_id for r in rows}


async def test_rapid_fire_messages_are_queued_and_handled_in_order(database: Database):
    runner, cid, _, _ = await make_runner(database, delay=0.01)
    burst = [
        REQUEST,
        "more rain",
        "add a red umbrella",
        "Frame: wider shot",
        "Saga: make it hopeful",
    ]
    for text in burst:
        await runner.send(cid, text)
    await runner.wait_idle(cid)
    rows = await runner.repository.list_messages(cid)
    assert [r.content for r in rows if r.role == "user"] == burst
    state = await state_of(runner, cid)
    user_texts = [m.text for m in state["messages"] if m.type == "human"]
    assert user_texts == burst
    assert state["brief"]["request"] == REQUEST
    assert state["phase"] == "complete"
    handled = state["handled_user_ids"]
    assert [m.id for m in state["messages"] if m.type == "human"] == handled


async def test_bad_input_gets_a_clear_error_and_changes_nothing(database: Database):
    runner, cid, recorder, _ = await make_runner(database)
    with pytest.raises(InvalidInputError, match="empty"):
        await runner.send(cid, "   ")
    with pytest.raises(InvalidInputError, match=f"{MAX_MESSAGE_CHARS:,}"):
        await runner.send(cid, "x" * 100_000)
    with pytest.raises(NotFoundError):
        await runner.send("00000000-0000-0000-0000-000000000000", "hello")
    with pytest.raises(NotFoundError):
        await runner.send("not-a-conversation-id", "hello")
    with pytest.raises(InvalidStateError, match="Nothing to resume"):
        await runner.resume(cid)
    assert await runner.repository.count_messages(cid) == 0
    assert recorder.events == []
    assert (await state_of(runner, cid)) == {}
    # A finished conversation cannot be "resumed" either; it continues with a new message.
    await runner.send(cid, REQUEST)
    await runner.wait_idle(cid)
    count = await runner.repository.count_messages(cid)
    with pytest.raises(InvalidStateError, match="Nothing to resume"):
        await runner.resume(cid)
    assert await runner.repository.count_messages(cid) == count


async def test_the_team_question_is_answered_through_the_runner(database: Database):
    runner, cid, recorder, _ = await make_runner(database, prefs={"approve_plans": True})
    await runner.send(cid, REQUEST)
    await runner.wait_idle(cid)
    assert recorder.of("interrupt")[0]["question"]["type"] == "approve_plan"
    assert (await runner.repository.get_conversation(cid)).status == "waiting"
    with pytest.raises(InvalidInputError):
        await runner.resume(cid, "")
    await runner.send(cid, "yes, go ahead")
    await runner.wait_idle(cid)
    state = await state_of(runner, cid)
    assert state["phase"] == "complete" and state["approved_by_person"] is True
    rows = await runner.repository.list_messages(cid)
    answers = [r for r in rows if r.content == "yes, go ahead"]
    assert len(answers) == 1  # stored once, under the id the graph uses too
    assert answers[0].message_id in {str(m.id) for m in state["messages"]}


async def test_only_one_writer_per_conversation(database: Database):
    runner, cid, recorder, _ = await make_runner(database, delay=0.02)
    provider, _ = make_provider()
    other_recorder = Recorder()
    other = ConversationRunner(
        build_graph(database.checkpointer, provider=provider), database, sink=other_recorder
    )
    await runner.send(cid, REQUEST)
    await asyncio.wait_for(recorder.first_token.wait(), 10)
    await other.send(cid, "me too")
    await other.wait_idle(cid)
    errors = other_recorder.of("error")
    assert errors and "already running" in errors[0]["message"]
    await runner.wait_idle(cid)
    assert (await state_of(runner, cid))["phase"] == "complete"


async def test_settings_come_from_the_session(database: Database):
    runner, cid, _, _ = await make_runner(
        database, prefs={"approve_plans": True, "max_rounds": 5, "unknown": 1}
    )
    settings = await runner.settings(cid)
    assert settings == {"approve_plans": True, "max_rounds": 5, "model_assignments": {}}


async def test_checkpoints_are_listed_newest_first_with_phase_and_last_message(database: Database):
    runner, cid, _, _ = await make_runner(database)
    await runner.send(cid, REQUEST)
    await runner.wait_idle(cid)
    checkpoints = await list_checkpoints(runner.graph, runner.repository, cid)
    assert checkpoints[0].phase == "complete" and checkpoints[0].next == []
    assert checkpoints[-1].message_count == 0
    counts = [c.message_count for c in checkpoints]
    assert counts == sorted(counts, reverse=True)
    assert {"ideation", "refinement", "synthesis", "review"} <= {c.phase for c in checkpoints}
    with pytest.raises(NotFoundError):
        await list_checkpoints(
            runner.graph, runner.repository, "00000000-0000-0000-0000-000000000001"
        )


async def test_a_step_cut_after_some_of_its_writes_were_saved_runs_again_on_resume(
    database: Database,
):
    """A task cancelled at shutdown keeps the writes it had made (LangGraph saves them with
    the task's CancelledError), and a resume from the latest checkpoint hands them back as
    if the node had finished. Seen at a restart mid-router: its ``current`` write was kept,
    not its edge to the next speaker, so the continued run ended at once and the
    conversation stayed "idle" mid-ideation. The cut step must run again instead."""
    runner, cid, recorder, _ = await make_runner(database, delay=0.02)
    await runner.send(cid, REQUEST)
    await asyncio.wait_for(recorder.first_token.wait(), 30)
    await runner.aclose()  # the shutdown: the speaking node is cancelled mid-stream
    config = {"configurable": {"thread_id": cid}}
    stopped = await runner.graph.aget_state(config)
    cut = stopped.tasks[0]
    # What a task cut after its node's update, before its edge write, leaves: an update
    # without the edge to the next node, and the error.
    await database.checkpointer.aput_writes(
        stopped.config,
        [("current", None), (ERROR, asyncio.CancelledError())],
        cut.id,
    )
    left = (await runner.graph.aget_state(config)).tasks[0]
    assert left.result is not None and left.error is not None  # the state a restart met

    provider, _ = make_provider(None)
    after = Recorder()
    again = ConversationRunner(
        build_graph(database.checkpointer, provider=provider), database, sink=after
    )
    assert await again.take_over(cid)
    await again.wait_idle(cid)
    assert after.of("status")[-1]["state"] == "complete", after.of("status")
    spoke = [e["role"] for e in after.of("typing") if e["active"]]
    assert spoke[0] == cut.name  # the cut speaker speaks first, then the team goes on
    await again.aclose()

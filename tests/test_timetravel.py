"""Time travel: fork a conversation from a past checkpoint with an edited message."""

from __future__ import annotations

import pytest

from creative_studio.core.errors import NotFoundError
from creative_studio.services.timetravel import fork, list_checkpoints, state_at
from creative_studio.store.database import Database
from tests.test_runner import REQUEST, make_runner, state_of


async def test_fork_from_a_past_checkpoint_with_an_edited_message(database: Database):
    runner, cid, _, _ = await make_runner(database)
    await runner.send(cid, REQUEST)
    await runner.wait_idle(cid)
    await runner.send(cid, "make the neon brighter")
    await runner.wait_idle(cid)
    original = await state_of(runner, cid)
    original_records = await runner.repository.list_messages(cid)
    original_rows = [r.message_id for r in original_records]
    split = [r.content for r in original_records].index("make the neon brighter")
    checkpoints = await list_checkpoints(runner.graph, runner.repository, cid)
    # The point just after the person's second message arrived, before the team answered.
    target = min(
        (c for c in checkpoints if c.last_user_message == "make the neon brighter"),
        key=lambda c: c.message_count,
    )
    assert target.phase == "complete" and target.next == ["router"]

    branch = await fork(
        runner.graph, runner.repository, cid, target.checkpoint_id, "make it a rainy dawn instead"
    )
    assert branch.parent_id is not None and str(branch.parent_id) == cid
    assert branch.forked_from_checkpoint == target.checkpoint_id
    await runner.resume(str(branch.id))
    await runner.wait_idle(str(branch.id))

    forked = await state_of(runner, str(branch.id))
    assert forked["phase"] == "complete"
    assert forked["brief"]["directions"] == ["make it a rainy dawn instead"]
    forked_users = [m.text for m in forked["messages"] if m.type == "human"]
    assert forked_users == [REQUEST, "make it a rainy dawn instead"]
    # The old branch is intact: same state, same stored messages, same history length.
    after = await state_of(runner, cid)
    assert [m.id for m in after["messages"]] == [m.id for m in original["messages"]]
    assert after["brief"]["directions"] == ["make the neon brighter"]
    assert [r.message_id for r in await runner.repository.list_messages(cid)] == original_rows
    assert len(await list_checkpoints(runner.graph, runner.repository, cid)) == len(checkpoints)
    # The branch's stored history starts with the shared past, then diverges.
    branch_rows = await runner.repository.list_messages(str(branch.id))
    assert [r.message_id for r in branch_rows][:split] == original_rows[:split]
    assert branch_rows[split].content == "make it a rainy dawn instead"
    assert branch_rows[split].message_id not in original_rows


async def test_fork_of_the_first_request_starts_the_team_over(database: Database):
    runner, cid, _, _ = await make_runner(database)
    await runner.send(cid, REQUEST)
    await runner.wait_idle(cid)
    checkpoints = await list_checkpoints(runner.graph, runner.repository, cid)
    first = min((c for c in checkpoints if c.message_count == 1), key=lambda c: c.step or 0)
    branch = await fork(
        runner.graph, runner.repository, cid, first.checkpoint_id, "a lighthouse in a storm"
    )
    await runner.resume(str(branch.id))
    await runner.wait_idle(str(branch.id))
    state = await state_of(runner, str(branch.id))
    assert state["brief"]["request"] == "a lighthouse in a storm"
    assert [m.text for m in state["messages"] if m.type == "human"] == ["a lighthouse in a storm"]
    assert state["phase"] == "complete"


async def test_unknown_checkpoint_is_a_clear_error(database: Database):
    runner, cid, _, _ = await make_runner(database)
    await runner.send(cid, REQUEST)
    await runner.wait_idle(cid)
    with pytest.raises(NotFoundError, match="no checkpoint"):
        await state_at(runner.graph, runner.repository, cid, "1f0-not-a-checkpoint")
    with pytest.raises(NotFoundError, match="no checkpoint"):
        await fork(runner.graph, runner.repository, cid, "1f0-not-a-checkpoint", "x")


async def test_a_fork_mid_conversation_drops_the_edited_away_direction(database: Database):
    runner, cid, _, _ = await make_runner(database)
    for text in (REQUEST, "make it more melancholic", "add a full moon"):
        await runner.send(cid, text)
        await runner.wait_idle(cid)
    checkpoints = await list_checkpoints(runner.graph, runner.repository, cid)
    target = min(
        (c for c in checkpoints if c.last_user_message == "make it more melancholic"),
        key=lambda c: c.message_count,
    )
    branch = await fork(
        runner.graph, runner.repository, cid, target.checkpoint_id, "make it bright and joyful"
    )
    await runner.resume(str(branch.id))
    await runner.wait_idle(str(branch.id))
    forked = await state_of(runner, str(branch.id))
    prompt = forked["plan"]["positive_prompt"]
    assert "bright and joyful" in prompt
    assert "melancholic" not in prompt and "moon" not in prompt
    assert forked["brief"]["directions"] == ["make it bright and joyful"]
    original = await state_of(runner, cid)
    assert "melancholic" in original["plan"]["positive_prompt"]
    assert "full moon" in original["plan"]["positive_prompt"]

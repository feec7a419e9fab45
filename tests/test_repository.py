"""StudioRepository against a real, freshly migrated PostgreSQL database per test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from creative_studio.core.errors import InvalidInputError, NotFoundError
from creative_studio.store.database import Database
from creative_studio.store.repository import (
    ConversationRecord,
    SessionRecord,
    StudioRepository,
)


@pytest.fixture
def repo(database: Database) -> StudioRepository:
    return StudioRepository(database.pool)


async def make_conversation(repo: StudioRepository) -> tuple[SessionRecord, ConversationRecord]:
    session = await repo.create_session("Test session")
    return session, await repo.create_conversation(session.id, title="Test")


async def count(database: Database, table: str) -> int:
    async with database.pool.connection() as conn:
        cur = await conn.execute(f"select count(*) as n from {table}")
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


# ------------------------------------------------------------------------------ sessions


async def test_session_crud(repo: StudioRepository) -> None:
    created = await repo.create_session(
        "  Neon city  ", model_assignments={"style": "ollama:qwen3"}, preferences={"media": "image"}
    )
    assert isinstance(created.id, UUID)
    assert created.name == "Neon city"
    assert created.model_assignments == {"style": "ollama:qwen3"}
    assert created.preferences == {"media": "image"}
    assert created.created_at.tzinfo is not None

    assert await repo.get_session(created.id) == created
    assert await repo.get_session(str(created.id).upper()) == created

    renamed = await repo.rename_session(created.id, "Neon city at night")
    assert renamed.name == "Neon city at night"
    assert renamed.updated_at > created.updated_at  # trigger

    await repo.delete_session(created.id)
    with pytest.raises(NotFoundError):
        await repo.get_session(created.id)
    with pytest.raises(NotFoundError):
        await repo.delete_session(created.id)


async def test_session_defaults_and_validation(repo: StudioRepository) -> None:
    session = await repo.create_session("Plain")
    assert session.model_assignments == {} and session.preferences == {}
    for bad in ("", "   "):
        with pytest.raises(InvalidInputError, match="name"):
            await repo.create_session(bad)
        with pytest.raises(InvalidInputError, match="name"):
            await repo.rename_session(session.id, bad)
    with pytest.raises(InvalidInputError, match="model_assignments"):
        await repo.create_session("x", model_assignments={"style": 3})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="JSON object"):
        await repo.create_session("x", preferences=["not", "a", "dict"])  # type: ignore[arg-type]


async def test_update_session_settings_replaces_assignments_and_merges_preferences(
    repo: StudioRepository,
) -> None:
    session = await repo.create_session(
        "s", model_assignments={"style": "a", "story": "b"}, preferences={"media": "image", "n": 1}
    )
    updated = await repo.update_session_settings(
        session.id, preferences={"n": 2, "gpu_shared": True}
    )
    assert updated.model_assignments == {"style": "a", "story": "b"}  # untouched
    assert updated.preferences == {"media": "image", "n": 2, "gpu_shared": True}

    updated = await repo.update_session_settings(
        session.id, model_assignments={"critic": "embedded"}, preferences={"media": None}
    )
    assert updated.model_assignments == {"critic": "embedded"}  # replaced
    assert updated.preferences == {"n": 2, "gpu_shared": True}  # None removes a key

    assert (await repo.update_session_settings(session.id)).preferences == updated.preferences
    with pytest.raises(NotFoundError):
        await repo.update_session_settings(uuid4(), preferences={"a": 1})


async def test_concurrent_preference_updates_do_not_lose_keys(repo: StudioRepository) -> None:
    session = await repo.create_session("s")
    await asyncio.gather(
        *(repo.update_session_settings(session.id, preferences={f"k{i}": i}) for i in range(8))
    )
    assert (await repo.get_session(session.id)).preferences == {f"k{i}": i for i in range(8)}


async def test_list_sessions_newest_first_with_pagination(repo: StudioRepository) -> None:
    created = [await repo.create_session(f"session {i}") for i in range(5)]
    newest_first = [s.id for s in reversed(created)]
    assert [s.id for s in await repo.list_sessions(limit=50)] == newest_first
    page1 = await repo.list_sessions(limit=2, offset=0)
    page2 = await repo.list_sessions(limit=2, offset=2)
    page3 = await repo.list_sessions(limit=2, offset=4)
    assert [s.id for s in page1 + page2 + page3] == newest_first
    assert await repo.list_sessions(limit=2, offset=10) == []
    with pytest.raises(InvalidInputError):
        await repo.list_sessions(limit=0)
    with pytest.raises(InvalidInputError):
        await repo.list_sessions(offset=-1)


@pytest.mark.parametrize("bad_id", ["", "nope", "123", "00000000-0000-0000-0000", "'; drop"])
async def test_malformed_ids_are_not_found(repo: StudioRepository, bad_id: str) -> None:
    with pytest.raises(NotFoundError, match="not a valid id"):
        await repo.get_session(bad_id)
    with pytest.raises(NotFoundError):
        await repo.get_conversation(bad_id)
    with pytest.raises(NotFoundError):
        await repo.get_generation(bad_id)
    with pytest.raises(NotFoundError):
        await repo.list_messages(bad_id)
    with pytest.raises(NotFoundError):
        await repo.delete_session(bad_id)
    with pytest.raises(NotFoundError):
        await repo.update_generation(bad_id, progress=0.5)


async def test_unknown_ids_are_not_found_with_a_clear_message(repo: StudioRepository) -> None:
    unknown = uuid4()
    with pytest.raises(NotFoundError, match=f"No session with id {unknown}"):
        await repo.get_session(unknown)
    with pytest.raises(NotFoundError, match=f"No session with id {unknown}"):
        await repo.list_conversations(unknown)
    with pytest.raises(NotFoundError, match=f"No session with id {unknown}"):
        await repo.create_conversation(unknown)
    with pytest.raises(NotFoundError, match=f"No conversation with id {unknown}"):
        await repo.get_conversation(unknown)
    with pytest.raises(NotFoundError, match="No conversation"):
        await repo.set_conversation_status(unknown, "running")
    with pytest.raises(NotFoundError, match="No conversation"):
        await repo.add_message(unknown, "m1", "user", "You", "hi")
    with pytest.raises(NotFoundError, match="No conversation"):
        await repo.list_messages(unknown)
    with pytest.raises(NotFoundError, match="No conversation"):
        await repo.count_messages(unknown)
    with pytest.raises(NotFoundError, match=f"No generation with id {unknown}"):
        await repo.get_generation(unknown)
    with pytest.raises(NotFoundError, match="No generation"):
        await repo.update_generation(unknown, status="running")
    with pytest.raises(NotFoundError, match="No session"):
        await repo.list_generations(unknown)
    with pytest.raises(NotFoundError, match="No session"):
        await repo.create_generation(unknown, None, {})


# ------------------------------------------------------------------------------ conversations


async def test_conversation_crud_and_status(repo: StudioRepository) -> None:
    session = await repo.create_session("s")
    thread_id = uuid4()
    conv = await repo.create_conversation(session.id, title="First", conversation_id=thread_id)
    assert conv.id == thread_id
    assert conv.session_id == session.id
    assert conv.status == "idle"
    assert conv.parent_id is None and conv.forked_from_checkpoint is None
    assert await repo.get_conversation(str(thread_id)) == conv

    running = await repo.set_conversation_status(conv.id, "running")
    assert running.status == "running"
    assert running.updated_at > conv.updated_at
    with pytest.raises(InvalidInputError, match="conversation status"):
        await repo.set_conversation_status(conv.id, "paused")  # type: ignore[arg-type]

    with pytest.raises(InvalidInputError, match="already exists"):
        await repo.create_conversation(session.id, conversation_id=thread_id)

    untitled = await repo.create_conversation(session.id)
    assert untitled.title is None
    assert [c.id for c in await repo.list_conversations(session.id)] == [conv.id, untitled.id]
    assert await repo.list_conversations((await repo.create_session("empty")).id) == []


async def test_fork_keeps_existing_when_parent_is_deleted(
    repo: StudioRepository, database: Database
) -> None:
    session, parent = await make_conversation(repo)
    fork = await repo.create_conversation(
        session.id, title="Fork", parent_id=parent.id, forked_from_checkpoint="1ef-abc"
    )
    assert fork.parent_id == parent.id
    assert fork.forked_from_checkpoint == "1ef-abc"
    with pytest.raises(NotFoundError, match="No conversation"):
        await repo.create_conversation(session.id, parent_id=uuid4())

    async with database.pool.connection() as conn:
        await conn.execute("delete from conversations where id = %s", (parent.id,))
    assert (await repo.get_conversation(fork.id)).parent_id is None


# ------------------------------------------------------------------------------ messages


async def test_add_message_roundtrip(repo: StudioRepository) -> None:
    _, conv = await make_conversation(repo)
    msg = await repo.add_message(
        conv.id,
        message_id="lc-1",
        role="style",
        speaker="Luna",
        content="Teal and amber.",
        phase="ideation",
        kind="explore",
        interrupted=True,
        metadata={"tokens": 12, "model": "embedded"},
    )
    assert msg.conversation_id == conv.id
    assert (msg.role, msg.speaker, msg.content) == ("style", "Luna", "Teal and amber.")
    assert (msg.phase, msg.kind, msg.interrupted) == ("ideation", "explore", True)
    assert msg.metadata == {"tokens": 12, "model": "embedded"}
    assert isinstance(msg.seq, int)
    plain = await repo.add_message(conv.id, "lc-2", "user", "You", "Hello")
    assert plain.phase is None and plain.kind is None
    assert plain.interrupted is False and plain.metadata == {}


async def test_add_message_is_idempotent(repo: StudioRepository) -> None:
    _, conv = await make_conversation(repo)
    first = await repo.add_message(conv.id, "lc-1", "user", "You", "original")
    again = await repo.add_message(conv.id, "lc-1", "user", "You", "a replayed copy")
    assert again == first  # the existing row, unchanged
    racing = await asyncio.gather(
        *(repo.add_message(conv.id, "lc-2", "critic", "Lens", "once") for _ in range(6))
    )
    assert len({m.id for m in racing}) == 1
    assert await repo.count_messages(conv.id) == 2

    # The same LangChain id in another conversation is another message.
    _, other = await make_conversation(repo)
    elsewhere = await repo.add_message(other.id, "lc-1", "user", "You", "original")
    assert elsewhere.id != first.id


async def test_messages_are_ordered_by_seq_and_page_forward(repo: StudioRepository) -> None:
    _, conv = await make_conversation(repo)
    _, other = await make_conversation(repo)
    stored = []
    for i in range(7):
        stored.append(await repo.add_message(conv.id, f"m{i}", "story", "Saga", f"turn {i}"))
        await repo.add_message(other.id, f"m{i}", "user", "You", "noise")  # interleaved
    listed = await repo.list_messages(conv.id)
    assert [m.content for m in listed] == [f"turn {i}" for i in range(7)]
    assert [m.seq for m in listed] == sorted(m.seq for m in listed)

    page = await repo.list_messages(conv.id, limit=3)
    assert [m.message_id for m in page] == ["m0", "m1", "m2"]
    page = await repo.list_messages(conv.id, after_seq=page[-1].seq, limit=3)
    assert [m.message_id for m in page] == ["m3", "m4", "m5"]
    page = await repo.list_messages(conv.id, after_seq=page[-1].seq, limit=3)
    assert [m.message_id for m in page] == ["m6"]
    assert await repo.list_messages(conv.id, after_seq=stored[-1].seq) == []
    assert await repo.count_messages(conv.id) == 7
    _, empty = await make_conversation(repo)
    assert await repo.list_messages(empty.id) == []
    assert await repo.count_messages(empty.id) == 0


async def test_message_validation(repo: StudioRepository) -> None:
    _, conv = await make_conversation(repo)
    with pytest.raises(InvalidInputError, match="message role"):
        await repo.add_message(conv.id, "m", "narrator", "N", "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="message_id"):
        await repo.add_message(conv.id, "", "user", "You", "x")
    with pytest.raises(InvalidInputError, match="speaker"):
        await repo.add_message(conv.id, "m", "user", None, "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await repo.add_message(conv.id, "m", "user", "You", "NUL \x00 byte")
    assert await repo.count_messages(conv.id) == 0


# ------------------------------------------------------------------------------ generations


async def test_generation_lifecycle(repo: StudioRepository) -> None:
    session, conv = await make_conversation(repo)
    gen = await repo.create_generation(
        session.id, conv.id, {"prompt": "lighthouse", "seed": 7}, template="txt2img"
    )
    assert (gen.status, gen.progress, gen.template) == ("queued", 0.0, "txt2img")
    assert gen.parameters == {"prompt": "lighthouse", "seed": 7}
    assert gen.outputs == [] and gen.workflow_json is None and gen.error is None
    assert gen.started_at is None and gen.completed_at is None

    running = await repo.update_generation(
        gen.id, status="running", prompt_id="p-123", workflow_json={"3": {"class_type": "KSampler"}}
    )
    assert running.status == "running" and running.prompt_id == "p-123"
    assert running.workflow_json == {"3": {"class_type": "KSampler"}}
    assert running.started_at is not None and running.completed_at is None

    halfway = await repo.update_generation(gen.id, progress=0.5)
    assert halfway.progress == 0.5
    assert halfway.started_at == running.started_at  # not restamped

    outputs = [{"filename": "a.png", "path": f"{session.id}/{gen.id}/a.png"}]
    done = await repo.update_generation(gen.id, status="complete", progress=1, outputs=outputs)
    assert done.status == "complete" and done.progress == 1.0
    assert done.outputs == outputs
    assert done.completed_at is not None and done.completed_at >= done.started_at  # type: ignore[operator]
    assert await repo.get_generation(gen.id) == done
    assert await repo.update_generation(gen.id) == done  # nothing to change


async def test_generation_explicit_fields_and_clearing(repo: StudioRepository) -> None:
    session = await repo.create_session("s")
    gen = await repo.create_generation(session.id, None, {}, status="running")
    assert gen.conversation_id is None and gen.started_at is not None
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    failed = await repo.update_generation(
        gen.id, status="failed", error="ComfyUI restarted", completed_at=when
    )
    assert failed.error == "ComfyUI restarted" and failed.completed_at == when
    cleared = await repo.update_generation(gen.id, status="queued", error=None, started_at=None)
    assert cleared.error is None and cleared.started_at is None


async def test_generation_validation(repo: StudioRepository, database: Database) -> None:
    session = await repo.create_session("s")
    gen = await repo.create_generation(session.id, None, {})
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InvalidInputError, match="progress"):
            await repo.update_generation(gen.id, progress=bad)
    with pytest.raises(InvalidInputError, match="generation status"):
        await repo.update_generation(gen.id, status="exploded")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="generation status"):
        await repo.create_generation(session.id, None, {}, status="done")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="outputs"):
        await repo.update_generation(gen.id, outputs={"a": 1})  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="No conversation"):
        await repo.create_generation(session.id, uuid4(), {})
    assert (await repo.get_generation(gen.id)).status == "queued"


async def test_list_generations_newest_first(repo: StudioRepository) -> None:
    a = await repo.create_session("a")
    b = await repo.create_session("b")
    made = []
    for i in range(3):
        made.append(await repo.create_generation(a.id, None, {"i": i}))
        made.append(await repo.create_generation(b.id, None, {"i": i}))
    everything = await repo.list_generations()
    assert [g.id for g in everything] == [g.id for g in reversed(made)]
    only_a = await repo.list_generations(a.id)
    assert [g.id for g in only_a] == [g.id for g in reversed(made) if g.session_id == a.id]
    page = await repo.list_generations(a.id, limit=2, offset=1)
    assert [g.id for g in page] == [g.id for g in only_a[1:3]]
    assert await repo.list_generations(limit=2, offset=2) == everything[2:4]
    assert await repo.list_generations((await repo.create_session("c")).id) == []


# ------------------------------------------------------------------------------ cascade


async def test_delete_session_cascades(repo: StudioRepository, database: Database) -> None:
    keep, keep_conv = await make_conversation(repo)
    await repo.add_message(keep_conv.id, "k", "user", "You", "keep me")
    await repo.create_generation(keep.id, keep_conv.id, {})

    session, conv = await make_conversation(repo)
    await repo.create_conversation(session.id, parent_id=conv.id)
    for i in range(3):
        await repo.add_message(conv.id, f"m{i}", "user", "You", "bye")
    gen = await repo.create_generation(session.id, conv.id, {})

    await repo.delete_session(session.id)
    assert await count(database, "sessions") == 1
    assert await count(database, "conversations") == 1
    assert await count(database, "messages") == 1
    assert await count(database, "generations") == 1
    with pytest.raises(NotFoundError):
        await repo.get_generation(gen.id)
    with pytest.raises(NotFoundError):
        await repo.get_conversation(conv.id)


async def test_deleting_a_conversation_keeps_its_generations(
    repo: StudioRepository, database: Database
) -> None:
    session, conv = await make_conversation(repo)
    await repo.add_message(conv.id, "m", "user", "You", "hi")
    gen = await repo.create_generation(session.id, conv.id, {})
    async with database.pool.connection() as conn:
        await conn.execute("delete from conversations where id = %s", (conv.id,))
    assert (await repo.get_generation(gen.id)).conversation_id is None
    assert await count(database, "messages") == 0


# ------------------------------------------------------------------------------ the schema itself


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("update conversations set status = 'paused'", "conversations_status_check"),
        ("update generations set status = 'exploded'", "generations_status_check"),
        ("update generations set progress = 1.5", "generations_progress_check"),
        (
            "insert into messages (conversation_id, message_id, role, speaker, content)"
            " select id, 'x', 'narrator', 'N', 'c' from conversations",
            "messages_role_check",
        ),
    ],
)
async def test_check_constraints_reject_bad_values(
    repo: StudioRepository, database: Database, statement: str, constraint: str
) -> None:
    """The schema enforces the vocabularies too (for writers other than this repository)."""
    session, _ = await make_conversation(repo)
    await repo.create_generation(session.id, None, {})
    async with database.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as info:
            await conn.execute(statement)
    assert info.value.diag.constraint_name == constraint
    # ...and the repository turns such a refusal into a clear StudioError, never psycopg's.
    with pytest.raises(InvalidInputError, match=constraint):
        await repo._fetch(statement)


async def test_records_serialise_for_the_api(repo: StudioRepository) -> None:
    session, conv = await make_conversation(repo)
    msg = await repo.add_message(conv.id, "m", "user", "You", "hi")
    dumped: dict[str, Any] = msg.model_dump(mode="json")
    assert dumped["conversation_id"] == str(conv.id)
    assert isinstance(dumped["created_at"], str)
    assert session.model_dump()["model_assignments"] == {}

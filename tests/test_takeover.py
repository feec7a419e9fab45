"""Lease expiry as the takeover signal (real Postgres): what the sweep finds, a holder that
cannot renew in time stops considering itself the writer, and a worker that starts takes
over what a killed one left, the way the sweep does (nothing said twice)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import uuid4

import pytest

from creative_studio.store.database import Database
from creative_studio.store.leases import TTL_ENV, Leases, configured_ttl
from creative_studio.store.repository import StudioRepository
from tests.api_server import Sse, sse_events
from tests.studio_process import Studio, checkpoint_messages, start_serve
from tests.test_workers import DONE, REQUEST, empty_conversation, full_log


async def _running_conversation(database: Database) -> str:
    repository = StudioRepository(database.pool)
    session = await repository.create_session("takeover")
    cid = str((await repository.create_conversation(session.id)).id)
    await repository.set_conversation_status(cid, "running")
    return cid


async def test_the_sweep_finds_expired_leases_of_running_conversations_only(
    database: Database,
) -> None:
    expired, live, finished = [await _running_conversation(database) for _ in range(3)]
    await StudioRepository(database.pool).set_conversation_status(finished, "complete")
    async with database.pool.connection() as conn:
        await conn.execute(
            "insert into conversation_leases (conversation_id, owner, expires_at) values"
            " (%s, 'far-host/1/dead', now() - interval '1 second'),"
            " (%s, 'far-host/2/live', now() + interval '1 hour'),"
            " (%s, 'far-host/1/dead', now() - interval '1 second')",
            (expired, live, finished),
        )
    assert await database.leases.expired_running() == [(expired, "far-host/1/dead")]
    # Two workers sweep at once: the upsert lets exactly one of them take it.
    other = Leases(database.pool, ttl=5)
    results = await asyncio.gather(
        *(_try_hold(leases, expired) for leases in (database.leases, other)),
    )
    assert sorted(results) == [False, True]
    assert await database.leases.expired_running() == []


async def _try_hold(leases: Leases, cid: str) -> bool:
    try:
        async with leases.hold(cid):
            await asyncio.sleep(0.3)
            return True
    except Exception:
        return False


async def test_a_holder_whose_row_was_taken_knows_it_lost_the_lease(database: Database) -> None:
    cid = str(uuid4())
    leases = Leases(database.pool, ttl=1.2)  # renewed every 0.4 s
    async with leases.hold(cid) as lock:
        async with database.pool.connection() as conn:  # another worker took it over
            await conn.execute(
                "update conversation_leases set owner = 'far-host/3/new' where conversation_id = %s",
                (cid,),
            )
        await asyncio.wait_for(lock.lost_event.wait(), 10)
        assert lock.lost and not await lock.is_held()


def test_the_ttl_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TTL_ENV, "2.5")
    assert configured_ttl() == 2.5
    monkeypatch.setenv(TTL_ENV, "soon")
    with pytest.raises(ValueError, match=TTL_ENV):
        configured_ttl()
    monkeypatch.setenv(TTL_ENV, "0.1")
    with pytest.raises(ValueError, match="between"):
        configured_ttl()


async def test_a_new_worker_continues_what_its_killed_predecessor_left_without_repeating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The only worker is killed mid-turn; a new one starts on the same database. Its start
    takes the conversation over (the dead pid's lease is taken at once; with this ttl the
    sweep would not see it expire for ten minutes) and continues it from the checkpoint:
    no event repeated, no message announced twice, the half-said turn kept."""
    monkeypatch.setenv(TTL_ENV, "600")
    a = await start_serve(tmp_path, delay=0.03, extra=("-v",))
    b: Studio | None = None
    try:
        seen: list[Sse] = []
        async with a.client() as on_a:
            cid = await empty_conversation(on_a)
            sent = await on_a.post(f"/api/conversations/{cid}/messages", json={"content": REQUEST})
            assert sent.status_code == 202, sent.text
            async for event in sse_events(on_a, f"/api/conversations/{cid}/events"):
                seen.append(event)
                if sum(e.event == "token" for e in seen) > 30:  # a specialist is mid-turn
                    break
        await a.kill()  # kill -9: its lease row stays, the status stays "running"
        b = await start_serve(tmp_path, delay=0.03, extra=("-v",))
        async with b.client() as on_b:
            rest: list[Sse] = []
            running = False
            stream = sse_events(on_b, f"/api/conversations/{cid}/events", last_event_id=seen[-1].id)
            async for event in stream:
                rest.append(event)
                state = event.data.get("state") if event.event == "status" else None
                running = running or state == "running"
                if running and state in DONE:
                    break
            log = await full_log(on_b, cid)
            ids = [e.id for e in seen + rest]
            assert ids == sorted(set(ids)), "out of order or repeated"
            assert ids == [e["id"] for e in log if e["id"] <= ids[-1]], "the stream is not the log"
            announced = [e["data"]["message_id"] for e in log if e["kind"] == "message"]
            assert len(announced) == len(set(announced)), "a message was announced twice"
            said = [m["message_id"] for m in await checkpoint_messages(on_b, cid)]
            assert len(said) == len(set(said)), "the team said something twice"
            # What A's specialist had streamed when it died stays, under the id the clients
            # saw its tokens of, marked interrupted.
            streamed = {e["data"]["message_id"] for e in log if e["kind"] == "token"}
            assert streamed <= set(announced), "tokens of a message that never ended"
            assert any(e["kind"] == "message" and e["data"].get("interrupted") for e in log)
            starts = [e for e in log if e["kind"] == "status" and e["data"]["state"] == "running"]
            assert len(starts) >= 2  # A's run, then B's
            assert "error" not in [e["kind"] for e in log]
            final = (await on_b.get(f"/api/conversations/{cid}")).json()
            assert final["running"] is False and final["status"] in DONE
        b_log = b.log_tail(10**7)
        assert f"conversation {cid} was left running: taking it over" in b_log
        assert f"conversation {cid}: lease taken" in b_log
        assert "taking over conversation" not in b_log  # not the sweep: the lease never expired
    finally:
        if b is not None:
            await b.kill()
        await a.close()

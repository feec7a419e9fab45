"""Lease expiry as the takeover signal (real Postgres): what the sweep finds, and a holder
that cannot renew in time stops considering itself the writer."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from creative_studio.store.database import Database
from creative_studio.store.leases import TTL_ENV, Leases, configured_ttl
from creative_studio.store.repository import StudioRepository


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

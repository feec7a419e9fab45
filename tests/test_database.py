"""The database layer against real PostgreSQL: migrations, checkpointer, writer locks, and
an embedded server surviving a SIGKILLed studio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, TypedDict
from uuid import uuid4

import psutil
import psycopg
import pytest
from langgraph.graph import END, START, StateGraph
from psycopg.rows import dict_row

from creative_studio.core.errors import ConversationBusyError
from creative_studio.store.database import Database
from creative_studio.store.embedded_postgres import start_embedded_postgres, stop_embedded_postgres
from creative_studio.store.leases import DEFAULT_TTL_S
from creative_studio.store.migrations import MIGRATIONS_TABLE, apply_migrations, migration_files

STUDIO_TABLES = {"sessions", "conversations", "messages", "generations"}
CHECKPOINT_TABLES = {
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoint_migrations",
}


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)


async def public_tables(url: str) -> set[str]:
    async with await connect(url) as conn:
        cur = await conn.execute("select tablename from pg_tables where schemaname = 'public'")
        return {row["tablename"] for row in await cur.fetchall()}


# ------------------------------------------------------------------------------ migrations


def test_migration_files_are_found_in_order() -> None:
    versions = [version for version, _ in migration_files()]
    assert versions, "supabase/migrations/*.sql must ship with the package"
    assert versions[0] == "0001_initial"
    assert versions == sorted(versions)


async def test_migrations_apply_are_recorded_and_second_apply_is_noop(fresh_db_url: str) -> None:
    all_versions = [version for version, _ in migration_files()]
    async with await connect(fresh_db_url) as conn:
        assert await apply_migrations(conn) == all_versions
        cur = await conn.execute(f"select version, applied_at from {MIGRATIONS_TABLE}")
        rows = await cur.fetchall()
        assert [row["version"] for row in rows] == all_versions
        assert all(row["applied_at"] is not None for row in rows)
        assert await apply_migrations(conn) == []
    assert await public_tables(fresh_db_url) >= STUDIO_TABLES


async def test_apply_migrations_accepts_a_pool_and_a_non_autocommit_connection(
    fresh_db_url: str,
) -> None:
    from psycopg_pool import AsyncConnectionPool

    async with await psycopg.AsyncConnection.connect(fresh_db_url) as conn:
        assert conn.autocommit is False
        assert await apply_migrations(conn) == [version for version, _ in migration_files()]
        assert conn.autocommit is False  # restored
    async with AsyncConnectionPool(fresh_db_url, min_size=1, open=False) as pool:
        assert await apply_migrations(pool) == []


async def test_concurrent_starters_apply_each_migration_once(fresh_db_url: str) -> None:
    conns = [await connect(fresh_db_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    applied = [version for result in results for version in result]
    assert sorted(applied) == [version for version, _ in migration_files()]


async def test_migration_sql_is_idempotent_after_another_tool_applied_it(
    fresh_db_url: str,
) -> None:
    """Supabase CLI applies the files without our ledger; our apply must still succeed."""
    async with await connect(fresh_db_url) as conn:
        for _, sql in migration_files():
            await conn.execute(sql, prepare=False)
            await conn.execute(sql, prepare=False)
        assert await apply_migrations(conn) == [version for version, _ in migration_files()]


def read_seed() -> str:
    return (Path(__file__).resolve().parents[1] / "supabase" / "seed.sql").read_text()


async def test_seed_is_valid_and_idempotent(fresh_db_url: str) -> None:
    seed = read_seed()
    async with await connect(fresh_db_url) as conn:
        await apply_migrations(conn)
        await conn.execute(seed, prepare=False)
        await conn.execute(seed, prepare=False)
        cur = await conn.execute("select count(*) as n from messages")
        assert (await cur.fetchone())["n"] == 4  # type: ignore[index]


async def test_storage_bucket_block_runs_where_storage_exists(fresh_db_url: str) -> None:
    """On Supabase the migration creates the bucket; mimic its storage.buckets table."""
    async with await connect(fresh_db_url) as conn:
        await conn.execute(
            "create schema storage; create table storage.buckets"
            " (id text primary key, name text not null, public boolean default false)",
            prepare=False,
        )
        await apply_migrations(conn)
        cur = await conn.execute("select id, public from storage.buckets")
        assert await cur.fetchall() == [{"id": "generations", "public": False}]


# ------------------------------------------------------------------------------ Database


async def test_database_open_creates_checkpointer_tables(database: Database) -> None:
    assert database.embedded is False
    assert STUDIO_TABLES | CHECKPOINT_TABLES | {MIGRATIONS_TABLE} <= await public_tables(
        database.url
    )


async def test_every_public_table_has_row_level_security(database: Database) -> None:
    """On Supabase a public table without RLS is readable with the anon key."""
    async with database.pool.connection() as conn:
        cur = await conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and c.relkind = 'r' and not c.relrowsecurity"
        )
        assert await cur.fetchall() == []


async def test_checkpointer_persists_a_graph_run(database: Database) -> None:
    class State(TypedDict):
        count: int

    def bump(state: State) -> State:
        return {"count": state["count"] + 1}

    builder = StateGraph(State)
    builder.add_node("bump", bump)
    builder.add_edge(START, "bump")
    builder.add_edge("bump", END)
    graph = builder.compile(checkpointer=database.checkpointer)
    config: Any = {"configurable": {"thread_id": str(uuid4())}}
    assert await graph.ainvoke({"count": 1}, config, durability="sync") == {"count": 2}
    snapshot = await graph.aget_state(config)
    assert snapshot.values == {"count": 2}


async def test_a_checkpoint_write_that_waits_does_not_hold_up_other_conversations(
    database: Database,
) -> None:
    """LangGraph's saver queues every operation behind one lock; on the pool ours does not:
    a conversation whose checkpoint write waits on the database (here a row another
    transaction holds) leaves the others' writes free to go."""
    saver = database.checkpointer
    blocked, free = str(uuid4()), str(uuid4())

    def config(thread: str) -> Any:
        return {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": "c1"}}

    async with await connect(database.url) as holder:
        await holder.execute("begin")
        await holder.execute(
            "insert into checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id,"
            " idx, channel, type, blob, task_path) values (%s, '', 'c1', 't', 0, 'x', 'json',"
            " '\\x00', '')",
            (blocked,),
        )
        waiting = asyncio.create_task(saver.aput_writes(config(blocked), [("x", 1)], "t"))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the write did not wait for the row"
        await asyncio.wait_for(saver.aput_writes(config(free), [("x", 2)], "t"), 5)
        assert not waiting.done()
        await holder.execute("rollback")
    await asyncio.wait_for(waiting, 5)
    async with database.pool.connection() as conn:
        cur = await conn.execute(
            "select thread_id from checkpoint_writes where thread_id in (%s, %s)", (blocked, free)
        )
        assert {row["thread_id"] for row in await cur.fetchall()} == {blocked, free}


async def test_concurrent_opens_do_not_deadlock(fresh_db_url: str, tmp_path: Path) -> None:
    """Regression: blocking in pg_advisory_lock while the holder ran the checkpointer's
    CREATE INDEX CONCURRENTLY deadlocked two starters (through the client, undetected)."""
    first, second = await asyncio.gather(
        Database.open(fresh_db_url, tmp_path), Database.open(fresh_db_url, tmp_path)
    )
    await first.close()
    await second.close()


async def test_open_is_awaitable_and_an_async_context_manager(
    fresh_db_url: str, tmp_path: Path
) -> None:
    db = await Database.open(fresh_db_url, tmp_path)
    await db.close()
    async with Database.open(fresh_db_url, tmp_path) as db, db.pool.connection() as conn:
        cur = await conn.execute(f"select count(*) as n from {MIGRATIONS_TABLE}")
        assert (await cur.fetchone())["n"] == len(migration_files())  # type: ignore[index]
    assert db.pool.closed


async def test_open_fails_fast_and_clearly_on_a_bad_url(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="nonexistent"):
        await Database.open("postgresql://nobody@/nodb?host=/nonexistent", tmp_path)
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------------------ writer lock


async def test_writer_lock_excludes_a_second_holder(database: Database) -> None:
    cid = str(uuid4())
    async with database.writer_lock(cid) as lock:
        assert await lock.is_held()
        with pytest.raises(ConversationBusyError, match="already running"):
            async with database.writer_lock(cid):
                pass
        # Another spelling of the same uuid is the same conversation.
        with pytest.raises(ConversationBusyError):
            async with database.writer_lock(cid.upper()):
                pass
        async with database.writer_lock(str(uuid4())) as other:  # others are independent
            assert await other.is_held()
    async with database.writer_lock(cid) as again:
        assert await again.is_held()


async def test_writer_lock_excludes_another_process_pool(
    database: Database, tmp_path: Path
) -> None:
    """Two Database objects stand for two studio processes: separate pools, one server."""
    cid = str(uuid4())
    async with Database.open(database.url, tmp_path) as other:
        async with database.writer_lock(cid):
            with pytest.raises(ConversationBusyError) as info:
                async with other.writer_lock(cid):
                    pass
            assert info.value.status_code == 409
        async with other.writer_lock(cid):
            pass


async def test_writer_lock_is_released_on_error(database: Database) -> None:
    cid = str(uuid4())
    with pytest.raises(RuntimeError):
        async with database.writer_lock(cid):
            raise RuntimeError("node failed")
    async with database.pool.connection() as conn:
        cur = await conn.execute("select count(*) as n from conversation_leases")
        assert (await cur.fetchone())["n"] == 0  # type: ignore[index]
    async with database.writer_lock(cid):
        pass


async def test_running_conversations_hold_no_connection(database: Database) -> None:
    """Leases, not held sessions: more running conversations than pool connections."""
    ids = [str(uuid4()) for _ in range(3 * database.pool.max_size)]
    async with contextlib.AsyncExitStack() as stack:
        for cid in ids:
            lock = await stack.enter_async_context(database.writer_lock(cid))
            assert await lock.is_held()


async def test_a_killed_writers_lease_is_taken_over_at_once(database: Database) -> None:
    """The owner names host and pid: a dead process on this host does not block a restart."""
    cid = str(uuid4())
    dead = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import os; print(os.getpid())", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await dead.communicate()
    owner = f"{socket.gethostname()}/{int(out)}/deadbeef"
    async with database.pool.connection() as conn:
        await conn.execute(
            "insert into conversation_leases (conversation_id, owner, expires_at)"
            " values (%s, %s, now() + interval '1 hour')",
            (cid, owner),
        )
    async with database.writer_lock(cid) as lock:
        assert await lock.is_held()


async def test_a_lease_whose_release_failed_is_taken_back_by_its_owner(database: Database) -> None:
    """The database was away when the run ended: our own row stayed behind. Continuing the
    conversation once it is back must not find it "busy" for the lease's remaining ttl."""
    cid = str(uuid4())
    async with database.pool.connection() as conn:
        await conn.execute(
            "insert into conversation_leases (conversation_id, owner, expires_at)"
            " values (%s, %s, now() + interval '1 hour')",
            (cid, database.leases.owner),
        )
    async with database.writer_lock(cid) as lock:
        assert await lock.is_held()
        with pytest.raises(ConversationBusyError):  # while it is held, it is still exclusive
            async with database.writer_lock(cid):
                pass


async def test_an_expired_lease_is_taken_over_and_a_live_one_is_not(database: Database) -> None:
    expired, live = str(uuid4()), str(uuid4())
    async with database.pool.connection() as conn:
        await conn.execute(
            "insert into conversation_leases (conversation_id, owner, expires_at) values"
            " (%s, 'other-host/1/x', now() - interval '1 second'),"
            " (%s, 'other-host/1/x', now() + interval '1 hour')",
            (expired, live),
        )
    async with database.writer_lock(expired) as lock:
        assert await lock.is_held()
    with pytest.raises(ConversationBusyError):
        async with database.writer_lock(live):
            pass


async def test_a_lease_is_renewed_while_held(database: Database) -> None:
    cid = str(uuid4())
    database.leases.ttl = 0.6  # renewed every 0.2 s
    try:
        async with database.writer_lock(cid) as lock:
            await asyncio.sleep(1.5)  # well past one ttl
            assert await lock.is_held()
    finally:
        database.leases.ttl = DEFAULT_TTL_S


# ------------------------------------------------------------------------------ embedded server

CHILD = """
import asyncio, sys
from pathlib import Path
from creative_studio.store.embedded_postgres import start_embedded_postgres
import psycopg

async def main():
    url = await start_embedded_postgres(Path(sys.argv[1]))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("create table if not exists survivor (note text)")
        await conn.execute("insert into survivor values ('written before kill -9')")
    print(url, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_dead(pid: int, within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if not alive(pid):
            return
        await asyncio.sleep(0.05)


def resolved(path: Path) -> str:
    return str(path.resolve())


async def start_and_kill_child(data_dir: Path) -> str:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(data_dir), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
        assert line, "child failed to start the embedded server"
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    return line.decode().strip()


async def survivors(url: str) -> list[str]:
    async with await connect(url) as conn:
        cur = await conn.execute("select note from survivor")
        return [row["note"] for row in await cur.fetchall()]


async def test_embedded_start_after_the_studio_was_killed(tmp_path: Path) -> None:
    child_url = await start_and_kill_child(tmp_path)
    first_pid = postmaster_pid(tmp_path)
    assert alive(first_pid), "pg_ctl daemonises the postmaster: it outlives a killed studio"

    # 1. Postmaster still running: reuse it, and forget the dead studio's handle.
    url = await start_embedded_postgres(tmp_path)
    assert url == child_url
    assert postmaster_pid(tmp_path) == first_pid
    assert await survivors(url) == ["written before kill -9"]
    handles = (tmp_path / "postgres" / ".handle_pids.json").read_text()
    assert handles.strip() == f"[{os.getpid()}]"

    # 2. Postmaster killed too (stale postmaster.pid, maybe a zombie): start a new one.
    os.kill(first_pid, signal.SIGKILL)
    await wait_dead(first_pid)
    url = await start_embedded_postgres(tmp_path)
    second_pid = postmaster_pid(tmp_path)
    assert second_pid != first_pid and alive(second_pid)
    assert await survivors(url) == ["written before kill -9"]

    # 3. A normal stop by the last user really stops the server.
    await stop_embedded_postgres(tmp_path)
    await wait_dead(second_pid)
    assert not alive(second_pid)


async def test_database_open_without_url_uses_embedded_server(tmp_path: Path) -> None:
    try:
        async with Database.open(None, tmp_path) as db:
            assert db.embedded is True
            assert resolved(tmp_path) in db.url
            assert await public_tables(db.url) >= CHECKPOINT_TABLES
        # Reopening the same data directory finds the migrations already applied.
        async with Database.open(None, tmp_path) as db, db.pool.connection() as conn:
            cur = await conn.execute(f"select count(*) as n from {MIGRATIONS_TABLE}")
            assert (await cur.fetchone())["n"] == len(migration_files())  # type: ignore[index]
    finally:
        await stop_embedded_postgres(tmp_path)

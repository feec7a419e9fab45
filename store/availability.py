"""Keeping the database there: notice that it went away, restart what we started, reconnect.

A studio runs for days; its PostgreSQL may not. The embedded server can be killed (OOM
killer, a person's ``kill -9``), an external ``DATABASE_URL`` server can restart or drop off
the network. Without supervision every pooled connection is dead, the pool backs off for
minutes and each request waits for its 30 s pool timeout before failing with a bare 500.

* :class:`DatabaseMonitor` knows whether the database is up. It learns of trouble from
  failed checkouts and broken connections (the pool below tells it), probes the server with
  one direct connection, and - for the embedded server, which it also watches by pid -
  restarts it (store/embedded_postgres.py). When the server answers again it has the pool
  check its connections and calls its ``on_recovered`` listeners (the conversation runner
  continues the runs the outage cut short).
* :class:`SupervisedPool` fails at once with :class:`DatabaseDown` while the monitor knows the
  database is down, and turns a pool timeout into the same error, so callers see one
  exception that says what is wrong.
* :func:`is_connection_error` tells "the database is not there" from "the query is wrong".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from creative_studio.core.errors import DatabaseUnavailableError
from creative_studio.store.embedded_postgres import embedded_server_alive, start_embedded_postgres

log = logging.getLogger(__name__)

Listener = Callable[[], Awaitable[None]]

# SQLSTATEs that mean "the server or the connection went away", not "the query was wrong".
_CONNECTION_SQLSTATES = ("57P01", "57P02", "57P03")  # admin/crash shutdown, cannot connect now
_WATCH_INTERVAL_S = 0.5  # how often the embedded server's pid is looked at (microseconds each)
_PROBE_TIMEOUT_S = 3
_PROBE_REUSE_S = 1.0  # a probe this recent answers for everyone waiting
_CHECKOUT_STEP_S = 1.0  # a checkout waiting this long asks whether the server is there at all


class DatabaseDown(DatabaseUnavailableError, psycopg.OperationalError):
    """The database is unavailable: a StudioError (503 for the API) and a psycopg error.

    Being both keeps code that already handles ``psycopg.Error`` (lease renewal, the event
    log's writer) working unchanged, while the API answers with its usual error body.
    """


def is_connection_error(error: BaseException | None) -> bool:
    """True when ``error`` (or what caused it) means the database cannot be reached."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DatabaseUnavailableError | PoolTimeout):
            return True
        if isinstance(error, psycopg.OperationalError):
            state = error.sqlstate
            # No SQLSTATE: the client library's own failure (refused, lost, closed).
            if state is None or state.startswith("08") or state in _CONNECTION_SQLSTATES:
                return True
        if isinstance(error, BaseExceptionGroup):
            return any(is_connection_error(inner) for inner in error.exceptions)
        error = error.__cause__
    return False


def describe(error: BaseException) -> str:
    """One line for a person: the server's message without libpq's hints."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


class DatabaseMonitor:
    """Whether the database is up; restarts the embedded server; tells listeners it is back."""

    def __init__(self, url: str, *, embedded_data_dir: Path | None = None) -> None:
        self.url = url
        self.embedded_data_dir = embedded_data_dir
        self.up = True
        self.reason: str | None = None
        self.down_since: float | None = None
        self.restarts = 0  # embedded server restarts by this process
        self.outages = 0
        self.last_outage_s: float | None = None
        self.pool: AsyncConnectionPool[Any] | None = None
        self._listeners: list[Listener] = []
        self._suspect = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[bool] | None = None
        self._probed_at = 0.0
        self._restarting = False
        self._background: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- for callers

    def on_recovered(self, listener: Listener) -> None:
        """Call ``listener`` (a coroutine function) each time the database is back."""
        self._listeners.append(listener)

    def suspect(self) -> None:
        """Something failed in a way that may mean the server is gone: look now."""
        self._suspect = True
        self._wake.set()

    def message(self) -> str:
        reason = self.reason or "it does not answer"
        return (
            f"The database is unavailable right now ({reason}). The studio reconnects by "
            "itself; try again in a few seconds."
        )

    def raise_if_down(self) -> None:
        if not self.up:
            raise DatabaseDown(self.message())

    async def verify(self) -> bool:
        """Probe the server now (one probe shared by all who ask); True when it answers."""
        if self.up and time.monotonic() - self._probed_at < _PROBE_REUSE_S:
            return True
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._run_probe(), name="database-probe")
        return await asyncio.shield(self._probe)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="database-monitor")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._probe, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None

    # ----------------------------------------------------------------- internals

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _WATCH_INTERVAL_S)
            self._wake.clear()
            try:
                await self._tick()
            except Exception as error:  # never let the watcher die
                log.exception("database monitor: %s", error)

    async def _tick(self) -> None:
        data_dir = self.embedded_data_dir
        if data_dir is not None and not embedded_server_alive(data_dir):
            await self._restart_embedded(data_dir)
        if self._suspect or not self.up:
            await self.verify()

    async def _restart_embedded(self, data_dir: Path) -> None:
        self._mark_down("the embedded PostgreSQL stopped; restarting it")
        log.warning("the embedded PostgreSQL in %s stopped; restarting it", data_dir)
        self._restarting = True
        try:
            url = await start_embedded_postgres(data_dir)
        except Exception as error:
            self.reason = f"the embedded PostgreSQL could not be restarted: {describe(error)}"
            log.error("%s", self.reason)
            return
        finally:
            self._restarting = False
        self.restarts += 1
        if url != self.url:  # the socket directory is derived from the path: rare
            self.url = url
            if self.pool is not None:
                self.pool.conninfo = url
        self._suspect = True

    async def _run_probe(self) -> bool:
        try:
            conn = await AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=_PROBE_TIMEOUT_S
            )
            try:
                await asyncio.wait_for(conn.execute("select 1"), _PROBE_TIMEOUT_S)
            finally:
                await conn.close()
        except (psycopg.Error, OSError, TimeoutError) as error:
            if not self._restarting:  # else the reason says so already
                self._mark_down(describe(error))
            self._suspect = True
            return False
        self._probed_at = time.monotonic()
        self._suspect = False
        if not self.up:
            await self._mark_up()
        return True

    def _mark_down(self, reason: str) -> None:
        if self.up:
            self.up = False
            self.outages += 1
            self.down_since = time.monotonic()
            log.warning("the database is unavailable: %s", reason)
        self.reason = reason

    async def _mark_up(self) -> None:
        since = self.down_since or time.monotonic()
        self.last_outage_s = time.monotonic() - since
        self.up, self.reason, self.down_since = True, None, None
        log.warning("the database is back after %.1f s", self.last_outage_s)
        if self.pool is not None:
            with contextlib.suppress(Exception):
                # Replace the dead idle connections now, not after the pool's backoff.
                await self.pool.check()
        for listener in self._listeners:
            task = asyncio.create_task(self._notify(listener), name="database-recovered")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    @staticmethod
    async def _notify(listener: Listener) -> None:
        try:
            await listener()
        except Exception:
            log.exception("a database-recovered listener failed")


class SupervisedPool(AsyncConnectionPool[AsyncConnection[DictRow]]):
    """The studio's pool: fails fast and clearly while the monitor knows the database is down."""

    monitor: DatabaseMonitor

    def attach(self, monitor: DatabaseMonitor) -> None:
        self.monitor = monitor
        monitor.pool = self

    async def getconn(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (the signature it overrides)
    ) -> AsyncConnection[DictRow]:
        monitor = self.monitor
        monitor.raise_if_down()
        total = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + total
        while True:
            left = deadline - time.monotonic()
            try:
                return await super().getconn(max(0.01, min(left, _CHECKOUT_STEP_S)))
            except PoolTimeout as error:
                # Busy, or no server at all? One probe tells, and a dead server fails now.
                if not await monitor.verify():
                    raise DatabaseDown(monitor.message()) from error
                if time.monotonic() >= deadline:
                    raise DatabaseDown(
                        f"The database gave no connection within {total:.0f} s (all "
                        "connections are busy); try again in a few seconds."
                    ) from error

    async def putconn(self, conn: AsyncConnection[DictRow]) -> None:
        if conn.broken or conn.closed:
            self.monitor.suspect()  # a connection died under its user
        await super().putconn(conn)


__all__ = [
    "DatabaseDown",
    "DatabaseMonitor",
    "SupervisedPool",
    "describe",
    "is_connection_error",
]
